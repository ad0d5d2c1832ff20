"""Colour lossless streams (medzoo.codec.colour): the reversible transform, and 8-bit colour coded as luma
and chroma where that is shorter than three planes apart."""

import numpy as np
import pytest

from medzoo.codec import colour
from medzoo.codec.stream import compress, decompress, read_header


def _triples(dtype):
    """Every 8-bit value on each channel against a spread of the others, and random triples."""
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1)
    grid = np.stack(np.meshgrid(values, values[::5], values[::3], indexing="ij"), axis=-1).reshape(-1, 3)
    rng = np.random.default_rng(0)
    return np.concatenate([grid, grid[:, ::-1], rng.integers(info.min, info.max + 1, size=(50_000, 3))])


@pytest.mark.parametrize("dtype", colour.CHANNEL_DTYPES)
def test_the_transform_is_exact_and_its_planes_fit_the_coded_type(dtype):
    rgb = _triples(dtype)
    ycocg = colour.forward(rgb)
    assert np.array_equal(colour.inverse(ycocg), rgb)
    coded = np.iinfo(colour.PLANE_DTYPE)
    assert coded.min <= ycocg.min() and ycocg.max() <= coded.max
    info = np.iinfo(dtype)
    assert info.min <= ycocg[:, 0].min() and ycocg[:, 0].max() <= info.max  # luma keeps the channel's range
    grey = np.repeat(rgb[:, :1], 3, axis=1)
    assert np.array_equal(colour.forward(grey)[:, 1:], np.zeros((len(grey), 2)))  # grey: no chroma
    assert np.array_equal(colour.forward(grey)[:, 0], grey[:, 0])


def _ultrasound_like(dtype="uint8", seed=0):
    """A grey B-mode image stored as RGB, with a coloured (Doppler-like) box: three near-equal planes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:120]
    grey = np.clip(60 + 50 * np.sin(xx / 11.0) * np.cos(yy / 17.0) + rng.normal(0, 6, yy.shape), 0, 255)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[30:60, 40:80, 0] = np.clip(rgb[30:60, 40:80, 0] + 120, 0, 255)
    rgb[30:60, 40:80, 2] = np.clip(rgb[30:60, 40:80, 2] * 0.4, 0, 255)
    info = np.iinfo(dtype)
    return (rgb.round() + info.min).astype(dtype)[None]


@pytest.mark.parametrize("dtype", colour.CHANNEL_DTYPES)
def test_8_bit_colour_is_coded_as_luma_and_chroma_exactly_and_in_fewer_bits(dtype):
    pixels = _ultrasound_like(dtype)
    data = compress(pixels, lossless=True)
    assert read_header(data).kind == "lossless-colour"
    back = decompress(data)
    assert back.dtype == pixels.dtype and back.shape == pixels.shape and np.array_equal(back, pixels)
    planes_apart = compress(np.ascontiguousarray(pixels[0].transpose(2, 0, 1)), lossless=True)  # 3 grey images
    assert read_header(planes_apart).kind == "lossless"
    assert len(data) < 0.7 * len(planes_apart)


def test_colour_that_does_not_repeat_across_planes_keeps_the_planes_and_16_bit_colour_is_not_transformed():
    rng = np.random.default_rng(1)
    unrelated = rng.integers(0, 256, size=(2, 40, 48, 3)).astype(np.uint8)
    for pixels in (unrelated, _ultrasound_like().astype(np.uint16) * 64):
        data = compress(pixels, lossless=True)
        back = decompress(data)
        assert back.dtype == pixels.dtype and np.array_equal(back, pixels)
    assert read_header(compress(_ultrasound_like().astype(np.uint16) * 64, lossless=True)).kind == "lossless"


def _with_mode(data: bytes, mode: int) -> bytes:
    """A stream with its mode byte (after the magic and the format version) changed, the CRC32 made to match."""
    import struct
    import zlib

    body = data[:5] + bytes([mode]) + data[6:-4]
    return body + struct.pack(">I", zlib.crc32(body))


def test_a_stream_marked_colour_that_cannot_be_is_refused_not_decoded():
    from medzoo.codec.bitio import BitstreamError

    grey = compress(_ultrasound_like()[..., :1], lossless=True)  # one channel: mode 2
    with pytest.raises(BitstreamError, match="colour-transformed stream of 1 uint8"):
        decompress(_with_mode(grey, 6))
    deep = compress(_ultrasound_like().astype(np.uint16) * 64, lossless=True)  # 16-bit colour: mode 2
    with pytest.raises(BitstreamError, match="colour-transformed stream of 3 uint16"):
        decompress(_with_mode(deep, 6))
    colour_stream = compress(_ultrasound_like(), lossless=True)
    assert np.array_equal(decompress(_with_mode(colour_stream, 6)), _ultrasound_like())  # the byte is where we say
