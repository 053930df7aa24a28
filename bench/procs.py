"""Processes the benchmark starts, and what they cost (CPU, RSS) read from /proc.

Why this module exists: every figure that says "CPU per request" or "peak RSS"
must count exactly the processes of one system under test, including the
children a supervisor forked (Envoy, extproc workers, uvicorn workers). We find
them by walking parent links in /proc at snapshot time, so a restarted worker
is still counted, and classify each process by its command line into a role
("envoy", "extproc", "controlplane", "litellm", ...).

Every process is started in its own session (process group) and registered in
one `Launcher`, which stops them all (SIGTERM to the group, then SIGKILL) on
exit, exception or Ctrl-C: the benchmark never leaves load on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Started:
    """One process started by the launcher, with the log it writes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Launcher:
    """Starts processes in their own process groups and stops every one of them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Started] = []

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> Started:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        started = Started(name, proc, log_path)
        self.started.append(started)
        return started

    def stop(self, started: Started, *, timeout: float = 15.0) -> None:
        """SIGTERM the whole tree (group and descendants' groups), wait, then SIGKILL what is left."""
        tree = descendants(started.pid)
        if started.proc.poll() is None:
            _signal_group(started.pid, signal.SIGTERM)
            for pid in tree:  # a frozen (SIGSTOP) process only sees SIGTERM once continued
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            try:
                started.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(started.pid, signal.SIGKILL)
                started.proc.wait(5)
        for pid in tree:
            # Children in their own sessions (llmgw's Envoy and workers) are stopped by their
            # supervisor; anything still alive after it exited is killed here, group and all.
            if _alive(pid):
                _signal_group(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if started in self.started:
            self.started.remove(started)

    def stop_all(self) -> None:
        for started in reversed(list(self.started)):
            with contextlib.suppress(Exception):
                self.stop(started)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# --- /proc readings ---------------------------------------------------------------------


def _ppid_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    """`root` and every process below it (by parent links), root first."""
    parents = _ppid_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = [root] if root in parents else []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of one process, in clock ticks (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5), counted after "comm"


def status_kb(pid: int, key: str) -> int | None:
    """A `VmRSS`/`VmHWM` line of /proc/PID/status, in kB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


Classifier = Callable[[int, str], str]


@dataclass
class CpuSnapshot:
    ticks: dict[int, int]
    roles: dict[int, str]
    at: float


def snapshot(roots: Iterable[int], classify: Classifier) -> CpuSnapshot:
    """CPU ticks of every process in the trees under `roots`, with each one's role."""
    ticks: dict[int, int] = {}
    roles: dict[int, str] = {}
    for root in roots:
        for pid in descendants(root):
            value = cpu_ticks(pid)
            if value is None:
                continue
            ticks[pid] = value
            roles[pid] = classify(pid, cmdline(pid))
    return CpuSnapshot(ticks, roles, time.monotonic())


def cpu_ms_by_role(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU milliseconds spent between two snapshots, summed per role.

    A process that appeared in between counts from zero (it was forked during
    the window); one that vanished is lost, which only happens on a crash.
    """
    out: dict[str, float] = {}
    for pid, end in after.ticks.items():
        start = before.ticks.get(pid, 0)
        role = after.roles[pid]
        out[role] = out.get(role, 0.0) + (end - start) * 1000.0 / CLK_TCK
    return out


@dataclass
class RssSampler:
    """Samples VmRSS of the process trees every `interval` s in a thread; keeps the peak per role.

    The peak is the largest *sum over the processes of a role* seen in one sample,
    so two workers count as their combined resident size at the same moment.
    """

    roots: list[int]
    classify: Classifier
    interval: float = 0.25
    peak_kb: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        sums: dict[str, int] = {}
        for root in self.roots:
            for pid in descendants(root):
                rss = status_kb(pid, "VmRSS")
                if rss is None:
                    continue
                role = self.classify(pid, cmdline(pid))
                sums[role] = sums.get(role, 0) + rss
        for role, kb in sums.items():
            self.peak_kb[role] = max(self.peak_kb.get(role, 0), kb)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()


def hwm_by_role(roots: Iterable[int], classify: Classifier) -> dict[str, int]:
    """Sum of VmHWM (peak resident set over each process's life) per role, in kB."""
    out: dict[str, int] = {}
    for root in roots:
        for pid in descendants(root):
            hwm = status_kb(pid, "VmHWM")
            if hwm is not None:
                role = classify(pid, cmdline(pid))
                out[role] = out.get(role, 0) + hwm
    return out


def wait_http(
    url: str,
    *,
    timeout: float,
    proc: Started | None = None,
    ok: Callable[[int, bytes], bool] = lambda status, _body: status == 200,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll `url` until `ok(status, body)`; fail early if `proc` exited. Bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.proc.returncode}:\n{proc.log_tail()}")
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                data = response.read()
                if ok(response.status, data):
                    return
                last = f"{response.status} {data[:200]!r}"
        except urllib.error.HTTPError as exc:
            data = exc.read()
            if ok(exc.code, data):
                return
            last = f"{exc.code} {data[:200]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    tail = proc.log_tail() if proc is not None else ""
    raise RuntimeError(f"{url} not ready in {timeout:.0f}s (last: {last})\n{tail}")


def http(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """One HTTP request with urllib: (status, body), HTTP errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def unix_http_get(socket_path: str, path: str, *, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET over a Unix socket (llmgw's Envoy admin interface lives on one): (status, body)."""
    import http.client
    import socket

    conn = http.client.HTTPConnection("localhost", timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(socket_path)
    conn.sock = sock
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
