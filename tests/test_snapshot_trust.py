"""A snapshot is input, not trusted state: restore runs a refresh's checks, reads only files."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily

from collectors.registry import load_all
from exporter.cache import CacheEntry, MetricCache
from exporter.clock import FakeClock
from exporter.entry import Status
from exporter.formats import PROMETHEUS
from exporter.render import Renderer
from exporter.snapshot import FILENAME, MAX_SIZE, SnapshotWriter
from exporter.snapshot_codec import encode_family, parse_document, restore
from tests.doubles import CountingCollector
from tests.snapshots import (
    CONTEXT,
    cache_stats,
    filled_cache,
    fixture_args,
    hw_lines,
    owned_cache,
    roundtrip,
    stop,
)
from tests.support import Exporter, run_exporter

Doc = dict[str, Any]


def gauge(name: str, labels: dict[str, str], doc: str = "Injected.") -> dict[str, Any]:
    sample = {"name": name, "labels": labels, "value": 1.0}
    return {"name": name, "documentation": doc, "type": "gauge", "unit": "", "samples": [sample]}


def inject(doc: Doc, collector: str, family: dict[str, Any]) -> None:
    doc["collectors"][collector]["families"].append(family)


def set_label(doc: Doc, collector: str, value: str) -> None:
    families = doc["collectors"][collector]["families"]
    sample = next(s for f in families for s in f["samples"] if s["labels"])
    sample["labels"][next(iter(sample["labels"]))] = value


def rename_sample(doc: Doc, collector: str, name: str) -> None:
    doc["collectors"][collector]["families"][0]["samples"][0]["name"] = name


def set_label_name(doc: Doc, collector: str, name: str) -> None:
    doc["collectors"][collector]["families"][0]["samples"][0]["labels"] = {name: "v"}


def duplicate_family(doc: Doc, collector: str) -> None:
    families = doc["collectors"][collector]["families"]
    families.append(copy.deepcopy(families[0]))


SUCCESS = "hwcache_collector_success"
TAMPERING: list[tuple[str, Callable[[Doc], None], str]] = [
    (
        "framework-name",
        lambda d: inject(d, "test_a", gauge(SUCCESS, {"collector": "test_b"})),
        f"family {SUCCESS} is reserved for the exporter's own metrics",
    ),
    (
        "foreign-family",
        lambda d: inject(d, "test_a", gauge("hw_smart_status_passed", {"device": "sda"})),
        "family hw_smart_status_passed is not this collector's (it owns hw_test_a_*)",
    ),
    (
        "outside-namespace",
        lambda d: inject(d, "test_a", gauge("up", {})),
        "family 'up' is not a hw_* metric name",
    ),
    (
        "lone-surrogate",
        lambda d: set_label(d, "test_a", "dev\ud800"),
        "cannot be exposed: UnicodeEncodeError",
    ),
    (
        "surrogate-in-help",
        lambda d: inject(d, "test_a", gauge("hw_test_a_extra", {}, doc="Bad \udfff.")),
        "cannot be exposed: UnicodeEncodeError",
    ),
    (
        "sample-of-another-family",
        lambda d: rename_sample(d, "test_a", SUCCESS),
        f"sample '{SUCCESS}' does not belong to gauge hw_test_a_value",
    ),
    (
        "label-name",
        lambda d: set_label_name(d, "test_a", 'x="1"} 0\nhwcache_collector_success{y'),
        "invalid label name",
    ),
    ("duplicate-family", lambda d: duplicate_family(d, "test_a"), "appears twice"),
]


@pytest.mark.parametrize(
    ("tamper", "reason"), [(t, r) for _, t, r in TAMPERING], ids=[i for i, _, _ in TAMPERING]
)
async def test_restore_refuses_what_a_refresh_could_not_serve(
    tamper: Callable[[Doc], None], reason: str
) -> None:
    doc = roundtrip(await filled_cache("a", "b"))
    tamper(doc)
    cache, collectors, clock = owned_cache("a", "b")
    cache.prerender = Renderer().prerender
    report = await restore(cache, doc, {}, clock.now())
    assert report.fresh == ["test_b"] and list(report.refused) == ["test_a"]
    assert reason in report.refused["test_a"], report.refused
    refused = cache.view("test_a")
    assert refused.state is Status.PENDING and refused.families == () and not refused.rendered
    await cache.warm_up()
    assert collectors["test_a"].calls == 1 and collectors["test_b"].calls == 0
    refused = cache.view("test_a")
    assert refused.status(clock.now()) == "ok" and refused.refreshes == {"success": 1}


async def test_restore_refuses_a_family_another_collector_already_serves() -> None:
    doc = roundtrip(await filled_cache("a", "b"))
    # "test" owns hw_test_*: its saved families name one that test_b restored first.
    saved = doc["collectors"]["test_b"]
    doc["collectors"] = {"test_b": saved, "test": copy.deepcopy(saved)}
    clock = FakeClock()
    entries = [CacheEntry(n, CountingCollector(n), 60.0, 5.0) for n in ("test_b", "test")]
    cache = MetricCache(entries, clock)
    report = await restore(cache, doc, {}, clock.now())
    assert report.fresh == ["test_b"]
    assert report.refused == {
        "test": "family hw_test_b_value is already served by collector test_b"
    }


async def test_restored_entry_is_prerendered_like_a_refresh() -> None:
    doc = roundtrip(await filled_cache("a"))
    cache, _, clock = owned_cache("a")
    renderer = Renderer()
    cache.prerender = renderer.prerender
    generation = cache.generation
    assert (await restore(cache, doc, {}, clock.now())).fresh == ["test_a"]
    entry = cache.view("test_a")
    assert set(entry.rendered) == {PROMETHEUS.body_key} == set(renderer.renders)
    assert cache.generation > generation and entry.generation == cache.generation


class RecordingSamples(list[Any]):
    """A samples list that records which threads read it."""

    readers: set[int]

    def __iter__(self) -> Any:
        self.readers.add(threading.get_ident())
        return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        self.readers.add(threading.get_ident())
        return super().__getitem__(index)


async def test_snapshot_writer_encodes_families_off_the_event_loop(tmp_path: Path) -> None:
    cache, _, clock = owned_cache("a")
    family = GaugeMetricFamily("hw_test_a_value", "Big.", labels=["device"])
    for i in range(5000):
        family.add_metric([f"dev{i}"], float(i))
    samples = RecordingSamples(family.samples)
    samples.readers = set()
    family.samples = samples
    checked = await cache.check("test_a", [family])  # reads the samples in a worker thread
    samples.readers.clear()
    ok = dataclasses.replace(checked, renders={})
    cache.commit(
        "test_a", ok, lambda v: dataclasses.replace(v, state=Status.OK, collected_at=clock.now())
    )
    writer = SnapshotWriter(cache, tmp_path / FILENAME, CONTEXT, {})
    writer.changed(cache.view("test_a"))
    await writer.close()
    assert writer.writes == 1
    assert samples.readers and threading.get_ident() not in samples.readers
    saved = parse_document((tmp_path / FILENAME).read_bytes(), CONTEXT)
    assert saved["collectors"]["test_a"]["families"] == [encode_family(family)]


# End to end: a real exporter restarted on a snapshot somebody changed.


def metric_lines(exporter: Exporter) -> list[str]:
    status, body = exporter.get("/metrics")
    assert status == 200, body[:500]
    return body.decode().splitlines()


def test_tampered_entries_are_refused_and_collected_afresh_others_restored(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    args = fixture_args(state, "cpu", "disks", "dmi", "memory")
    with run_exporter(args, tmp_path) as exporter:
        before = cache_stats(exporter)["collectors"]
        stop(exporter)
    path = state / FILENAME
    doc = json.loads(path.read_text())
    # A failing disk "passes", every collector "succeeds", and a label nothing can encode.
    inject(doc, "cpu", gauge("hw_smart_status_passed", {"device": "sda"}))
    inject(doc, "memory", gauge(SUCCESS, {"collector": "dmi"}))
    set_label(doc, "disks", "sda\ud800")
    path.write_text(json.dumps(doc))
    assert "\\ud800" in path.read_text()
    with run_exporter(args, tmp_path) as exporter:
        stats = cache_stats(exporter)
        lines = metric_lines(exporter)
        logs = exporter.logs()
    assert stats["collections_started"] == 3, logs
    after = stats["collectors"]
    assert after["dmi"]["collected_at"] == before["dmi"]["collected_at"]
    for name in ("cpu", "disks", "memory"):
        assert after[name]["collected_at"] > before[name]["collected_at"], name
        assert after[name]["status"] == "ok" and after[name]["refreshes"] == {"success": 1}
    assert not [line for line in lines if "hw_smart" in line]
    # Every family the exporter adds itself carries the reserved prefix.
    assert all(line.startswith(("#", "hw_", "hwcache_")) for line in lines if line)
    for name in ("cpu", "disks", "dmi", "memory"):
        success = [line for line in lines if line.startswith(f'{SUCCESS}{{collector="{name}"}}')]
        assert success == [f'{SUCCESS}{{collector="{name}"}} 1.0'], name
    refusals = [line for line in logs.splitlines() if "from the cache snapshot" in line]
    assert len(refusals) == 3, logs
    for name, reason in (
        ("cpu", "family hw_smart_status_passed is not this collector's (it owns hw_cpu_*)"),
        ("memory", f"family {SUCCESS} is reserved"),
        ("disks", "cannot be exposed: UnicodeEncodeError"),
    ):
        assert f"refusing {name} from the cache snapshot, collecting it afresh: {reason}" in logs
    assert "1 fresh (dmi), 0 expired" in logs


def test_every_collectors_own_snapshot_is_restored_whole(tmp_path: Path) -> None:
    names = sorted(load_all())
    args = fixture_args(tmp_path / "state", *names)
    with run_exporter(args, tmp_path) as exporter:
        before = cache_stats(exporter)["collectors"]
        stop(exporter)
    with_data = sorted(n for n, c in before.items() if c["status"] in ("ok", "not_applicable"))
    assert "smart" in with_data and "cpu" in with_data
    with run_exporter(args, tmp_path) as exporter:
        after = cache_stats(exporter)
        logs = exporter.logs()
    assert "from the cache snapshot" not in logs, logs
    assert f"{len(with_data)} fresh ({', '.join(with_data)})" in logs
    for name in with_data:
        assert after["collectors"][name]["collected_at"] == before[name]["collected_at"], name


def test_smart_restores_the_nvme_health_log_it_exports(tmp_path: Path) -> None:
    """smart's hw_nvme_* families (no nvme-cli, or nvme-health=true) are its own on restore."""
    args = [*fixture_args(tmp_path / "state", "smart"), "--collector.smart.nvme-health=true"]
    with run_exporter(args, tmp_path) as exporter:
        before = cache_stats(exporter)["collectors"]["smart"]
        lines = hw_lines(exporter)
        stop(exporter)
    assert [line for line in lines if line.startswith("hw_nvme_critical_warning")]
    with run_exporter(args, tmp_path) as exporter:
        after = cache_stats(exporter)["collectors"]["smart"]
        logs = exporter.logs()
        assert hw_lines(exporter) == lines
    assert "from the cache snapshot" not in logs, logs
    assert after["collected_at"] == before["collected_at"]


def nested(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000)  # valid JSON, past the decoder's recursion


def oversized(path: Path) -> None:
    with path.open("wb") as file:
        file.truncate(MAX_SIZE + 1)  # sparse: costs no disk


@pytest.mark.parametrize(
    ("plant", "reason"),
    [
        (lambda path: os.mkfifo(path), "not a regular file (FIFO)"),
        (lambda path: path.symlink_to("/dev/zero"), "not a regular file (symbolic link)"),
        (oversized, f"{MAX_SIZE + 1} bytes, more than the {MAX_SIZE}-byte limit"),
        (nested, "not valid JSON: nested too deeply"),
    ],
    ids=["fifo", "symlink-to-dev-zero", "oversized", "nested"],
)
def test_a_snapshot_that_is_not_a_small_regular_file_is_ignored_at_once(
    tmp_path: Path, plant: Callable[[Path], None], reason: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    plant(state / FILENAME)
    # Bounded memory: reading a /dev/zero snapshot fails fast instead of exhausting the host.
    command = ("prlimit", f"--data={1 << 30}", sys.executable, "-m", "exporter")
    args = fixture_args(state, "cpu", "memory")
    with run_exporter(args, tmp_path, command=command, ready_timeout=30) as exporter:
        assert cache_stats(exporter)["collections_started"] == 2
        stop(exporter)
    logs = exporter.logs()
    assert f"ignoring cache snapshot {state / FILENAME}: " in logs and reason in logs, logs
    assert (state / FILENAME).is_file() and not (state / FILENAME).is_symlink()
    assert sorted(json.loads((state / FILENAME).read_text())["collectors"]) == ["cpu", "memory"]
