"""`python -m fakeprovider`: see `fakeprovider.cli` for the flags."""

from __future__ import annotations

from fakeprovider.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
