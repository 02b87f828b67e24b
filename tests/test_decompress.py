"""Table tests for ``proxy/gates/decompress.py``: each coding decoded piece by piece, both bounds, and
what a corrupt stream is."""

from __future__ import annotations

import gzip
import zlib

import pytest
import zstandard

from proxy.errors import InvalidRequest, PayloadTooLarge
from proxy.gates.decompress import PIECE, RATIO_FLOOR, BodyDecoder

BODY = b'{"model": "m", "input": "' + b"hello world " * 5000 + b'"}'
ENCODERS = {
    "zstd": lambda data: zstandard.ZstdCompressor(level=3, write_content_size=False).compress(data),
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
}


def decode(encoding: str, data: bytes, limit: int = 1 << 24, ratio: int = 100, step: int = 1000) -> bytes:
    decoder = BodyDecoder(encoding, limit, ratio)
    for start in range(0, len(data), step):
        decoder.feed(data[start:start + step])
    return decoder.finish()


@pytest.mark.parametrize("encoding", list(ENCODERS))
@pytest.mark.parametrize("step", [1, 1000, 1 << 20], ids=["byte by byte", "1 KB reads", "one read"])
def test_each_coding_decodes_whatever_the_reads(encoding: str, step: int) -> None:
    data = ENCODERS[encoding](BODY)
    assert decode(encoding, data, step=step if step != 1 or encoding != "zstd" else 7) == BODY


def test_raw_deflate_and_two_zstd_frames_decode() -> None:
    assert decode("deflate", zlib.compress(BODY)[2:-4]) == BODY
    packer = zstandard.ZstdCompressor(level=1)
    assert decode("zstd", packer.compress(BODY[:100]) + packer.compress(BODY[100:])) == BODY


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_decoded_size_past_the_limit_is_413(encoding: str) -> None:
    with pytest.raises(PayloadTooLarge, match="max_body_bytes"):
        decode(encoding, ENCODERS[encoding](BODY), limit=len(BODY) - 1, ratio=0)


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_a_bomb_stops_at_the_ratio_soon_after_the_floor(encoding: str) -> None:
    bomb = ENCODERS[encoding](bytes(64 << 20))
    decoder = BodyDecoder(encoding, 1 << 30, 100)
    with pytest.raises(PayloadTooLarge, match="max_compression_ratio"):
        decoder.feed(bomb)
    assert decoder.consumed < 64 * 1024  # stopped after a few compressed kilobytes
    assert len(decoder._out) <= RATIO_FLOOR + 2 * PIECE


def test_compressed_bytes_past_the_limit_are_413() -> None:
    decoder = BodyDecoder("gzip", 100, 0)
    with pytest.raises(PayloadTooLarge, match="compressed"):
        decoder.feed(bytes(101))


@pytest.mark.parametrize(("encoding", "data"), [
    ("zstd", b"\x28\xb5\x2f\xfd" + b"garbage" * 10),
    ("zstd", ENCODERS["zstd"](BODY)[:20]),
    ("gzip", gzip.compress(BODY)[:-8]),
    ("gzip", gzip.compress(BODY) + b"x"),
    ("deflate", b"\x78\x9c\xff\xff\xff"),
], ids=["zstd garbage", "zstd truncated", "gzip truncated", "gzip trailing data", "deflate garbage"])
def test_a_corrupt_stream_is_400(encoding: str, data: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode(encoding, data)
    assert type(info.value) is InvalidRequest and info.value.code == "invalid_body"


def test_an_empty_body_decodes_to_nothing() -> None:
    assert BodyDecoder("zstd", 10, 10).finish() == b""
