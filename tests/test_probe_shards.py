"""Scale-out: a real Prometheus shards BMCs over two exporter replicas with the shipped hashmod config."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import operator
from pathlib import Path
from typing import Any

import yaml

from tests.prom import run_prometheus
from tests.redfish_faults import FaultyRedfish, probe_config, serving
from tests.support import REPO, Exporter, run_exporter

EXAMPLE = REPO / "deploy" / "prometheus" / "bmc-shards.yml"
REPLICAS = 2
TARGETS = 8
Service = tuple[int, FaultyRedfish]


def shard(target: str, modulus: int) -> int:
    """Prometheus' ``hashmod``: the last 8 bytes of the MD5 of the value, big-endian, mod N."""
    return int.from_bytes(hashlib.md5(target.encode()).digest()[8:], "big") % modulus


def pick_both_shards(services: list[Service]) -> list[Service]:
    """``TARGETS`` services with at least one in each shard."""
    chosen = services[:TARGETS]
    for index in range(REPLICAS):
        if not any(shard(f"127.0.0.1:{p}", REPLICAS) == index for p, _ in chosen):
            extra = next(s for s in services if shard(f"127.0.0.1:{s[0]}", REPLICAS) == index)
            chosen[index] = extra
    return chosen


def example_for(replicas: list[str], targets_file: Path) -> dict[str, Any]:
    """The shipped example with this test's exporters and target file, relabelling untouched."""
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    jobs = config["scrape_configs"]
    assert len(jobs) == len(replicas), "one job per replica"
    for index, (job, replica) in enumerate(zip(jobs, replicas, strict=True)):
        assert job["metrics_path"] == "/probe" and job["params"] == {"module": ["bmc"]}
        job["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "1s"}]
        job["scrape_interval"], job["scrape_timeout"] = "1s", "1s"
        hashmod, keep, address = job["relabel_configs"][2:5]
        assert hashmod["action"] == "hashmod" and hashmod["modulus"] == len(replicas)
        assert keep == {"source_labels": ["__tmp_shard"], "regex": str(index), "action": "keep"}
        assert address["target_label"] == "__address__"
        address["replacement"] = replica
    return config


def probe_targets(exporter: Exporter) -> float:
    """``hwcache_probe_targets`` on a replica's own /metrics: the BMCs it has cached."""
    status, body = exporter.get("/metrics")
    assert status == 200
    (line,) = [x for x in body.decode().splitlines() if x.startswith("hwcache_probe_targets ")]
    return float(line.split()[1])


def test_every_bmc_is_polled_and_cached_by_exactly_one_replica(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        # More services than targets, so both shards get some whatever ports the OS hands out.
        spare = stack.enter_context(serving(TARGETS * 4))
        services = pick_both_shards(spare)
        targets = [f"127.0.0.1:{port}" for port, _ in services]
        shares = [[t for t in targets if shard(t, REPLICAS) == i] for i in range(REPLICAS)]
        args = [
            "--collector.disable-defaults",
            f"--config.file={probe_config(tmp_path, {'interval': '1h'})}",
        ]
        replicas = []
        for index in range(REPLICAS):
            workdir = tmp_path / f"replica{index}"
            workdir.mkdir()
            replicas.append(stack.enter_context(run_exporter(args, workdir)))
        targets_file = tmp_path / "bmc-targets.yml"
        targets_file.write_text(yaml.safe_dump([{"targets": targets}]))
        config = example_for([r.base.removeprefix("http://") for r in replicas], targets_file)
        prometheus = stack.enter_context(run_prometheus([], tmp_path, config=config))

        for index, share in enumerate(shares):
            job = f'job="bmc-shard-{index}"'
            size = len(share)
            prometheus.wait_for(
                f"count(up{{{job}}} == 1)", functools.partial(operator.eq, size), 60
            )
            # Scraped again and again, polled once: the replica answers from its cache.
            prometheus.wait_for(f"min(count_over_time(up{{{job}}}[1m]))", lambda v: v >= 3, 60)
            found = {r["metric"]["instance"] for r in prometheus.query(f"up{{{job}}}")}
            assert found == set(share)
            # The replica's own cache holds its share and nothing else.
            assert probe_targets(replicas[index]) == size

        for port, fake in services:
            target = f"127.0.0.1:{port}"
            assert fake.logins == 1, f"{target} logged into by {fake.logins} replicas"
            assert fake.requests["/redfish/v1/"] == 1, f"{target} polled more than once"
