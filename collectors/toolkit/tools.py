"""Running a collector's tool: one place that maps every way a run fails to the same outcomes.

Not installed → NotApplicable; permission denied → ToolDenied naming the privilege; ran past
its time → ToolTimedOut; printed too much or garbage → UnusableOutput.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from collectors.toolkit.errors import (
    NotApplicable,
    ToolDenied,
    ToolError,
    ToolTimedOut,
    UnusableOutput,
)
from collectors.toolkit.runner import (
    CommandError,
    CommandNotFound,
    CommandOutputTooLarge,
    CommandPermissionDenied,
    CommandResult,
    CommandRunner,
    CommandTimeout,
)

_DENIED = ("permission denied", "operation not permitted")


@dataclass(frozen=True)
class Tool:
    """An external tool a collector runs, and what to tell the operator when it fails."""

    name: str
    # What the exporter user needs for the tool to work, as advice (root, a capability, a group).
    privilege: str
    # Who failed to answer when a run times out (the BMC, the GPU driver, a disk).
    answers: str = ""

    def denied(self, what: str) -> ToolDenied:
        """The error for a run of ``what`` that the system refused."""
        return ToolDenied(f"{what}: permission denied; {self.privilege}")

    def unusable(self, what: str, reason: object) -> UnusableOutput:
        """The error for a run of ``what`` whose output cannot be used."""
        return UnusableOutput(f"{what} gave unusable output: {reason}")


def says_denied(output: bytes | str) -> bool:
    """Whether a tool's message says the system refused it (EACCES or EPERM)."""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    return any(word in text.lower() for word in _DENIED)


async def run_tool(
    runner: CommandRunner,
    tool: Tool,
    args: Sequence[str],
    timeout: float,
    what: str | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``tool args`` within ``timeout`` seconds; failures raise the toolkit's errors.

    ``what`` names the run in messages (default: the command line); ``env`` is added to the
    tool's environment. A finished run is returned whatever its exit status: what a status
    means is the tool's own.
    """
    what = what or " ".join((tool.name, *args))
    if timeout <= 0:
        raise ToolTimedOut(f"{what}: the collector's time budget was used up before it ran")
    try:
        return await runner.run([tool.name, *args], timeout, env=env)
    except CommandNotFound as exc:
        raise NotApplicable(f"{tool.name} is not installed (not found on PATH)") from exc
    except CommandPermissionDenied as exc:
        raise ToolDenied(
            f"{what}: permission denied executing {tool.name}: the exporter user may not "
            f"run it; {tool.privilege}"
        ) from exc
    except CommandTimeout as exc:
        hint = f"; {tool.answers} did not answer in time" if tool.answers else ""
        raise ToolTimedOut(f"{what}: {exc}{hint}") from exc
    except CommandOutputTooLarge as exc:
        raise tool.unusable(what, exc) from exc
    except CommandError as exc:
        raise ToolError(f"{what}: {exc}") from exc
