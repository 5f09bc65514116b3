"""Gzip bodies assembled from per-collector deflate chunks are valid, whole gzip members."""

from __future__ import annotations

import gzip
import subprocess
import zlib

import pytest

from exporter.gzip_chunks import deflate_chunk, gzip_join
from tests.doubles import ClientFactory, start

OPENMETRICS = "application/openmetrics-text;version=1.0.0"


@pytest.mark.parametrize(
    "chunks",
    [[b""], [b"a"], [b"x" * 100_000, b"", b"# EOF\n"], [bytes(range(256)) * 300, b"tail\n"]],
)
def test_join_is_one_valid_member(chunks: list[bytes]) -> None:
    body = gzip_join(chunks, [deflate_chunk(c) for c in chunks])
    assert gzip.decompress(body) == b"".join(chunks)
    # The system gzip checks CRC and length too, and rejects trailing garbage.
    assert subprocess.run(["gzip", "-t"], input=body).returncode == 0
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decompressor.decompress(body) == b"".join(chunks) and decompressor.eof
    assert decompressor.unused_data == b""


def test_corrupted_chunk_is_detected() -> None:
    chunks = [b"hello\n" * 100, b"world\n" * 100]
    deflated = [deflate_chunk(c) for c in chunks]
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(gzip_join([chunks[0], b"other"], deflated))


@pytest.mark.parametrize("accept", ["", OPENMETRICS])
async def test_metrics_gzip_equals_identity(aiohttp_client: ClientFactory, accept: str) -> None:
    client, cache, _, clock = await start(aiohttp_client, "a", "b", response_cache=False)
    for _ in range(2):  # the second round runs after a data change (new chunks and CRCs)
        plain = await (await client.get("/metrics", headers={"Accept": accept})).read()
        resp = await client.get(
            "/metrics",
            headers={"Accept": accept, "Accept-Encoding": "gzip"},
            auto_decompress=False,
        )
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await resp.read()) == plain
        clock.advance(61)
        await client.get("/metrics")  # refreshes both collectors
    assert b'hw_test_a_value{device="dev0"} 2.0' in plain
