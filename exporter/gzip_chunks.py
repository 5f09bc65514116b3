"""One gzip member from deflate chunks compressed once each (per collector) and reused."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

# RFC 1952 header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# An empty final deflate block (what a raw compressor's Z_FINISH emits on no input).
_FINAL_BLOCK = b"\x03\x00"


def deflate_chunk(data: bytes, level: int = 6) -> bytes:
    """Raw deflate of ``data`` ending on a byte boundary (sync flush), so chunks concatenate."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def crc_and_size(chunks: Sequence[bytes], start: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """CRC-32 and length of ``b"".join(chunks)``, continuing from ``start``."""
    crc, size = start
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
    return crc, size


def gzip_join(
    plain: Sequence[bytes], deflated: Sequence[bytes], start: tuple[int, int] = (0, 0)
) -> bytes:
    """A single-member gzip from deflate chunks; ``plain`` continues the CRC state ``start``.

    ``start`` is the CRC-32 and length of the uncompressed data before ``plain`` (chunks that
    were deflated earlier), so a caller can reuse it instead of re-reading those bytes.
    """
    crc, size = crc_and_size(plain, start)
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return b"".join([_HEADER, *deflated, _FINAL_BLOCK, trailer])
