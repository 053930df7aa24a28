"""Child processes (Envoy, extproc workers) that are restarted when they die.

Each child runs in its own process group so a stop reaches everything it
started, and under a lifeline (controlplane/lifeline.py) so it dies with the
supervisor even when the supervisor is killed with SIGKILL: no orphan keeps
serving with the provider keys. The supervisor stops them all on
SIGINT/SIGTERM.

A child that keeps crashing is restarted with a growing delay (0.1 s doubling
to 5 s), so a crash loop does not burn the CPU; a child that then ran for
`STABLE_AFTER_S` has recovered, and its next crash is restarted at once again
instead of costing the longest delay forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from controlplane import lifeline

log = logging.getLogger("llmgw.supervisor")

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0
STABLE_AFTER_S = 10.0


def next_delay(delay: float, *, ran_for_s: float) -> float:
    """The restart delay after a child that ran `ran_for_s` exited, given the previous delay."""
    if ran_for_s >= STABLE_AFTER_S:
        return FIRST_DELAY_S
    return min(delay * 2, MAX_DELAY_S)


class Child:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.on_exit = on_exit
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        await self._spawn()
        self._task = asyncio.create_task(self._keep_alive(), name=f"child-{self.name}")

    async def _spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *lifeline.argv_for(self.argv), env=self.env, start_new_session=True, stdin=asyncio.subprocess.DEVNULL
        )

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        delay = FIRST_DELAY_S / 2  # doubled before the first restart
        while True:
            assert self.proc is not None
            started = loop.time()
            code = await self.proc.wait()
            if self._stopping:
                return
            if self.on_exit:
                self.on_exit(self.proc.pid)
            delay = next_delay(delay, ran_for_s=loop.time() - started)
            log.warning("%s (pid %d) exited with %d; restarting in %.1fs", self.name, self.proc.pid, code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            self.restarts += 1
            await self._spawn()

    def signal(self, sig: int) -> None:
        """Send `sig` to the child's process group, if it runs."""
        if self.proc is not None and self.proc.returncode is None:
            _signal_group(self.proc.pid, sig)

    async def stop(self, *, timeout: float = 10.0) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def accepting(path: str | Path) -> bool:
    """Whether a process listens on Unix socket `path` (a file left by a killed worker does not count).

    extproc workers bind their socket only once they have a config, so this is
    also "this worker can serve".
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True
