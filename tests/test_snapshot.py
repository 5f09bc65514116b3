"""Warm restart: the cache snapshot format, atomic writes, coalescing and restore rules."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from exporter import __version__
from exporter.entry import Status
from exporter.settings import CollectorSettings, Settings
from exporter.snapshot import (
    FILENAME,
    TMP_PREFIX,
    TMP_SUFFIX,
    SnapshotWriter,
    read_snapshot,
    snapshot_context,
    write_atomic,
)
from exporter.snapshot_codec import (
    FORMAT,
    SnapshotError,
    decode_family,
    encode_family,
    parse_document,
    restore,
)
from tests.doubles import make_cache
from tests.exposition import exposition
from tests.snapshots import (
    CONTEXT,
    cache_stats,
    filled_cache,
    fixture_args,
    hw_lines,
    mixed_families,
    owned_cache,
    roundtrip,
    snapshot_bytes,
    stop,
)
from tests.support import SYSFS, run_exporter


def test_families_roundtrip_to_identical_exposition() -> None:
    families = mixed_families()
    data = json.loads(json.dumps([encode_family(f) for f in families]))
    restored = [decode_family(d) for d in data]
    assert exposition(restored) == exposition(families)
    assert [(f.name, f.type, f.unit) for f in restored] == [
        (f.name, f.type, f.unit) for f in families
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [("type", "bogus"), ("unit", "volts"), ("samples", "nope"), ("name", 3), ("samples", None)],
)
def test_malformed_family_is_rejected(field: str, value: Any) -> None:
    data = encode_family(mixed_families()[0])
    data[field] = value
    with pytest.raises(SnapshotError):
        decode_family(data)


def test_malformed_sample_value_is_rejected() -> None:
    data = encode_family(mixed_families()[1])
    data["samples"][0]["value"] = "7"
    with pytest.raises(SnapshotError, match="non-numeric"):
        decode_family(data)


async def test_restored_fresh_entries_are_served_and_not_collected() -> None:
    doc = roundtrip(await filled_cache("a", "b"))
    cache, collectors, clock = owned_cache("a", "b")
    report = await restore(cache, doc, {}, clock.now())
    assert sorted(report.fresh) == ["test_a", "test_b"] and not report.expired
    original = [f for c in doc["collectors"].values() for f in c["families"]]
    assert [encode_family(f) for e in cache.views() for f in e.families] == original
    await cache.warm_up()
    assert cache.collections_started == 0 and all(c.calls == 0 for c in collectors.values())
    assert cache.view("test_a").refreshes == {"success": 1}
    assert cache.view("test_a").samples == len(original[0]["samples"])


async def test_shorter_interval_clamps_expiry_and_expired_entries_are_recollected() -> None:
    doc = roundtrip(await filled_cache("a", "b", interval=600.0))
    cache, collectors, clock = owned_cache("a", "b", interval=100.0)
    clock.advance(150)  # older than the new interval, younger than the old one
    report = await restore(cache, doc, {}, clock.now())
    entry = cache.view("test_a")
    assert report.expired == ["test_a", "test_b"]
    assert entry.collected_at is not None
    assert entry.expires_at == entry.collected_at.after(100.0)
    assert entry.status(clock.now()) == "stale" and entry.has_data
    await cache.warm_up()
    assert cache.collections_started == 2 and collectors["test_a"].calls == 1
    entry = cache.view("test_a")
    assert entry.refreshes == {"success": 2} and entry.expires_at == clock.now().after(100.0)


async def test_failed_entry_serves_last_good_data_but_is_retried_at_start() -> None:
    cache, collectors, clock = owned_cache("a")
    await cache.warm_up()
    clock.advance(61)
    collectors["test_a"].fail = "disk on fire"
    await cache.fresh(["test_a"], wait=5)
    doc = roundtrip(cache)
    fresh_cache, fresh_collectors, fresh_clock = owned_cache("a")
    fresh_clock.advance(61)
    await restore(fresh_cache, doc, {}, fresh_clock.now())
    entry = fresh_cache.view("test_a")
    assert entry.state is Status.ERROR and entry.last_error == "RuntimeError: disk on fire"
    assert entry.families and entry.expired(fresh_clock.now())
    await fresh_cache.warm_up()
    assert fresh_collectors["test_a"].calls == 1
    assert fresh_cache.view("test_a").state is Status.OK


async def test_not_applicable_entry_is_restored_without_rescanning() -> None:
    cache, collectors, _ = owned_cache("a")
    collectors["test_a"].not_applicable = True
    await cache.warm_up()
    fresh_cache, fresh_collectors, _ = owned_cache("a")
    report = await restore(fresh_cache, roundtrip(cache), {}, fresh_cache.clock.now())
    assert report.fresh == ["test_a"]
    await fresh_cache.warm_up()
    assert fresh_collectors["test_a"].calls == 0
    assert fresh_cache.view("test_a").state is Status.NOT_APPLICABLE


async def test_disabled_changed_or_future_entries_are_skipped() -> None:
    doc = roundtrip(await filled_cache("a", "b", "gone"))
    doc["collectors"]["test_b"]["collected_at"] += 3600  # the clock went backwards since
    cache, _, clock = owned_cache("a", "b")
    report = await restore(cache, doc, {"test_a": {"samples": "5"}}, clock.now())
    assert report.skipped == {
        "test_a": "collector options changed",
        "test_b": "timestamps in the future (clock went backwards?)",
        "test_gone": "collector not enabled",
    }
    assert not cache.view("test_a").has_data and not cache.view("test_b").has_data


async def test_one_corrupt_entry_does_not_spoil_the_others() -> None:
    doc = roundtrip(await filled_cache("a", "b"))
    doc["collectors"]["test_a"]["families"][0]["samples"][0]["labels"] = ["not", "a", "dict"]
    cache, _, clock = owned_cache("a", "b")
    report = await restore(cache, doc, {}, clock.now())
    assert report.fresh == ["test_b"] and "test_a" in report.skipped
    assert cache.view("test_a").families == () and cache.view("test_a").state is Status.PENDING


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda raw: b"\x00\xffgarbage" + raw, "not valid JSON"),
        (lambda raw: raw[: len(raw) // 2], "not valid JSON"),
        (lambda raw: raw.replace(FORMAT.encode(), b"hwcache-snapshot/2"), "format"),
        (lambda raw: b"[1, 2]", "format"),
        (lambda raw: raw.replace(b'"b1"', b'"other-boot"'), "boot_id"),
        (lambda raw: raw.replace(__version__.encode(), b"0.0.0-old"), "exporter_version"),
    ],
    ids=["garbage", "truncated", "format-version", "not-an-object", "boot", "version"],
)
async def test_unusable_snapshot_is_logged_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mutate: Any, reason: str
) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(mutate(snapshot_bytes(await filled_cache("a"))))
    with caplog.at_level(logging.WARNING, logger="exporter.snapshot"):
        assert read_snapshot(path, CONTEXT) is None
    assert f"ignoring cache snapshot {path}" in caplog.text and reason in caplog.text


def test_unreadable_snapshot_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILENAME).mkdir()  # a directory where the file should be: EISDIR on read
    assert read_snapshot(tmp_path / FILENAME, CONTEXT) is None
    assert "ignoring cache snapshot" in caplog.text


def test_context_records_version_boot_and_sources(tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    (procfs / "sys/kernel/random").mkdir(parents=True)
    (procfs / "sys/kernel/random/boot_id").write_text("0d1c-boot\n")
    context = snapshot_context(Settings(collectors=(), procfs=procfs, sysfs=SYSFS))
    assert context["exporter_version"] == __version__ and context["boot_id"] == "0d1c-boot"
    assert context["sources"] == {"procfs": str(procfs), "sysfs": str(SYSFS), "rootfs": "/"}
    assert snapshot_context(Settings(collectors=(), procfs=tmp_path))["boot_id"] is None


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_text("old")
    write_atomic(path, b'{"new": true}')
    assert json.loads(path.read_text()) == {"new": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]
    assert path.stat().st_mode & 0o077 == 0  # mkstemp: owner only, whatever the umask


def test_failed_write_keeps_old_file_and_removes_its_temp(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "occupied").mkdir(parents=True)  # os.replace over a non-empty dir fails
    with pytest.raises(OSError):
        write_atomic(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    assert (target / "occupied").is_dir()


def test_leftover_temp_files_are_removed_at_start(tmp_path: Path) -> None:
    leftover = tmp_path / f"{TMP_PREFIX}crashed{TMP_SUFFIX}"
    leftover.write_text('{"half')
    unrelated = tmp_path / "keep.tmp"
    unrelated.write_text("x")
    assert read_snapshot(tmp_path / FILENAME, CONTEXT) is None  # no snapshot yet
    assert not leftover.exists() and unrelated.exists()


def test_concurrent_reader_always_sees_a_complete_snapshot(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    docs = [json.dumps({"n": n, "pad": "x" * 200_000}).encode() for n in range(2)]
    write_atomic(path, docs[0])
    stop, seen, errors = threading.Event(), set(), []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(json.loads(path.read_bytes())["n"])
            except ValueError as exc:
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(60):
        write_atomic(path, docs[i % 2])
    stop.set()
    thread.join()
    assert errors == [] and seen == {0, 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]


async def test_writer_coalesces_bursts_and_flushes_at_close(tmp_path: Path) -> None:
    cache, _, clock = make_cache("a", "b")
    path = tmp_path / FILENAME
    writer = SnapshotWriter(cache, path, CONTEXT, {}, min_interval=0.5)
    cache.on_change(writer.changed)
    started = time.monotonic()
    await cache.warm_up()  # two changes: written at once, then coalesced
    for _ in range(20):
        cache.invalidate(["a"], refresh_now=False)
    await asyncio.sleep(0.1)
    assert writer.writes == 1  # the burst waits for the interval
    await cache.fresh(["a"], wait=5)
    await writer.close()  # no waiting for the interval: flushed now
    assert time.monotonic() - started < 0.5 and writer.writes == 2
    doc = parse_document(path.read_bytes(), CONTEXT)
    assert doc["collectors"]["a"]["refreshes"] == {"success": 2}
    assert doc["collectors"]["a"]["expires_at"] == clock.wall() + 60.0  # Unix time


async def test_writer_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache, _, _ = make_cache("a")
    writer = SnapshotWriter(cache, tmp_path / "missing-dir" / FILENAME, CONTEXT, {})
    cache.on_change(writer.changed)
    await cache.warm_up()
    await writer.close()
    assert writer.writes == 0 and "cannot write cache snapshot" in caplog.text


async def test_collector_options_are_recorded_per_entry() -> None:
    settings = CollectorSettings("a", 60.0, 5.0, {"samples": "5"})
    cache, _, _ = make_cache("a")
    await cache.warm_up()
    doc = json.loads(snapshot_bytes(cache, {settings.name: settings.options}))
    assert doc["collectors"]["a"]["options"] == {"samples": "5"}
    assert doc["format"] == FORMAT and doc["exporter_version"] == __version__


# End to end: a real exporter process restarted on the same --cache.dir.


def test_restart_serves_the_snapshot_without_collecting(tmp_path: Path) -> None:
    args = [
        *fixture_args(tmp_path / "state", "cpu", "synthetic"),
        "--collector.synthetic.samples=40",
    ]
    with run_exporter(args, tmp_path) as exporter:
        before = cache_stats(exporter)
        served = hw_lines(exporter)
        stop(exporter)
    assert before["collections_started"] == 2
    assert sum(line.startswith("hw_synthetic_") for line in served) == 40
    doc = json.loads((tmp_path / "state" / FILENAME).read_text())
    assert doc["format"] == FORMAT and sorted(doc["collectors"]) == ["cpu", "synthetic"]
    with run_exporter(args, tmp_path) as exporter:
        after = cache_stats(exporter)  # run_exporter waited for /-/ready: it is ready at once
        assert after["ready"] and after["collections_started"] == 0
        for name in ("cpu", "synthetic"):
            for key in ("collected_at", "expires_at", "refreshes", "samples"):
                assert after["collectors"][name][key] == before["collectors"][name][key], key
        assert hw_lines(exporter) == served
        assert "2 fresh (cpu, synthetic), 0 expired" in exporter.logs()


def test_restart_recollects_expired_and_changed_but_not_fresh(tmp_path: Path) -> None:
    args = fixture_args(tmp_path / "state", "cpu", "memory", "synthetic")
    with run_exporter([*args, "--collector.synthetic.samples=40"], tmp_path) as exporter:
        before = cache_stats(exporter)
        stop(exporter)
    time.sleep(1.2)
    changed = [*args, "--collector.cpu.interval=1s", "--collector.synthetic.samples=30"]
    with run_exporter(changed, tmp_path) as exporter:
        after = cache_stats(exporter)
        synthetic = [line for line in hw_lines(exporter) if line.startswith("hw_synthetic_")]
        logs = exporter.logs()
        stop(exporter)
    # memory restored fresh; cpu expired under its new 1s interval; synthetic's options changed.
    assert after["collections_started"] == 2 and len(synthetic) == 30
    assert (
        after["collectors"]["memory"]["collected_at"]
        == before["collectors"]["memory"]["collected_at"]
    )
    assert after["collectors"]["cpu"]["refreshes"] == {"success": 2}
    assert after["collectors"]["synthetic"]["refreshes"] == {"success": 1}
    assert "not restoring synthetic from the cache snapshot: collector options changed" in logs
    assert "1 fresh (memory), 1 expired (cpu)" in logs
    with run_exporter(fixture_args(tmp_path / "state", "memory"), tmp_path) as exporter:
        assert cache_stats(exporter)["collections_started"] == 0
        logs = exporter.logs()
    assert "not restoring cpu from the cache snapshot: collector not enabled" in logs


def test_corrupt_snapshot_is_ignored_and_replaced(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / FILENAME).write_bytes(b'{"format": "hwcache-snapshot/1", "collectors": {"cpu": [')
    with run_exporter(fixture_args(state, "cpu", "memory"), tmp_path) as exporter:
        assert cache_stats(exporter)["collections_started"] == 2
        stop(exporter)
    assert "ignoring cache snapshot" in exporter.logs() and "not valid JSON" in exporter.logs()
    doc = json.loads((state / FILENAME).read_text())
    assert doc["format"] == FORMAT and sorted(doc["collectors"]) == ["cpu", "memory"]
