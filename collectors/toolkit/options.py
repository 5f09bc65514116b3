"""Typed collector options: declared once with their default, checked at startup, parsed once."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from collectors.toolkit.durations import format_duration, parse_duration

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``, any case)."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true or false, not {text!r}")


@functools.lru_cache(maxsize=64)
def parse_regex(text: str) -> re.Pattern[str] | None:
    """A compiled regex (compiled once per text); ``None`` for the empty string (no filter)."""
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"invalid regex {text!r}: {exc}") from None


class OptionKind:
    """Plain text: any value is accepted as given."""

    name: ClassVar[str] = "VALUE"

    @property
    def metavar(self) -> str:
        """How ``--help`` names the value."""
        return self.name

    def canonical(self, text: str) -> str:
        """The checked value as stored in settings; a ``ValueError`` says what is wrong."""
        return text

    def parse(self, text: str) -> object:
        """The typed value a collector reads (here: the checked text)."""
        return self.canonical(text)


class Text(OptionKind):
    """Free text (e.g. a comma-separated list)."""


class Flag(OptionKind):
    """A boolean: ``--x``, ``--no-x`` or ``--x=true|false``."""

    name: ClassVar[str] = "BOOL"

    def canonical(self, text: str) -> str:
        """``true`` or ``false``."""
        return "true" if parse_bool(text) else "false"

    def parse(self, text: str) -> object:
        """``True`` or ``False``."""
        return parse_bool(text)


@dataclass(frozen=True)
class Integer(OptionKind):
    """A whole number within ``minimum``..``maximum``."""

    minimum: int = 0
    maximum: int | None = None
    name: ClassVar[str] = "N"

    def canonical(self, text: str) -> str:
        """The number in decimal."""
        if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
            raise ValueError(f"not an integer: {text!r}")
        value = int(text)
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            top = "" if self.maximum is None else f" and at most {self.maximum}"
            raise ValueError(f"{value} is out of range: must be at least {self.minimum}{top}")
        return str(value)

    def parse(self, text: str) -> object:
        """The number."""
        return int(self.canonical(text))


class Regex(OptionKind):
    """A Python regular expression; empty means no filter."""

    name: ClassVar[str] = "REGEX"

    def canonical(self, text: str) -> str:
        """The pattern unchanged, once it compiles."""
        parse_regex(text)
        return text

    def parse(self, text: str) -> object:
        """The compiled pattern; ``None`` when empty (no filter)."""
        return parse_regex(text)


@dataclass(frozen=True)
class Choice(OptionKind):
    """One word of ``values`` (any case); with ``true``/``false`` among them, boolean synonyms."""

    values: tuple[str, ...]

    @property
    def metavar(self) -> str:
        """``a|b|c``."""
        return "|".join(self.values)

    def canonical(self, text: str) -> str:
        """The word in lower case."""
        word = text.strip().lower()
        if word not in self.values and {"true", "false"} <= set(self.values):
            word = "true" if word in _TRUE else "false" if word in _FALSE else word
        if word not in self.values:
            raise ValueError(f"expected one of {', '.join(self.values)}, not {text!r}")
        return word


@dataclass(frozen=True)
class Duration(OptionKind):
    """A Prometheus-style duration (``30s``, ``2m``); ``positive`` rules out zero."""

    positive: bool = False
    name: ClassVar[str] = "DURATION"

    def canonical(self, text: str) -> str:
        """The duration written compactly (``90s`` → ``90s``, ``120`` → ``2m``)."""
        seconds = parse_duration(text)
        if self.positive and seconds <= 0:
            raise ValueError(f"must be more than zero: {text!r}")
        return format_duration(seconds)

    def parse(self, text: str) -> object:
        """Seconds."""
        return parse_duration(self.canonical(text))


@dataclass(frozen=True)
class CollectorOption:
    """A collector-specific flag ``--collector.<name>.<option>``; ``kind`` checks its value."""

    name: str
    default: str
    help: str
    kind: OptionKind = field(default_factory=Text)


T = TypeVar("T")


class Options:
    """A collector's options, parsed once from their texts; an unset option has its default."""

    def __init__(self, declared: Sequence[CollectorOption], given: Mapping[str, str]) -> None:
        self._values: dict[str, object] = {}
        for option in declared:
            text = given.get(option.name, option.default)
            try:
                self._values[option.name] = option.kind.parse(text)
            except ValueError as exc:
                if text:
                    raise ValueError(f"option {option.name}: {exc}") from None
                # Kinds without an empty value (flags, numbers, durations, choices): default.
                self._values[option.name] = option.kind.parse(option.default)

    def _get(self, name: str, kind: type[T]) -> T:
        value = self._values[name]  # KeyError: the collector reads an option it did not declare
        if type(value) is not kind:
            raise TypeError(f"option {name} is {type(value).__name__}, not {kind.__name__}")
        return value

    def flag(self, name: str) -> bool:
        """A ``Flag`` option."""
        return self._get(name, bool)

    def integer(self, name: str) -> int:
        """An ``Integer`` option."""
        return self._get(name, int)

    def seconds(self, name: str) -> float:
        """A ``Duration`` option, in seconds."""
        return self._get(name, float)

    def mapping(self, name: str) -> dict[str, str]:
        """An option whose kind parses to a mapping (e.g. per-device settings)."""
        return self._get(name, dict)

    def text(self, name: str) -> str:
        """A ``Text``, ``Choice`` or other text option."""
        return self._get(name, str)

    def regex(self, name: str) -> re.Pattern[str] | None:
        """A ``Regex`` option, compiled; ``None`` when empty."""
        value = self._values[name]
        if value is not None and not isinstance(value, re.Pattern):
            raise TypeError(f"option {name} is {type(value).__name__}, not a regex")
        return value
