"""Compressed request bodies (``Content-Encoding``), decoded piece by piece within two bounds.

Codex compresses its request bodies with zstd in some set-ups; other clients and gateways send
gzip or deflate. ``BodyDecoder`` takes the body as it arrives and keeps the decoded bytes, each
step producing at most ``PIECE`` bytes (zlib's ``max_length``; zstandard writes to a sink that
refuses more), so a bomb never gets further than:

* ``limit`` (``limits.max_body_bytes``) of decoded output, the same bound as a plain body, and
  the same limit for the compressed bytes read;
* ``ratio`` (``server.max_compression_ratio``): once past ``RATIO_FLOOR`` decoded bytes, the
  output may be at most ``ratio`` times the compressed bytes the decoder has taken so far. JSON compresses 3–5
  times (Codex's requests: 3.0 with zstd level 3, 27 for a history repeated fifty times), a
  bomb a thousand times or more: it is stopped after a few compressed kilobytes.

Both are 413. Data that is not what its coding says (a corrupt or truncated stream) is 400;
zstd frames that need a window above ``MAX_WINDOW`` (only ``--ultra`` levels make them) are
400 too, so no frame header can make the decoder allocate more. ``br`` has no maintained
library at hand and is 415, like any coding not listed in ``DECODABLE``.
"""

from __future__ import annotations

import zlib
from typing import IO, cast

import zstandard

from ..errors import InvalidRequest, PayloadTooLarge

__all__ = ["DECODABLE", "MAX_WINDOW", "PIECE", "RATIO_FLOOR", "BodyDecoder"]

_ZLIB = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
DECODABLE = (*_ZLIB, "zstd")
PIECE = 64 * 1024
RATIO_FLOOR = 1024 * 1024
MAX_WINDOW = 8 * 1024 * 1024  # zstd level 19 needs 8 MiB; the usual levels 2 MiB or less
_ZSTD_SLICE = 4096


class BodyDecoder:
    """One body's decoder: ``feed`` each piece as it arrives, then ``finish`` for the bytes."""

    def __init__(self, encoding: str, limit: int, ratio: int) -> None:
        self.encoding, self.limit, self.ratio = encoding, limit, ratio
        self.read = 0  # compressed bytes received (against the limit)
        self.consumed = 0  # compressed bytes the decoder has taken so far (against the ratio)
        self._out = bytearray()
        self._zlib: zlib._Decompress | None = None
        self._zstd: zstandard.ZstdDecompressionWriter | None = None
        self._first = True
        if encoding == "zstd":
            decoder = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
            # Any object with write() will do (zstandard calls only that); typed as a file.
            self._zstd = decoder.stream_writer(cast("IO[bytes]", _Sink(self)), write_size=PIECE)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.read += len(data)
        if self.read > self.limit:
            raise PayloadTooLarge(f"The compressed request body exceeds the limit of {self.limit} bytes "
                                  "(limits.max_body_bytes).")
        if self._zstd is not None:
            # In small slices: zstandard takes a whole write at once, and the ratio is checked
            # against what was taken, so a bomb's first slice cannot claim a large allowance.
            for start in range(0, len(data), _ZSTD_SLICE):
                piece = data[start:start + _ZSTD_SLICE]
                self.consumed += len(piece)
                try:
                    self._zstd.write(piece)
                except zstandard.ZstdError:
                    raise self._corrupt() from None
            return
        self._feed_zlib(data)

    def _feed_zlib(self, data: bytes) -> None:
        if self._zlib is None:
            wbits = _ZLIB[self.encoding]
            if self.encoding == "deflate" and data[0] & 0x0F != 8:
                wbits = -zlib.MAX_WBITS  # raw deflate without the zlib header, as aiohttp also accepts
            self._zlib = zlib.decompressobj(wbits)
        inflater = self._zlib
        while data:
            if inflater.eof:
                raise self._trailing()
            try:
                piece = inflater.decompress(data, PIECE)
            except zlib.error:
                raise self._corrupt() from None
            self.consumed += len(data) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
            self.add(piece)
            if inflater.unused_data:
                raise self._trailing()
            data = inflater.unconsumed_tail

    def add(self, piece: bytes) -> None:
        """Keep decoded bytes, refusing them past either bound."""
        self._out += piece
        size = len(self._out)
        if size > self.limit:
            raise PayloadTooLarge(f"The request body decodes beyond the limit of {self.limit} bytes "
                                  "(limits.max_body_bytes).")
        if self.ratio and size > RATIO_FLOOR and size > self.ratio * self.consumed:
            raise PayloadTooLarge(f"The request body decodes to more than {self.ratio} times its compressed size "
                                  "(server.max_compression_ratio).")

    def finish(self) -> bytes:
        """The decoded body; 400 when the stream stopped before its end."""
        if self._zlib is not None and not self._zlib.eof:
            raise InvalidRequest(f"The request body is truncated {self.encoding} data.", code="invalid_body")
        if self.read == 0:
            return b""
        if self._zstd is not None and not self._out:
            raise InvalidRequest("The request body is truncated zstd data.", code="invalid_body")
        return bytes(self._out)

    def _trailing(self) -> InvalidRequest:
        return InvalidRequest(f"The request body has data after the end of its {self.encoding} stream.",
                              code="invalid_body")

    def _corrupt(self) -> InvalidRequest:
        return InvalidRequest(f"The request body is not valid {self.encoding} data.", code="invalid_body")


class _Sink:
    """Where zstandard writes decoded pieces (at most ``PIECE`` each): into the decoder's bounds."""

    def __init__(self, decoder: BodyDecoder) -> None:
        self.decoder = decoder

    def write(self, data: bytes) -> int:
        self.decoder.add(bytes(data))
        return len(data)
