"""The collector toolkit: one tool-run error mapping and the per-device fan-out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from collectors.toolkit.errors import (
    CollectorError,
    NotApplicable,
    ToolDenied,
    ToolError,
    ToolTimedOut,
    UnusableOutput,
)
from collectors.toolkit.fanout import BUDGET_USED_UP, Budget, fan_out
from collectors.toolkit.runner import CommandRunner
from collectors.toolkit.tools import Tool, run_tool, says_denied
from tests.processes import no_orphans_after, script

TOOL = Tool("faketool", privilege="faketool needs root or CAP_SYS_RAWIO", answers="the widget")


def runner_with(tmp_path: Path, body: str | None, max_output: int = 1 << 20) -> CommandRunner:
    """A runner whose PATH holds only ``faketool`` (running ``body``), or nothing at all."""
    if body is not None:
        script(tmp_path, "faketool", body)
    return CommandRunner(max_output=max_output, env={"PATH": str(tmp_path)})


async def test_a_finished_run_is_returned_whatever_its_exit_status(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "print(sys.argv[1:]); sys.exit(4)")
    result = await run_tool(runner, TOOL, ["--x", "y"], 10)
    assert (result.returncode, result.stdout) == (4, b"['--x', 'y']\n")


async def test_not_installed_is_not_applicable(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable, match="faketool is not installed"):
        await run_tool(runner_with(tmp_path, None), TOOL, ["--x"], 10)


async def test_not_executable_names_the_privilege(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "print('never')")
    (tmp_path / "faketool").chmod(0o644)
    with pytest.raises(ToolDenied, match="permission denied") as err:
        await run_tool(runner, TOOL, ["--x"], 10)
    assert "CAP_SYS_RAWIO" in str(err.value)


async def test_a_hang_times_out_naming_who_did_not_answer(tmp_path: Path) -> None:
    marker = f"toolkit-hang-{time.monotonic_ns()}"
    body = (
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])\n"
        "time.sleep(60)"
    )
    task = asyncio.create_task(run_tool(runner_with(tmp_path, body), TOOL, ["--x"], 1.5))
    async with no_orphans_after(marker):
        with pytest.raises(ToolTimedOut, match="the widget did not answer in time"):
            await task


async def test_too_much_output_is_unusable(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "sys.stdout.write('x' * 100000)", max_output=1000)
    with pytest.raises(UnusableOutput, match="faketool --x gave unusable output"):
        await run_tool(runner, TOOL, ["--x"], 10)


async def test_no_time_left_does_not_start_the_tool(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    runner = runner_with(tmp_path, f"open({str(ran)!r}, 'w').close()")
    with pytest.raises(ToolTimedOut, match="budget"):
        await run_tool(runner, TOOL, [], 0.0)
    assert not ran.exists()
    await run_tool(runner, TOOL, [], 10)
    assert ran.exists()  # the same tool with time left does run


def test_every_tool_error_is_a_collector_error() -> None:
    for kind in (ToolDenied, ToolTimedOut, UnusableOutput):
        assert issubclass(kind, ToolError) and issubclass(kind, CollectorError)
    assert not issubclass(NotApplicable, CollectorError)


def test_denial_words() -> None:
    assert says_denied(b"open /dev/sda: Permission denied")
    assert says_denied("ioctl: Operation not permitted")
    assert not says_denied("No such device")
    assert "root or CAP_SYS_RAWIO" in str(TOOL.denied("faketool /dev/sda"))


async def test_fan_out_bounds_how_many_items_are_read_at_once() -> None:
    running = peak = 0
    two_started, release = asyncio.Event(), asyncio.Event()

    async def read(item: int, seconds: float) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 2:
            two_started.set()
        await release.wait()
        running -= 1
        return item * 10

    task = asyncio.create_task(fan_out(range(6), read, Budget.of(30), workers=2))
    await two_started.wait()
    release.set()
    outcomes = await task
    assert peak == 2
    assert [(o.item, o.value, o.error) for o in outcomes] == [(i, i * 10, None) for i in range(6)]


async def test_fan_out_gives_each_read_the_time_left_capped_per_item() -> None:
    given: list[float] = []

    async def read(item: str, seconds: float) -> str:
        given.append(seconds)
        return item

    await fan_out(["a"], read, Budget.of(100), workers=1, item_timeout=5)
    await fan_out(["b"], read, Budget.of(3), workers=1, item_timeout=5)
    assert given[0] == 5
    assert 2.0 < given[1] <= 3 - 0.3  # 3 s less the margin left for the framework


async def test_items_after_the_budget_are_not_read() -> None:
    read_items: list[str] = []

    async def read(item: str, seconds: float) -> str:
        read_items.append(item)
        return item

    spent = Budget(time.monotonic() - 1)
    outcomes = await fan_out(["sda", "sdb"], read, spent, workers=4)
    assert read_items == []
    assert [(o.item, o.error) for o in outcomes] == [
        ("sda", BUDGET_USED_UP),
        ("sdb", BUDGET_USED_UP),
    ]


async def test_one_failing_item_fails_only_itself() -> None:
    async def read(item: str, seconds: float) -> str:
        if item == "bad":
            raise ToolDenied("smartctl /dev/bad: permission denied; needs root")
        return item.upper()

    outcomes = await fan_out(["a", "bad", "c"], read, Budget.of(10), workers=2)
    assert [(o.value, o.error) for o in outcomes] == [
        ("A", None),
        (None, "smartctl /dev/bad: permission denied; needs root"),
        ("C", None),
    ]


async def test_a_vanished_tool_ends_the_fan_out_and_cancels_the_rest() -> None:
    cancelled = asyncio.Event()

    async def read(item: str, seconds: float) -> str:
        if item == "gone":
            raise NotApplicable("faketool is not installed")
        try:
            await asyncio.Event().wait()  # would never finish
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return item

    with pytest.raises(NotApplicable, match="not installed"):
        await fan_out(["slow", "gone"], read, Budget.of(10), workers=2)
    assert cancelled.is_set()
