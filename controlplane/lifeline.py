"""`python -m controlplane.lifeline PARENT_PID ARGV...`: exec ARGV so that it dies with PARENT_PID.

The supervisor starts each child (Envoy, extproc workers) in its own process
group, so a Ctrl-C or a group signal does not skip the drain; but then nothing
reaches a child when the supervisor itself is killed with SIGKILL, and an
orphaned worker would keep serving with the provider keys in its memory.
Linux's parent-death signal closes that gap: it survives `execve`, so setting
it here and exec'ing the real program gives every child the guarantee,
Envoy included, with no code of ours inside it. (`preexec_fn` would run
Python between fork and exec in a process with gRPC threads, which the
subprocess documentation warns can deadlock; a trampoline cannot.)

The parent may die between fork and `prctl`: the pid check after it covers
that window.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when `parent` goes; exit now if it has gone already."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def argv_for(argv: list[str], *, parent: int | None = None) -> list[str]:
    """`argv` wrapped so that it runs under the lifeline of `parent` (default: this process)."""
    return [sys.executable, "-m", "controlplane.lifeline", str(parent or os.getpid()), *argv]


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: python -m controlplane.lifeline PARENT_PID PROGRAM [ARGS...]")
    die_with_parent(int(sys.argv[1]))
    program = sys.argv[2:]
    os.execvp(program[0], program)


if __name__ == "__main__":
    main()
