"""An argparse parser with one-line usage errors, "did you mean" hints and compact help."""

from __future__ import annotations

import argparse
import difflib
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from collectors.toolkit.durations import parse_duration
from collectors.toolkit.options import parse_bool
from exporter.address import parse_listen_address

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
        close = suggestion(name, (o for o in self._option_string_actions if o.startswith("--")))
        hint = f" (did you mean {close}?)" if close else ""
        return f"unknown flag {name}{hint}"


def suggestion(name: str, known: Iterable[str], cutoff: float = 0.75) -> str | None:
    """The known flag ``name`` is a typo or abbreviation of, compared past their shared words.

    ``--collector.zfs`` is compared with ``--collector.smart`` as ``zfs`` with ``smart`` (no
    match), ``--collector.smart.intervall`` with ``--collector.smart.interval`` as
    ``intervall`` with ``interval``.
    """
    words = name.split(".")
    best: tuple[bool, float, str] | None = None
    negated = name.startswith("--no-")
    for flag in known:
        if flag.startswith("--no-") != negated:
            continue
        other = flag.split(".")
        shared = 0
        while shared < min(len(words), len(other)) - 1 and words[shared] == other[shared]:
            shared += 1
        mine, theirs = ".".join(words[shared:]), ".".join(other[shared:])
        prefix = len(mine.lstrip("-")) >= 3 and theirs.startswith(mine)
        ratio = difflib.SequenceMatcher(None, mine, theirs).ratio()
        if (prefix or ratio >= cutoff) and (best is None or (prefix, ratio) > best[:2]):
            best = (prefix, ratio, flag)
    return best[2] if best else None


class BoolFlag(argparse.BooleanOptionalAction):
    """``--x`` / ``--no-x``, and ``--x=true|false`` (the form systemd environment files use).

    ``as_text`` stores ``"true"``/``"false"`` (collector options are text in settings).
    """

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        default: Any = None,
        help: str | None = None,
        as_text: bool = False,
    ) -> None:
        super().__init__(option_strings, dest, default=default, help=help)
        self.nargs = "?"
        self.as_text = as_text

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        """Set the value: ``--no-x`` is off, ``--x`` on, ``--x=VALUE`` as VALUE says."""
        negative = bool(option_string and option_string.startswith("--no-"))
        value = not negative
        if isinstance(values, str):
            if negative:
                raise argparse.ArgumentError(None, f"{option_string} takes no value")
            try:
                value = parse_bool(values)
            except ValueError as exc:
                raise argparse.ArgumentError(None, f"{option_string}={values}: {exc}") from None
        stored: object = ("true" if value else "false") if self.as_text else value
        setattr(namespace, self.dest, stored)


class HelpFormatter(argparse.HelpFormatter):
    """Shows each default once, booleans as enabled/disabled, nothing for unset defaults."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, BoolFlag):
            return ", ".join(action.option_strings)
        return super()._format_action_invocation(action)

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
        if isinstance(action, BoolFlag) and default in ("true", "false"):
            default = default == "true"
        shown = ("enabled" if default else "disabled") if isinstance(default, bool) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def duration(text: str) -> float:
    """A duration flag value in seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration(text: str) -> float:
    """A duration flag value in seconds, more than zero."""
    seconds = duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than zero: {text!r}")
    return seconds


def listen_address(text: str) -> str:
    """A ``--web.listen-address`` value, checked against the grammar."""
    try:
        parse_listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def url_path(text: str) -> str:
    """An absolute URL path such as ``/metrics``."""
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with '/': {text!r}")
    return text


def checked(parse: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse ``type`` from a function raising ``ValueError`` with a reason."""

    def check(text: str) -> str:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


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
