"""Helpers of the fake-server base (obbws_jupyter.fakes._base) that need no socket."""

from __future__ import annotations

import asyncio

from obbws_jupyter.fakes._base import run_beside


def test_run_beside_cancels_the_side_tasks_when_main_ends() -> None:
    """Side coroutines run while main runs and are cancelled (not left behind) when it ends."""
    seen: list[str] = []

    async def side() -> None:
        seen.append("started")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> None:
        await asyncio.sleep(0.01)
        seen.append("main done")

    async def scenario() -> set[asyncio.Task[object]]:
        await run_beside(main(), side(), side())
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    assert asyncio.run(scenario()) == set()
    assert seen == ["started", "started", "main done", "cancelled", "cancelled"]


def test_run_beside_keeps_main_running_when_a_side_task_fails() -> None:
    """A side task that raises does not end main or escape from run_beside."""

    async def broken() -> None:
        raise RuntimeError("side failure")

    finished: list[bool] = []

    async def main() -> None:
        await asyncio.sleep(0.02)
        finished.append(True)

    asyncio.run(run_beside(main(), broken()))
    assert finished == [True]
