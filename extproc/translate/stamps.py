"""The time and the fresh ids the translations stamp on what they build (`created`, `chatcmpl-...`).

One place, so every pair takes them the same way and a test pins both by
patching this module (`monkeypatch.setattr(stamps, "now", ...)`).
"""

from __future__ import annotations

import os
import time


def now() -> float:
    """Seconds since the epoch, for `created` fields."""
    return time.time()


def new_id(prefix: str) -> str:
    """A fresh id such as `chatcmpl-<24 hex>` or `call_<24 hex>`."""
    return prefix + os.urandom(12).hex()
