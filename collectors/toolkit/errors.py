"""How a collection ends badly: not applicable here, or failed (and why, for tool runs)."""

from __future__ import annotations


class NotApplicable(Exception):
    """This collector has nothing to collect here: hardware or tool absent."""


class CollectorError(Exception):
    """A collection failed; the message is shown in /cache/stats and logs."""


class ToolError(CollectorError):
    """A tool run failed; the message names the run and the reason."""


class ToolDenied(ToolError):
    """The tool, or the device it opens, refused this user; the message names the privilege."""


class ToolTimedOut(ToolError):
    """The tool did not finish within its time (its process group was killed)."""


class UnusableOutput(ToolError):
    """The tool finished but printed something that cannot be used."""
