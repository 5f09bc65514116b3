"""The web config's error type and its strict YAML reading (one-line errors, bounded nesting)."""

from __future__ import annotations

from typing import Any

import yaml

# A web config is four levels deep at most. Deeper input is refused long before the composer's
# recursion could reach Python's recursion limit (a RecursionError traceback).
MAX_DEPTH = 32


class WebConfigError(Exception):
    """The web config file is unreadable or invalid."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (as Go's UnmarshalStrict does) and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            mark = parent.start_mark if parent is not None else None
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool | None):
            line = key_node.start_mark.line + 1
            raise WebConfigError(f"a mapping key must be a plain value (line {line})")
        if key in result:
            raise WebConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _one_line(exc: yaml.YAMLError) -> str:
    """``invalid YAML at line 2, column 1: while parsing ...: expected ...`` (no source excerpt)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(f"invalid YAML: {exc}".split())
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = ": ".join(part for part in (exc.context, exc.problem) if part)
    return " ".join(f"invalid YAML{where}: {what}".split())


def parse_yaml(text: str) -> Any:
    """The YAML document in ``text``; raises WebConfigError with a one-line message."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise WebConfigError(_one_line(exc)) from None
    except RecursionError:  # not reachable through the composer; kept as a backstop
        raise WebConfigError("invalid YAML: nested too deeply") from None
