"""Content negotiation: prometheus_client's choice, mapped onto a closed set of formats."""

from __future__ import annotations

import random

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from exporter.formats import FORMATS, PLAIN, gzip_accepted, negotiate
from exporter.render import Families

OM = "application/openmetrics-text; version={}; charset=utf-8; escaping={}"
TEXT_1 = "text/plain; version=1.0.0; charset=utf-8; escaping={}"


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("", PLAIN.content_type),
        ("*/*", PLAIN.content_type),
        ("text/plain;version=0.0.4", PLAIN.content_type),
        (
            "application/openmetrics-text",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        ("application/openmetrics-text;version=1.0.0", OM.format("1.0.0", "underscores")),
        ("application/openmetrics-text;version=1.0.5", OM.format("1.0.0", "underscores")),
        ("application/openmetrics-text;version=1.7.0;escaping=dots", OM.format("1.0.0", "dots")),
        ("application/openmetrics-text;version=2.0.0", OM.format("2.0.0", "underscores")),
        (
            "application/openmetrics-text;version=2.0.9;escaping=values",
            OM.format("2.0.0", "values"),
        ),
        ("application/openmetrics-text;version=3.0.0", OM.format("2.0.0", "underscores")),
        (
            "application/openmetrics-text;version=99999999999999.0.0",
            OM.format("2.0.0", "underscores"),
        ),
        (
            "application/openmetrics-text;version=1.0.0;escaping=junk",
            OM.format("1.0.0", "underscores"),
        ),
        ("text/plain;version=1.0.0;escaping=allow-utf-8", TEXT_1.format("allow-utf-8")),
        ("text/plain;version=1.0.3;escaping=dots", TEXT_1.format("dots")),
        # prometheus_client skips OpenMetrics below 1.0.0 and takes the next acceptable item.
        ("application/openmetrics-text;version=0.0.1,text/plain;version=0.0.4", PLAIN.content_type),
        # ... and raises on a version that is not a number: plain text, not an error.
        ("application/openmetrics-text;version=abc", PLAIN.content_type),
        ("application/openmetrics-text;version=1.0.0abc", PLAIN.content_type),
        # A version prometheus_client would echo is answered with the nearest one served.
        ("application/openmetrics-text;version=2.x", OM.format("2.0.0", "underscores")),
        # q-values: the best acceptable item wins, whatever its place; q=0 is "not acceptable".
        (
            "application/openmetrics-text;version=1.0.0;q=0.2,text/plain;version=0.0.4;q=0.9",
            PLAIN.content_type,
        ),
        ("application/openmetrics-text;version=1.0.0;q=0", PLAIN.content_type),
        ("application/openmetrics-text;q=0,text/plain;version=1.0.0", TEXT_1.format("underscores")),
        (
            "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0",
            OM.format("1.0.0", "underscores"),
        ),
        (
            # Prometheus 2.x's default Accept header.
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
            "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            OM.format("1.0.0", "underscores"),
        ),
    ],
)
def test_accept_maps_to_a_served_format(accept: str, content_type: str) -> None:
    fmt = negotiate(accept)
    assert fmt.content_type == content_type and fmt in FORMATS


def test_formats_are_the_ones_prometheus_client_writes() -> None:
    assert len(FORMATS) == 14
    family = GaugeMetricFamily("hw_test_value", "Test.", labels=["device"])
    family.add_metric(["dev0"], 1.0)
    for fmt in FORMATS:
        media, *params = fmt.content_type.split("; ")
        # Without an escaping parameter, prometheus_client names no version either.
        accept = ";".join([media, *params]) if "escaping" in fmt.content_type else media
        encoder, content_type = choose_encoder(accept)
        assert content_type == fmt.content_type
        assert fmt.encoder(Families([family])) == encoder(Families([family]))


def test_formats_sharing_a_body_key_write_the_same_bytes() -> None:
    family = GaugeMetricFamily("hw_test.dotted_value", "Test.", labels=["device"])
    family.add_metric(["dev0"], 1.0)
    bodies: dict[str, bytes] = {}
    for fmt in FORMATS:
        body = fmt.encoder(Families([family]))
        assert bodies.setdefault(fmt.body_key, body) == body, fmt.content_type
    assert len(bodies) == 12


def test_no_accept_header_makes_a_new_format() -> None:
    rng = random.Random(1)
    parts = [
        "application/openmetrics-text",
        "text/plain",
        "*/*",
        "version=1.0.{}",
        "version={}.{}.{}",
        "version=0.0.{}",
        "escaping=dots",
        "escaping=allow-utf-8",
        "escaping={}",
        "q=0.{}",
        "charset=utf-8",
    ]
    seen = set()
    for _ in range(2000):
        items = []
        for _ in range(rng.randint(1, 3)):
            fields = rng.sample(parts, rng.randint(1, 4))
            fields = [f.format(*(rng.randint(0, 12) for _ in range(3))) for f in fields]
            items.append(";".join(fields))
        fmt = negotiate(",".join(items))
        assert fmt in FORMATS
        seen.add(fmt.content_type)
    assert 1 < len(seen) <= len(FORMATS)


@pytest.mark.parametrize(
    ("accept_encoding", "gzip"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=1.0, identity; q=0.5, *;q=0", True),
        ("*", True),
        ("", False),
        ("identity", False),
        ("deflate, br", False),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("*;q=1, gzip;q=0", False),
        ("gzip;q=abc", False),
        ("x-gzip", False),
    ],
)
def test_gzip_only_when_its_q_value_allows_it(accept_encoding: str, gzip: bool) -> None:
    assert gzip_accepted(accept_encoding) is gzip
