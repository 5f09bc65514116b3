"""An argparse parser with one-line usage errors, "did you mean" hints and compact help."""

from __future__ import annotations

import argparse
import difflib
import textwrap
from typing import NoReturn

from exporter.durations import parse_duration

# argparse's own wording (its messages are not translated on a stock install).
_UNRECOGNIZED = "unrecognized arguments: "

DURATION_HELP = (
    "DURATION is a number with a unit: 500ms, 90s, 15m, 6h, 1h30m "
    "(units ms, s, m, h, d, w, y; a bare number is seconds)."
)


class FlagParser(argparse.ArgumentParser):
    """Usage errors are one line ending in "see --help"; near-miss flags get a suggestion."""

    def error(self, message: str) -> NoReturn:
        """Print one line (not the usage synopsis) and exit 2."""
        if message.startswith(_UNRECOGNIZED):
            message = self._unknown(message.removeprefix(_UNRECOGNIZED).split(" ")[0])
        self.exit(2, f"{self.prog}: {message}; see --help\n")

    def _unknown(self, word: str) -> str:
        if not word.startswith("-"):
            return f"unexpected argument {word!r} (flags take values as --flag=value)"
        name = word.split("=", 1)[0]
        known = [option for option in self._option_string_actions if option.startswith("--")]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown flag {name}{hint}"


class HelpFormatter(argparse.HelpFormatter):
    """Shows each default once, booleans as enabled/disabled, nothing for unset defaults."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36)

    def _split_lines(self, text: str, width: int) -> list[str]:
        # Never break inside a word: regexes, header names and paths stay copyable.
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "(default:" in text
            or default in (None, "", argparse.SUPPRESS)
            or isinstance(action, argparse._StoreTrueAction)
        ):
            return text
        shown = ("enabled" if default else "disabled") if isinstance(default, bool) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def duration(text: str) -> float:
    """A duration flag value in seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """An integer flag value above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer flag value of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value
