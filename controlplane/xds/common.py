"""Small pieces every Envoy-config module uses: the type URL prefix, durations."""

from __future__ import annotations

TYPE_PREFIX = "type.googleapis.com/"


def duration(seconds: float) -> str:
    """Fixed-point protobuf JSON duration ("1080000s", "0.5s"); never exponent notation."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"
