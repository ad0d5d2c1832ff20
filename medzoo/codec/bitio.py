"""Bytes of medzoo streams: unsigned LEB128 varints, a bounds-checked reader, and the range coder's handle.

One floor below the stream formats (:mod:`medzoo.codec.stream`, :mod:`medzoo.codec.hyperprior`,
:mod:`medzoo.codec.lossless`, :mod:`medzoo.codec.dicom_io`), so each reads and writes numbers the
same way without importing the others.
"""

from __future__ import annotations

from medzoo.errors import ConfigError, DataError


class BitstreamError(DataError):
    """A byte string is not a medzoo stream, is truncated or corrupted, or does not fit the model at hand."""


def range_coder():
    """The range coder, imported when first needed (a core dependency; kept lazy for import time)."""
    import constriction as module

    return module


def varint(value: int) -> bytes:
    """An unsigned integer as a LEB128 varint (seven bits a byte, low bits first)."""
    if value < 0:
        raise ConfigError(f"cannot store a negative number ({value}) in a stream")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def zigzag(value: int) -> int:
    """A signed integer as an unsigned one (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...), for :func:`varint`."""
    return 2 * value if value >= 0 else -2 * value - 1


def unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


class Reader:
    """Reads a byte string front to back; running past its end is a :class:`BitstreamError` naming the field."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise BitstreamError(f"truncated medzoo stream: it ends inside the {what} "
                                 f"(byte {len(self.data)} of at least {self.pos + n})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def varint(self, what: str) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise BitstreamError(f"corrupted medzoo stream: the {what} is not a valid number")

    def signed(self, what: str) -> int:
        """A zigzag varint (:func:`zigzag`)."""
        return unzigzag(self.varint(what))

    def text(self, what: str) -> str:
        raw = self.take(self.varint(f"{what} length"), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BitstreamError(f"corrupted medzoo stream: the {what} is not UTF-8") from None
