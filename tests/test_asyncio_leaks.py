"""The task-leak check fails what it should: a task left pending by asyncio.run or by a loop of the test's own.

The hooks are exercised directly (the leak is taken from the session's watch
before the autouse fixture sees it), and once end to end: a test file that
leaks a task fails under this suite's conftest, in a pytest of its own.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.asyncio_leaks import LeakWatch, settle

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent


async def _forever() -> None:
    await asyncio.Event().wait()


def test_asyncio_run_leaving_a_task_pending_is_caught(_asyncio_leak_watch: LeakWatch) -> None:
    async def main() -> None:
        asyncio.create_task(_forever(), name="forgotten")  # noqa: RUF006 - leaked on purpose
        await asyncio.sleep(0)

    asyncio.run(main())
    [leak] = _asyncio_leak_watch.take()
    assert "'forgotten'" in leak and "_forever" in leak and "asyncio.run" in leak


def test_own_loop_closed_with_a_pending_task_is_caught(_asyncio_leak_watch: LeakWatch) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    asyncio.run_coroutine_threadsafe(_start_forgotten(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    [leak] = _asyncio_leak_watch.take()
    assert "'on-thread'" in leak and "loop closed" in leak


async def _start_forgotten() -> None:
    asyncio.create_task(_forever(), name="on-thread")  # noqa: RUF006 - leaked on purpose


def test_own_loop_left_open_with_a_pending_task_is_caught(_asyncio_leak_watch: LeakWatch) -> None:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_start_forgotten())
    try:
        [leak] = _asyncio_leak_watch.take()
        assert "'on-thread'" in leak and "left open" in leak
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_tasks_awaited_or_cancelled_are_not_leaks(_asyncio_leak_watch: LeakWatch) -> None:
    async def main() -> None:
        done = asyncio.create_task(asyncio.sleep(0))
        stopped = asyncio.create_task(_forever())
        await done
        stopped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopped

    asyncio.run(main())
    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    loop.close()
    assert _asyncio_leak_watch.take() == []


def test_settle_waits_for_tasks_that_end_on_their_own_and_not_for_leaks(_asyncio_leak_watch: LeakWatch) -> None:
    async def main() -> None:
        ends = asyncio.Event()
        asyncio.create_task(ends.wait(), name="ends-soon")  # noqa: RUF006 - finished by the loop, not awaited
        asyncio.get_running_loop().call_soon(ends.set)
        asyncio.create_task(_forever(), name="never-ends")  # noqa: RUF006 - leaked on purpose
        await settle(timeout=0.2)

    asyncio.run(main())
    [leak] = _asyncio_leak_watch.take()
    assert "'never-ends'" in leak


def test_the_autouse_fixture_fails_a_leaking_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest("from tests.conftest import _asyncio_leak_watch, no_asyncio_task_leaks  # noqa: F401\n")
    pytester.makepyfile(
        test_leaky="""
        import asyncio

        async def forever():
            await asyncio.Event().wait()

        def test_leaks():
            async def main():
                asyncio.create_task(forever(), name="leaked-here")
                await asyncio.sleep(0)
            asyncio.run(main())

        def test_clean():
            async def main():
                await asyncio.create_task(asyncio.sleep(0))
            asyncio.run(main())
        """
    )
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)  # test_leaks passes its call, then errors at teardown
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*", "*'leaked-here'*"])
