"""No asyncio task outlives the loop that ran it: the check behind the autouse fixture in `tests/conftest.py`.

Tests here run event loops in two ways, and each has its hook:

- `asyncio.run(...)` (also `asyncio.Runner`, `uvloop.run`): when the main coroutine
  returns, asyncio cancels whatever is still pending without a word. The watch
  wraps that step (`asyncio.runners._cancel_all_tasks`, which every runner calls
  before closing its loop) and records those tasks first.
- a loop of the test's own (`asyncio.new_event_loop()`, often run on a thread):
  the installed policy makes loops whose `close()` records the tasks still
  pending; a loop the test created and never closed is checked when the test
  ends (unless it is still running, as a wider-scoped fixture's loop may be).

A leak is a task that the code which started it neither awaited, finished nor
cancelled before its loop ended (the design's asyncio hygiene: named, guarded
background tasks, graceful shutdown, no leaks).
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any


def describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or repr(coro)
    return f"task {task.get_name()!r} running {name}"


async def settle(timeout: float = 5.0) -> None:
    """Wait (up to `timeout`) for this loop's other tasks to finish; call it last in a main coroutine.

    For tasks a library finishes on its own after a cancel, such as grpc.aio's status task of a
    cancelled call, which completes only when the core reports the cancellation. A task that
    never finishes is still reported as a leak.
    """
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=timeout)


class LeakWatch:
    """Collects leaked tasks from every loop in the process until `take()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leaks: list[str] = []
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._saved_policy: asyncio.AbstractEventLoopPolicy | None = None
        self._saved_cancel: Callable[[asyncio.AbstractEventLoop], None] | None = None

    # -- recording ------------------------------------------------------------------

    def record(self, tasks: Iterable[asyncio.Task[Any]], when: str) -> None:
        found = sorted(f"{describe(t)} ({when})" for t in tasks if not t.done())
        if found:
            with self._lock:
                self._leaks.extend(found)

    def take(self) -> list[str]:
        """The leaks recorded since the last call, and those of loops left open and idle."""
        for loop in list(self._loops):
            if not loop.is_closed() and not loop.is_running():
                self._loops.discard(loop)
                self.record(asyncio.all_tasks(loop), "its loop was left open")
        with self._lock:
            leaks, self._leaks = self._leaks, []
        return leaks

    def forget_loops(self) -> None:
        """Loops created so far are not checked for being left open (they belong to wider fixtures)."""
        self._loops = weakref.WeakSet()

    # -- hooks ----------------------------------------------------------------------

    def install(self) -> LeakWatch:
        watch = self

        class CheckedLoop(asyncio.SelectorEventLoop):
            def close(self) -> None:
                if not self.is_running() and not self.is_closed():
                    watch.record(asyncio.all_tasks(self), "still pending when its loop closed")
                super().close()

        class Policy(asyncio.DefaultEventLoopPolicy):
            def new_event_loop(self) -> asyncio.AbstractEventLoop:
                loop = CheckedLoop()
                watch._loops.add(loop)
                return loop

        cancel_all = asyncio.runners._cancel_all_tasks  # type: ignore[attr-defined]

        def cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
            watch.record(asyncio.all_tasks(loop), "still pending when asyncio.run's coroutine returned")
            watch._loops.discard(loop)
            cancel_all(loop)

        self._saved_policy = asyncio.get_event_loop_policy()
        self._saved_cancel = cancel_all
        asyncio.set_event_loop_policy(Policy())
        asyncio.runners._cancel_all_tasks = cancel_all_tasks  # type: ignore[attr-defined]
        return self

    def uninstall(self) -> None:
        if self._saved_cancel is not None:
            asyncio.runners._cancel_all_tasks = self._saved_cancel  # type: ignore[attr-defined]
        asyncio.set_event_loop_policy(self._saved_policy)
        self._saved_cancel = self._saved_policy = None
