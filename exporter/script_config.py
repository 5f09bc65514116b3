"""``--collector.script.config``: the scripts to run as cached collectors, read and checked."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.toolkit.durations import parse_duration
from exporter.webconfig_yaml import WebConfigError, parse_yaml

NAME = re.compile(r"[a-z0-9_]+")
KEYS = ("name", "command", "interval", "timeout", "env", "workdir")
DEFAULT_INTERVAL = "1h"
DEFAULT_TIMEOUT = "1m"
MAX_SIZE = 1024 * 1024


class ScriptConfigError(Exception):
    """The script config is unreadable or invalid; the message names the file and the script."""


@dataclass(frozen=True)
class ScriptSettings:
    """One configured script: its argv, environment additions and working directory."""

    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None

    def fingerprint(self) -> dict[str, str]:
        """What the warm-restart snapshot compares: data of another command is not restored."""
        return {
            "script.command": json.dumps(list(self.command)),
            "script.env": json.dumps(dict(sorted(self.env.items()))),
            "script.workdir": self.workdir or "",
        }


@dataclass(frozen=True)
class ScriptEntry:
    """A script with its cache entry's name, interval and timeout."""

    name: str
    interval: float
    timeout: float
    script: ScriptSettings


def load_scripts(path: Path, builtin: Collection[str]) -> list[ScriptEntry]:
    """Read and check the config; ScriptConfigError (one line) on any problem."""
    try:
        if path.stat().st_size > MAX_SIZE:
            raise ScriptConfigError(f"{path}: larger than {MAX_SIZE} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptConfigError(f"{path}: {exc}") from None
    try:
        doc = parse_yaml(text)
    except WebConfigError as exc:
        raise ScriptConfigError(f"{path}: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) - {"scripts"}:
        raise ScriptConfigError(f"{path}: expected a mapping with one key, 'scripts'")
    items = doc.get("scripts") or []
    if not isinstance(items, list):
        raise ScriptConfigError(f"{path}: 'scripts' must be a list")
    entries: list[ScriptEntry] = []
    for index, item in enumerate(items):
        where = f"{path}: scripts[{index}]"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            where = f"{path}: script {item['name']!r}"
        try:
            entries.append(_entry(item, builtin, {e.name for e in entries}))
        except ScriptConfigError as exc:
            raise ScriptConfigError(f"{where}: {exc}") from None
    return entries


def _entry(item: Any, builtin: Collection[str], taken: set[str]) -> ScriptEntry:
    if not isinstance(item, dict):
        raise ScriptConfigError("must be a mapping")
    unknown = sorted(str(k) for k in set(item) - set(KEYS))
    if unknown:
        raise ScriptConfigError(f"unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    name = item.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ScriptConfigError("name must be lower-case letters, digits and '_' ([a-z0-9_]+)")
    if name in builtin:
        raise ScriptConfigError(f"name {name!r} is a built-in collector's; choose another")
    if name in taken:
        raise ScriptConfigError(f"name {name!r} is used twice")
    interval = _duration(item, "interval", DEFAULT_INTERVAL)
    timeout = _duration(item, "timeout", DEFAULT_TIMEOUT)
    if interval <= 0 or timeout <= 0:
        raise ScriptConfigError("interval and timeout must be positive")
    return ScriptEntry(name, interval, timeout, _script(item))


def _duration(item: Mapping[str, Any], key: str, default: str) -> float:
    value = item.get(key, default)
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise ScriptConfigError(f"{key}: {exc}") from None


def _script(item: Mapping[str, Any]) -> ScriptSettings:
    command = item.get("command")
    if isinstance(command, str):
        raise ScriptConfigError("command must be a list (argv, run without a shell)")
    if not isinstance(command, list) or not command:
        raise ScriptConfigError("command must be a non-empty list of strings")
    if not all(isinstance(arg, str | int | float) and not isinstance(arg, bool) for arg in command):
        raise ScriptConfigError("command must be a list of strings")
    argv = tuple(str(arg) for arg in command)
    env = item.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str | int | float)
        for k, v in env.items()
    ):
        raise ScriptConfigError("env must map variable names to strings")
    workdir = item.get("workdir")
    if workdir is not None and (not isinstance(workdir, str) or not Path(workdir).is_dir()):
        raise ScriptConfigError(f"workdir {workdir!r} is not a directory")
    env = {k: str(v) for k, v in env.items()}
    return ScriptSettings((executable(argv[0], env), *argv[1:]), env, workdir)


def executable(program: str, env: Mapping[str, str]) -> str:
    """The program's path; ScriptConfigError when it is missing or not executable."""
    if "/" not in program:
        found = shutil.which(program, path=env.get("PATH", os.environ.get("PATH")))
        if found is None:
            raise ScriptConfigError(f"command {program!r} not found on PATH")
        return found
    try:
        mode = Path(program).stat().st_mode
    except OSError as exc:
        raise ScriptConfigError(f"command {program}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode) or not os.access(program, os.X_OK):
        raise ScriptConfigError(f"command {program} is not an executable file")
    return program
