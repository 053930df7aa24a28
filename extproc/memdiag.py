"""Opt-in memory diagnostic: periodic `tracemalloc` snapshots of one extproc worker.

Why: a worker's RSS can grow for reasons that are not a leak (allocator arenas,
warm-up, bounded caches filling), and RSS alone cannot tell them apart. With
`LLMGW_TRACEMALLOC_DIR` set, the worker traces Python allocations and writes a
snapshot there every `LLMGW_TRACEMALLOC_INTERVAL` seconds (default 60), keeping
`LLMGW_TRACEMALLOC_FRAMES` frames per allocation (default 10), plus one JSON line
per snapshot in `<name>-<pid>.jsonl` (traced bytes, tracemalloc's own overhead,
RSS, live asyncio tasks). `bench/memory_soak.py` sets it and compares the
snapshots. Off by default, and then nothing is imported or started.

Tracing costs CPU on every allocation and memory per traced block: use it for
diagnosis, not in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("llmgw.extproc.memdiag")
ENV_DIR = "LLMGW_TRACEMALLOC_DIR"


def start_from_env(*, name: str) -> asyncio.Task[None] | None:
    """Start tracing and the snapshot task when `LLMGW_TRACEMALLOC_DIR` is set; None otherwise."""
    directory = os.environ.get(ENV_DIR)
    if not directory:
        return None
    import tracemalloc

    interval = float(os.environ.get("LLMGW_TRACEMALLOC_INTERVAL", "60"))
    frames = int(os.environ.get("LLMGW_TRACEMALLOC_FRAMES", "10"))
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    log.warning("tracemalloc on (%d frames): a snapshot every %.0f s in %s", frames, interval, out)
    return asyncio.create_task(_dump_loop(out=out, name=name, interval=interval), name="tracemalloc-dump")


async def _dump_loop(*, out: Path, name: str, interval: float) -> None:
    prefix = f"{name}-{os.getpid()}"
    started = time.monotonic()
    seq = 0
    while True:
        try:
            _dump(out=out, prefix=prefix, seq=seq, started=started)
        except OSError as exc:  # a full disk must not take the worker down: stop diagnosing
            log.warning("tracemalloc snapshot failed, no more snapshots: %s", exc)
            return
        seq += 1
        await asyncio.sleep(interval)


def _dump(*, out: Path, prefix: str, seq: int, started: float) -> None:
    import tracemalloc

    # Collect first so the snapshot shows what is really kept, not garbage awaiting a cycle pass.
    gc.collect()
    path = out / f"{prefix}-{seq:04d}.tracemalloc"
    tracemalloc.take_snapshot().dump(str(path))
    current, peak = tracemalloc.get_traced_memory()
    line = {
        "seq": seq,
        "t": round(time.monotonic() - started, 1),
        "snapshot": path.name,
        "traced": current,
        "traced_peak": peak,
        "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory(),
        "rss_kb": _rss_kb(),
        "tasks": len(asyncio.all_tasks()),
        "gc_objects": len(gc.get_objects()),
        **malloc_stats(),
    }
    with (out / f"{prefix}.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def malloc_stats() -> dict[str, int]:
    """glibc's heap: bytes malloc'd and in use (C extensions included: gRPC core, upb) vs held free.

    tracemalloc sees only Python's allocators; this tells a C-side leak (in use grows) from
    fragmentation (free grows) when RSS grows and the traced heap does not.
    """
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):  # not glibc, or glibc < 2.33
        return {}
    fn.restype = _MallInfo2
    info = fn()
    return {"malloc_in_use": info.uordblks + info.hblkhd, "malloc_free": info.fordblks, "malloc_arena": info.arena}


def _rss_kb() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    return 0
