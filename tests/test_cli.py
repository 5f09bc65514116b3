"""Flags derived from the registry, collector selection, tool checks, README sync."""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys

import pytest

from collectors.base import CollectorContext
from collectors.registry import CollectorSpec, load_all
from collectors.toolkit.durations import format_duration, parse_duration
from collectors.toolkit.options import (
    Choice,
    CollectorOption,
    Duration,
    Flag,
    Integer,
    Options,
    Regex,
)
from collectors.toolkit.runner import CommandRunner
from exporter import __version__
from exporter.cli import build_parser, describe_defaults, enabled_collectors, settings_from_args
from exporter.flagparser import duration
from exporter.main import drop_missing_tools
from exporter.serve import ListenError, split_listen_address
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
    assert split_listen_address("localhost:65535") == ("localhost", 65535)
    assert split_listen_address("[fe80::1%eth0]:80") == ("fe80::1%eth0", 80)
    with pytest.raises(ListenError, match="expected host:port"):
        split_listen_address("localhost")


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("[::1:9", "expected host:port"),
        ("::1:9", "expected host:port"),
        ("[::1]]:9", "expected host:port"),
        ("[127.0.0.1]:9", "not an IPv6 address"),
        ("999.1.1.1:9", "not an IPv4 address"),
        ("my host:9", "not a host name"),
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:", "expected host:port"),
        (":+9", "expected host:port"),
        (":99999", "port 99999 is out of range (1-65535)"),
        (":0", "port 0 is out of range"),
    ],
)
def test_malformed_listen_address_is_a_usage_error(
    address: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ListenError, match=re.escape(message)):
        split_listen_address(address)
    (line,) = usage_error([f"--web.listen-address={address}"], capsys)
    assert "--web.listen-address" in line and message in line, line


def test_version_and_console_entry() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"hwcache-exporter {__version__}"


def test_unknown_flag_is_a_usage_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "--collector.nvem"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "hwcache-exporter: unknown flag --collector.nvem (did you mean --collector.nvme?); "
        "see --help"
    ]


@pytest.mark.parametrize(
    "flag",
    ["--collector.zfs", "--collector.nosuch", "--collector.textfile", "--collector.nope", "--x"],
)
def test_no_suggestion_for_unrelated_flags(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    (line,) = usage_error([flag], capsys)
    assert line == f"hwcache-exporter: unknown flag {flag}; see --help"


def test_version_only_when_every_flag_is_valid() -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "exporter", *argv]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO)

    bogus = run("--bogus", "--version")
    assert bogus.returncode == 2 and bogus.stdout == "", bogus
    assert bogus.stderr == "hwcache-exporter: unknown flag --bogus; see --help\n"
    fine = run("--web.response-cache=false", "--version")
    assert fine.returncode == 0 and fine.stdout == f"hwcache-exporter {__version__}\n", fine


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


def help_entries(text: str) -> dict[str, str]:
    """Each option line of ``--help`` (its invocation) mapped to its help text."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  -"):
            current, _, rest = line.strip().partition("  ")
            entries[current] = rest.strip()
        elif current is not None and line.startswith(" " * 6) and line.strip():
            entries[current] = f"{entries[current]} {line.strip()}".strip()
        else:
            current = None
    return entries


def test_help_describes_every_flag_once() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "100"},
    ).stdout
    assert out.startswith("usage: hwcache-exporter [flags]\n\n")
    assert out.count("1h30m") == 1, "the duration format is explained once"
    entries = help_entries(out)
    shown = {option for invocation in entries for option in re.findall(r"-[-\w.]+", invocation)}
    parser = build_parser(REGISTRY)
    for action in parser._actions:
        assert set(action.option_strings) <= shown, action.option_strings
    for invocation, text in entries.items():
        assert text, f"{invocation} has no description"
        assert "default: None" not in text and "(default: )" not in text, invocation
        assert text.count("(default:") <= 1, invocation
    for action in parser._actions:
        if isinstance(action, argparse.BooleanOptionalAction):
            flag = action.option_strings[0]
            assert f"{flag}, --no-{flag[2:]}" in entries, flag
        if action.type is duration:
            assert f"{action.option_strings[0]} DURATION" in entries, action.option_strings
    assert "(default: 6h)" in entries["--collector.smart.interval DURATION"]
    assert "(default: 0s)" in entries["--collector.synthetic.delay DURATION"]
    assert "(default: 4)" in entries["--collector.smart.workers N"]
    assert "(default: sdr)" in entries["--collector.ipmi.source sdr|sensor"]
    assert "(default: enabled)" in entries["--collector.ipmi.dcmi, --no-collector.ipmi.dcmi"]
    assert "(default: disabled)" in entries["--collector.dmi.serials, --no-collector.dmi.serials"]
    assert "by default" not in entries["--collector.synthetic, --no-collector.synthetic"]
    assert "(default: enabled)" in entries["--collector.smart, --no-collector.smart"]
    assert "(default: disabled)" in entries["--collector.synthetic, --no-collector.synthetic"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--collector.smart.intervall=1h"], "did you mean --collector.smart.interval?"),
        (["--web.listen-adress", ":1"], "unknown flag --web.listen-adress (did you mean"),
        (["--web.listen=:1"], "unknown flag --web.listen (did you mean --web.listen-address?)"),
        (["--collector.smart.int=1h"], "unknown flag --collector.smart.int"),
        (["--no-collector.smrat"], "(did you mean --no-collector.smart?)"),
        (["--web.response-cache=maybe"], "--web.response-cache=maybe: expected true or false"),
        (["--no-web.response-cache=true"], "--no-web.response-cache takes no value"),
        (["--zzz"], "unknown flag --zzz; see --help"),
        (["extra"], "unexpected argument 'extra'"),
        (["--log.level=loud"], "invalid choice: 'loud'"),
        (["--web.max-requests"], "expected one argument"),
        (["--collector.cpu.interval=soon"], "invalid duration 'soon'"),
    ],
)
def test_usage_error_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser(REGISTRY).parse_args(argv)
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("hwcache-exporter: ") and line.endswith("; see --help"), line
    assert message in line, line


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines a usage error printed (it must exit 2 and end in "see --help")."""
    with pytest.raises(SystemExit) as exc:
        build_parser(REGISTRY).parse_args(argv)
    assert exc.value.code == 2, argv
    lines = capsys.readouterr().err.splitlines()
    assert all(line.endswith("; see --help") for line in lines), lines
    return lines


@pytest.mark.parametrize(
    ("flag", "problem"),
    [
        ("--collector.disks.device-exclude=(", "invalid regex '('"),
        ("--collector.hwmon.chip-include=(", "invalid regex '('"),
        ("--collector.filesystems.fs-types-exclude=[", "invalid regex '['"),
        ("--collector.smart.workers=0", "0 is out of range: must be at least 1"),
        ("--collector.smart.workers=four", "not an integer: 'four'"),
        ("--collector.smart.device-timeout=0", "must be more than zero"),
        ("--collector.smart.nvme-health=maybe", "expected one of auto, true, false"),
        ("--collector.ipmi.source=foo", "expected one of sdr, sensor, not 'foo'"),
        ("--collector.dmi.serials=maybe", "expected true or false, not 'maybe'"),
        ("--collector.synthetic.delay=soon", "invalid duration 'soon'"),
        ("--web.telemetry-path=metrics", "must start with '/'"),
        ("--collector.cpu.timeout=0", "must be more than zero"),
        ("--web.idle-timeout=0s", "must be more than zero"),
        ("--web.read-header-timeout=0", "must be more than zero"),
    ],
)
def test_bad_flag_value_is_a_usage_error(
    flag: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (line,) = usage_error([flag], capsys)
    assert flag.split("=")[0] in line and problem in line, line


def options(*argv: str) -> dict[str, dict[str, str]]:
    """The collector options settings carry, per collector, for these flags."""
    args = build_parser(REGISTRY).parse_args(list(argv))
    settings = settings_from_args(args, REGISTRY, ["dmi", "ipmi", "smart", "synthetic"])
    return {c.name: dict(c.options) for c in settings.collectors}


def test_option_values_are_checked_and_canonical() -> None:
    default = options()
    assert default["dmi"] == {"serials": "false"}
    assert default["ipmi"] == {"source": "sdr", "dcmi": "true", "sel": "true"}
    assert default["synthetic"] == {"samples": "1000", "delay": "0s", "fail": "false"}
    given = options(
        "--collector.smart.device-timeout=120",
        "--collector.smart.nvme-health=YES",
        "--collector.ipmi.source=Sensor",
        "--collector.synthetic.delay=1.5",
    )
    assert given["smart"]["device-timeout"] == "2m" and given["smart"]["nvme-health"] == "true"
    assert given["ipmi"]["source"] == "sensor" and given["synthetic"]["delay"] == "1.5s"


@pytest.mark.parametrize(
    ("argv", "serials", "dcmi"),
    [
        (["--collector.dmi.serials"], "true", "true"),
        (["--collector.dmi.serials=true", "--no-collector.ipmi.dcmi"], "true", "false"),
        (["--collector.dmi.serials=TRUE", "--collector.ipmi.dcmi=false"], "true", "false"),
        (["--collector.dmi.serials=1", "--collector.ipmi.dcmi=no"], "true", "false"),
        (["--collector.dmi.serials", "--no-collector.dmi.serials"], "false", "true"),
    ],
)
def test_boolean_option_forms(argv: list[str], serials: str, dcmi: str) -> None:
    got = options(*argv)
    assert (got["dmi"]["serials"], got["ipmi"]["dcmi"]) == (serials, dcmi)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], True),
        (["--no-web.response-cache"], False),
        (["--web.response-cache=false"], False),
        (["--no-web.response-cache", "--web.response-cache=true"], True),
    ],
)
def test_boolean_flags_take_true_and_false(argv: list[str], expected: bool) -> None:
    assert build_parser(REGISTRY).parse_args(argv).response_cache is expected


def test_collectors_read_typed_option_values() -> None:
    declared = (
        CollectorOption("w", "4", "", Integer(1)),
        CollectorOption("t", "1s", "", Duration()),
        CollectorOption("on", "false", "", Flag()),
        CollectorOption("off", "true", "", Flag()),
        CollectorOption("re", "", "", Regex()),
        CollectorOption("none", "^x", "", Regex()),
        CollectorOption("missing", "true", "", Flag()),
        CollectorOption("empty-flag", "true", "", Flag()),
        CollectorOption("mode", "auto", "", Choice(("auto", "true", "false"))),
    )
    given = {"w": "3", "t": "2m", "on": "true", "off": "false", "re": "^sd", "none": ""}
    opts = Options(declared, {**given, "empty-flag": ""})
    assert opts.integer("w") == 3 and opts.seconds("t") == 120.0
    assert opts.flag("on") and not opts.flag("off")
    assert opts.flag("missing") and opts.flag("empty-flag")  # the declared default
    assert opts.text("mode") == "auto"
    pattern = opts.regex("re")
    assert pattern is not None and pattern.search("sda")
    assert opts.regex("none") is None  # an empty regex is no filter, not the default
    defaults = Options(declared, {})
    assert defaults.integer("w") == 4 and defaults.seconds("t") == 1.0
    assert not defaults.flag("on") and defaults.regex("none") is not None
    with pytest.raises(TypeError, match="not bool"):
        opts.flag("w")
    with pytest.raises(KeyError):
        opts.flag("undeclared")
    with pytest.raises(ValueError, match="option w"):
        Options(declared, {"w": "0"})


def test_a_collector_parses_its_options_once_at_construction() -> None:
    with pytest.raises(ValueError, match="option workers"):
        REGISTRY["smart"].factory(CollectorContext(options={"workers": "many"}))
    smart = REGISTRY["smart"].factory(CollectorContext())
    declared = {o.name: o.default for o in REGISTRY["smart"].options}
    assert smart.options.integer("workers") == int(declared["workers"])
