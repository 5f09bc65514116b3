"""Flags derived from the registry, collector selection, tool checks, README sync."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from collectors.registry import CollectorSpec, load_all
from exporter import __version__
from exporter.cli import build_parser, describe_defaults, enabled_collectors, settings_from_args
from exporter.durations import format_duration, parse_duration
from exporter.main import drop_missing_tools, split_listen_address
from exporter.runner import CommandRunner
from tests.support import REPO

REGISTRY = load_all()


def parse(*argv: str) -> list[str]:
    return enabled_collectors(build_parser(REGISTRY).parse_args(list(argv)), REGISTRY)


def test_defaults_follow_the_registry() -> None:
    assert parse() == [n for n, s in REGISTRY.items() if s.default_enabled]
    assert "synthetic" not in parse() and "smart" in parse()


def test_enable_disable_and_disable_defaults() -> None:
    assert "cpu" not in parse("--no-collector.cpu")
    assert parse("--collector.disable-defaults", "--collector.dmi", "--collector.edac") == [
        "dmi",
        "edac",
    ]
    assert "synthetic" in parse("--collector.synthetic")


def test_interval_flags_parse_durations() -> None:
    args = build_parser(REGISTRY).parse_args(["--collector.smart.interval=1h30m"])
    settings = settings_from_args(args, REGISTRY, ["smart"])
    assert settings.collectors[0].interval == 5400


def test_bad_duration_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser(REGISTRY).parse_args(["--collector.cpu.interval=soon"])
    assert exc.value.code == 2
    assert "invalid duration 'soon'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("6h", 21600), ("1h30m", 5400), ("500ms", 0.5), ("2.5", 2.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "6x", "1h 2m", "-5s", "nan", "inf"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for text in ("6h", "15m", "90s", "1.5s"):
        assert format_duration(parse_duration(text)) == text


def test_missing_tool_skips_default_but_fails_explicit(caplog: pytest.LogCaptureFixture) -> None:
    runner = CommandRunner(env={"PATH": "/nonexistent"})
    names = ["cpu", "smart", "gpu"]
    with caplog.at_level(logging.INFO):
        assert drop_missing_tools(names, set(), REGISTRY, runner) == ["cpu"]
    skips = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skips == [
        "collector smart skipped: smartctl is not installed",
        "collector gpu skipped: nvidia-smi is not installed",
    ]
    with pytest.raises(SystemExit, match="'smartctl' is not installed"):
        drop_missing_tools(names, {"smart"}, REGISTRY, runner)


def test_listen_address_forms() -> None:
    assert split_listen_address(":9847") == (None, 9847)
    assert split_listen_address("127.0.0.1:1") == ("127.0.0.1", 1)
    assert split_listen_address("[::1]:9847") == ("::1", 9847)
    with pytest.raises(SystemExit, match="expected host:port"):
        split_listen_address("localhost")


def test_version_and_console_entry() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"hwcache-exporter {__version__}"


def test_unknown_flag_is_a_usage_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "--collector.nope"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "unrecognized arguments: --collector.nope" in out.stderr


def test_readme_collector_table_matches_registry() -> None:
    readme = (REPO / "README.md").read_text()
    assert describe_defaults(REGISTRY) in readme, "regenerate with: make readme-table"


@pytest.mark.parametrize("spec", list(REGISTRY.values()), ids=list(REGISTRY))
def test_collector_contract(spec: CollectorSpec) -> None:
    """Every registered collector: valid name, parsable defaults, a doc, a README row."""
    assert spec.name.isidentifier() and spec.description
    assert parse_duration(spec.interval) > 0 and parse_duration(spec.timeout) > 0
    assert f"`{spec.name}`" in (REPO / "README.md").read_text()
    flags = build_parser(REGISTRY).format_help()
    assert f"--collector.{spec.name}.interval" in flags
    for option in spec.options:
        assert f"--collector.{spec.name}.{option.name}" in flags
