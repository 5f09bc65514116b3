"""What a script prints is checked like a collector's families; bad output keeps the last data."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.base import CollectorContext
from collectors.script import ScriptCollector
from collectors.toolkit.runner import CommandRunner
from exporter.cache import CacheEntry, MetricCache
from exporter.entry import EntryView, Status
from exporter.families import SCRIPT

GOOD = '# HELP raid_ok Array health.\n# TYPE raid_ok gauge\nraid_ok{array="md0"} 1\n'


def script_entry(name: str, output: Path) -> CacheEntry:
    """A cache entry whose script is ``cat <output>`` (the test rewrites the file)."""
    ctx = CollectorContext(runner=CommandRunner(), timeout=10)
    collector = ScriptCollector(ctx, ["/bin/cat", str(output)])
    return CacheEntry(name, collector, interval=3600, timeout=10, namespace=SCRIPT)


async def refresh(cache: MetricCache, name: str) -> EntryView:
    """Run one refresh of ``name`` to its end."""
    await cache.refresh(name)
    return cache.view(name)


BAD = {
    "parse-error": ("raid_ok{array= 1\n", "not the text exposition format"),
    "builtin-namespace": (
        "# TYPE hw_smart_status_passed gauge\nhw_smart_status_passed 1\n",
        "reserved for the built-in collectors (hw_*)",
    ),
    "exporter-namespace": (
        "# TYPE hwcache_collector_success gauge\nhwcache_collector_success 1\n",
        "reserved for the exporter's own metrics",
    ),
    "timestamp": ('raid_ok{array="md0"} 1 1700000000000\n', "has a timestamp"),
    "type-conflict": (
        "# TYPE raid_ok gauge\nraid_ok 1\n# TYPE raid_ok counter\nraid_ok 2\n",
        "type conflict: raid_ok is declared as gauge (line 1) and as counter (line 3)",
    ),
    "split-family": ('raid_ok 1\nraid_disks 2\nraid_ok{array="md1"} 0\n', "appears twice"),
    "not-utf8": (b'raid_ok{array="\xff"} 1\n'.decode("latin-1"), "not UTF-8"),
}


@pytest.mark.parametrize(("output", "error"), BAD.values(), ids=BAD.keys())
async def test_bad_output_fails_the_refresh_and_keeps_the_last_data(
    tmp_path: Path, output: str, error: str
) -> None:
    out = tmp_path / "out.prom"
    out.write_text(GOOD)
    cache = MetricCache([script_entry("raid", out)])
    entry = await refresh(cache, "raid")
    assert entry.state is Status.OK
    good = entry.families
    assert [f.name for f in good] == ["raid_ok"]

    out.write_bytes(output.encode("latin-1" if "\xff" in output else "utf-8"))
    cache.invalidate(["raid"], refresh_now=False)
    entry = await refresh(cache, "raid")
    assert entry.state is Status.ERROR
    assert entry.last_error is not None and error in entry.last_error
    assert entry.families == good  # served as stale


async def test_a_family_another_script_serves_is_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "a.prom", tmp_path / "b.prom"
    first.write_text(GOOD)
    second.write_text(GOOD)
    cache = MetricCache([script_entry("raid_a", first), script_entry("raid_b", second)])
    assert (await refresh(cache, "raid_a")).state is Status.OK
    entry = await refresh(cache, "raid_b")
    assert entry.state is Status.ERROR
    assert entry.last_error == "family raid_ok is already served by collector raid_a"


async def test_names_and_types_are_the_scripts(tmp_path: Path) -> None:
    out = tmp_path / "out.prom"
    out.write_text(
        "# TYPE raid_errors_total counter\nraid_errors_total 3\n"
        "# TYPE raid_resyncs counter\nraid_resyncs 2\n"  # no _total: served as untyped, same name
        "raid_untyped 7\n"
    )
    cache = MetricCache([script_entry("raid", out)])
    entry = await refresh(cache, "raid")
    assert entry.state is Status.OK, entry.last_error
    served = {s.name: (f.type, s.value) for f in entry.families for s in f.samples}
    assert served == {
        "raid_errors_total": ("counter", 3),
        "raid_resyncs": ("unknown", 2),
        "raid_untyped": ("unknown", 7),
    }


async def test_a_failing_script_says_why(tmp_path: Path) -> None:
    cache = MetricCache([script_entry("raid", tmp_path / "missing.prom")])
    entry = await refresh(cache, "raid")
    assert entry.state is Status.ERROR
    assert entry.last_error is not None
    assert "/bin/cat exited with status 1: " in entry.last_error
    assert "No such file or directory" in entry.last_error
