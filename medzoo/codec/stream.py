"""``medzoo.compress`` / ``medzoo.decompress``: VQ-VAE code maps as a real, self-describing bitstream.

The code maps of a VQ-VAE are range coded (``constriction``) with an
:class:`~medzoo.codec.entropy.EntropyModel` learned from the model's training
split and shipped in its preset (``entropy_model.npz``), so coding needs no data.
The stream names everything a decoder needs to check before it trusts the payload:
the model and its weights, the entropy model, the shapes, and a CRC32 over the
whole stream.

Stream layout, format version 1 (integers marked v are unsigned LEB128 varints)::

    magic            4 bytes  b"\\x89MZC"
    format version   1 byte   1
    entropy kind     1 byte   0 iid, 1 position, 2 context (see medzoo.codec.entropy.KINDS)
    model name       v length + UTF-8 (empty for a model that was never saved as a preset)
    model version    v length + ASCII, e.g. "1.0.0"
    weights id       4 bytes  first bytes of the sha256 over the weight values (entropy.weights_fingerprint)
    entropy model id 4 bytes  first bytes of the entropy model's digest
    K                v        codebook size
    h, w             v, v     code map shape
    H, W, C          v, v, v  decoded image shape
    N                v        number of images
    payload length   v        bytes
    payload                   range-coder words (32-bit, big-endian), position-major: position 0 of
                              every image, then position 1, ...; trailing zero bytes of the last word dropped
    CRC32            4 bytes  over everything above

The entropy model conditions each code on its left and upper neighbours; the
decoder therefore decodes one map position at a time for all images at once.

Format version 2 holds a scale-hyperprior codec's latents
(:class:`~medzoo.models.hyperprior.HyperpriorCodec`, payload in
:mod:`medzoo.codec.hyperprior`)::

    magic            4 bytes  b"\x89MZC"
    format version   1 byte   2
    mode             1 byte   0 lossy (float images), 1 lossless on the codec's prediction, 2 lossless
                              without it, 3 lossy from integer pixels (decoded to the same dtype);
                              4 and 5 as 0 and 3 for an autoencoder's latent (medzoo.codec.latent);
                              6 as 2 on 8-bit colour turned into luma and chroma (medzoo.codec.colour)
    model name       v length + UTF-8
    model version    v length + ASCII
    weights id       4 bytes  as above
    tables id        4 bytes  first bytes of the coding tables' digest (CodingTables.digest)
    quality          v        the quality level (0 = lowest rate)
    H, W, C          v, v, v  image shape (before padding to a multiple of 64)
    N                v        number of images
    payload length   v        bytes
    payload                   modes 1-3 start with the pixel type (1 byte, lossless.DTYPES), the
                              array rank (1 byte) and per image and channel its lowest and highest
                              value (zigzag varints). The latents block follows: the largest tile
                              side (v, 0: never tiled; medzoo.codec.tiles) and the latents' ANS
                              words (32-bit, little-endian, trailing zero bytes of the last word
                              dropped); it is the rest of the payload in modes 0 and 3, and
                              length-prefixed (v) in modes 1, 2 and 6 (empty in 2 and 6), which end
                              with the residuals' ANS words (medzoo.codec.lossless). Modes 4 and 5
                              hold medzoo.codec.latent's block where the latents block would be
                              (tables id: latent.TABLES_ID; quality: the index of the model's level)
    CRC32            4 bytes  over everything above

Version 1 streams stay readable.
Bits per pixel of a stream are ``8 * len(stream) / (N * H * W)``: header included.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib

import numpy as np

from medzoo.errors import ConfigError, DataError
from medzoo.codec import dicom_io
from medzoo.codec.bitio import BitstreamError, Reader, range_coder, varint, zigzag
from medzoo.codec.entropy import KIND_IDS, KINDS, EntropyModel, entropy_model_for, weights_fingerprint

MAGIC = b"\x89MZC"
#: the newest format this medzoo writes; 1: VQ-VAE code maps, 2: hyperprior latents
FORMAT_VERSION = 2
VQ_FORMAT, HYPERPRIOR_FORMAT = 1, 2
#: the ``kind`` of a format-2 stream's header, by its mode byte: lossy latents, lossless on the codec's
#: prediction, lossless without it (the causal coder alone was smaller, or no codec was given)
HYPERPRIOR_KIND, LOSSLESS_KIND, CAUSAL_KIND = "hyperprior", "hyperprior-lossless", "lossless"
#: lossy latents of integer pixels (min-max scaled per image and channel), decoded back to their dtype
PIXELS_KIND = "hyperprior-pixels"
#: an any-size autoencoder's rounded latent, coded by the causal coder (medzoo.codec.latent): float images,
#: or integer pixels (min-max scaled per image and channel, decoded back to their dtype)
LATENT_KIND, LATENT_PIXELS_KIND = "autoencoder", "autoencoder-pixels"
LATENT_KINDS = (LATENT_KIND, LATENT_PIXELS_KIND)
#: the causal coder alone on 8-bit colour turned into luma and chroma first (medzoo.codec.colour)
CAUSAL_COLOUR_KIND = "lossless-colour"
CAUSAL_KINDS = (CAUSAL_KIND, CAUSAL_COLOUR_KIND)
MODES = {0: HYPERPRIOR_KIND, 1: LOSSLESS_KIND, 2: CAUSAL_KIND, 3: PIXELS_KIND, 4: LATENT_KIND, 5: LATENT_PIXELS_KIND,
         6: CAUSAL_COLOUR_KIND}
#: the modes that give back integer pixels (their payload starts with type, rank and ranges)
PIXEL_MODES = (LOSSLESS_KIND, *CAUSAL_KINDS, PIXELS_KIND, LATENT_PIXELS_KIND)
#: the modes that give back integer pixels a codec changed (a DICOM written from them is marked lossy)
LOSSY_PIXEL_MODES = (PIXELS_KIND, LATENT_PIXELS_KIND)
_MODE_IDS = {kind: mode for mode, kind in MODES.items()}
#: the entropy model kind ``compress`` uses unless told otherwise
DEFAULT_KIND = "context"
DEFAULT_MODEL = "vqvae-chestxray"
_ID_BYTES = 4


@dataclasses.dataclass(frozen=True)
class StreamHeader:
    """What a stream says about itself (:func:`read_header`).

    For a format-2 stream ``kind`` is one of :data:`MODES`' values, ``entropy_model_id`` the
    coding tables' id, ``num_codes`` 0, ``code_shape`` the latent's spatial shape and ``quality``
    the quality level (None for a lossless stream coded without the codec).
    """

    format_version: int
    kind: str
    model_name: str
    model_version: str
    weights_id: str
    entropy_model_id: str
    num_codes: int
    code_shape: tuple
    image_shape: tuple
    num_images: int
    payload_bytes: int
    header_bytes: int
    total_bytes: int
    quality: int | None = None

    @property
    def bits_per_pixel(self) -> float:
        """Stream size (header and checksum included) in bits per image pixel."""
        return 8.0 * self.total_bytes / (self.num_images * self.image_shape[0] * self.image_shape[1])

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["bits_per_pixel"] = self.bits_per_pixel
        return d


# ---------------------------------------------------------------- payloads
def encode_codes(codes, entropy_model: EntropyModel, kind: str = DEFAULT_KIND) -> bytes:
    """Range-code code maps (N, h, w) with ``entropy_model``; returns the payload bytes (no header).

    Maps of another size than the entropy model's are coded without its per-position term
    (any-size VQ-VAEs code images of any size).
    """
    constriction = range_coder()
    codes = entropy_model._check_codes(codes, any_shape=True)
    entropy_model._kind(kind)
    n, h, w = codes.shape
    fitted = (h, w) == tuple(entropy_model.code_shape)
    left, up = (np.ascontiguousarray(a.reshape(n, -1).T) for a in _neighbours(codes, entropy_model.num_codes))
    flat = np.ascontiguousarray(codes.reshape(n, -1).T).astype(np.int32)
    family = constriction.stream.model.Categorical(perfect=False)
    encoder = constriction.stream.queue.RangeEncoder()
    for p in range(h * w):
        encoder.encode(flat[p], family, entropy_model.step_probabilities(p if fitted else None, left[p], up[p], kind))
    payload = encoder.get_compressed().astype(">u4").tobytes()
    return _strip_last_word(payload)


def decode_codes(payload: bytes, entropy_model: EntropyModel, num_images: int, kind: str = DEFAULT_KIND,
                 code_shape=None) -> np.ndarray:
    """Inverse of :func:`encode_codes`: payload bytes -> code maps (N, h, w) int32 (``code_shape``: (h, w),
    default the entropy model's)."""
    constriction = range_coder()
    entropy_model._kind(kind)
    h, w = tuple(entropy_model.code_shape) if code_shape is None else (int(v) for v in code_shape)
    fitted = (h, w) == tuple(entropy_model.code_shape)
    k = entropy_model.num_codes
    padded = payload + b"\x00" * (-len(payload) % 4)
    words = np.frombuffer(padded, dtype=">u4").astype(np.uint32)
    decoder = constriction.stream.queue.RangeDecoder(words)
    family = constriction.stream.model.Categorical(perfect=False)
    codes = np.zeros((num_images, h, w), dtype=np.int64)
    border = np.full(num_images, k, dtype=np.int64)
    for p in range(h * w):
        i, j = divmod(p, w)
        left = codes[:, i, j - 1] if j > 0 else border
        up = codes[:, i - 1, j] if i > 0 else border
        codes[:, i, j] = decoder.decode(family, entropy_model.step_probabilities(p if fitted else None, left, up, kind))
    return codes.astype(np.int32)


def _neighbours(codes, k):
    from medzoo.codec.entropy import _contexts

    return _contexts(codes, k)


def _strip_last_word(payload: bytes) -> bytes:
    """Drop trailing zero bytes of the final 32-bit word only (the decoder pads them back)."""
    keep = len(payload)
    while keep > len(payload) - 3 and keep > 0 and payload[keep - 1] == 0:
        keep -= 1
    return payload[:keep]


# ------------------------------------------------------------------ streams
def pack(codes, entropy_model: EntropyModel, *, model_name: str, model_version: str, weights_id: str,
         image_shape, kind: str = DEFAULT_KIND) -> bytes:
    """Header + range-coded payload + CRC32 for code maps (N, h, w); see the module docstring."""
    codes = np.asarray(codes)
    if codes.ndim != 3 or len(codes) == 0:
        raise DataError(f"expected code maps (N, h, w) with N >= 1, got shape {codes.shape}")
    payload = encode_codes(codes, entropy_model, kind)
    name = model_name.encode("utf-8")
    version = model_version.encode("ascii")
    header = b"".join([
        MAGIC, bytes([VQ_FORMAT, KIND_IDS[kind]]),
        varint(len(name)), name, varint(len(version)), version,
        bytes.fromhex(weights_id[:2 * _ID_BYTES]), bytes.fromhex(entropy_model.digest[:2 * _ID_BYTES]),
        *(varint(int(v)) for v in (entropy_model.num_codes, *codes.shape[1:], *image_shape, len(codes),
                                    len(payload))),
    ])
    return _sealed(header, payload)


def _sealed(header: bytes, payload: bytes) -> bytes:
    body = header + payload
    return body + struct.pack(">I", zlib.crc32(body))


def pack_hyperprior(payload: bytes, *, model_name: str, model_version: str, weights_id: str, tables_id: str,
                    quality: int, image_shape, num_images: int, kind: str = HYPERPRIOR_KIND) -> bytes:
    """Header (format 2) + payload + CRC32; see the module docstring."""
    mode = _MODE_IDS[kind]
    name = model_name.encode("utf-8")
    version = model_version.encode("ascii")
    header = b"".join([
        MAGIC, bytes([HYPERPRIOR_FORMAT, mode]),
        varint(len(name)), name, varint(len(version)), version,
        bytes.fromhex(weights_id[:2 * _ID_BYTES]), bytes.fromhex(tables_id[:2 * _ID_BYTES]),
        *(varint(int(v)) for v in (quality, *image_shape, num_images, len(payload))),
    ])
    return _sealed(header, payload)


def _parse(data) -> tuple[StreamHeader, bytes]:
    """The header and payload of a stream, or of the stream inside a DICOM container (whose header
    then counts the container's bytes: bits per pixel include the DICOM headers it carries)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a medzoo stream is bytes, got {type(data).__name__}")
    data = bytes(data)
    if dicom_io.is_container(data):
        header, payload = _parse(dicom_io.inner_stream(data))
        extra = len(data) - header.total_bytes
        return dataclasses.replace(header, total_bytes=len(data), header_bytes=header.header_bytes + extra), payload
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        got = data[:len(MAGIC)]
        raise BitstreamError(f"not a medzoo stream: it starts with {got!r}, not the magic bytes {MAGIC!r}")
    r = Reader(data)
    r.take(len(MAGIC), "magic")
    version, kind_id = r.take(2, "format version and entropy kind")
    if version not in (VQ_FORMAT, HYPERPRIOR_FORMAT):
        raise BitstreamError(f"medzoo stream format version {version} is not supported by this medzoo "
                             f"(it reads versions {VQ_FORMAT} and {HYPERPRIOR_FORMAT}); "
                             + ("upgrade medzoo" if version > FORMAT_VERSION else "the stream is damaged"))
    kinds = {v: k for k, v in KIND_IDS.items()} if version == VQ_FORMAT else MODES
    if kind_id not in kinds:
        raise BitstreamError(f"corrupted medzoo stream: unknown {'entropy model kind' if version == 1 else 'mode'} "
                             f"{kind_id}")
    name = r.text("model name")
    model_version = r.text("model version")
    weights_id = r.take(_ID_BYTES, "weights id").hex()
    entropy_id = r.take(_ID_BYTES, "entropy model id" if version == VQ_FORMAT else "tables id").hex()
    if version == VQ_FORMAT:
        k, h, w, ih, iw, ic, n, payload_len = (r.varint(what) for what in (
            "codebook size", "code height", "code width", "image height", "image width", "image channels",
            "image count", "payload length"))
        quality = None
    else:
        quality, ih, iw, ic, n, payload_len = (r.varint(what) for what in (
            "quality", "image height", "image width", "image channels", "image count", "payload length"))
        k, h, w = 0, 4 * -(-ih // 64), 4 * -(-iw // 64)  # y's spatial size (the image padded to a multiple of 64)
        quality = None if kinds[kind_id] in CAUSAL_KINDS else quality
    header_bytes = r.pos
    payload = r.take(payload_len, "payload")
    if version == HYPERPRIOR_FORMAT and kinds[kind_id] in LATENT_KINDS:
        h, w = _latent_block_shape(payload, kinds[kind_id], n * ic)
    crc = r.take(4, "checksum")
    if r.pos != len(data):
        raise BitstreamError(f"corrupted medzoo stream: {len(data) - r.pos} unexpected bytes after the checksum")
    if struct.unpack(">I", crc)[0] != zlib.crc32(data[:-4]):
        raise BitstreamError("corrupted medzoo stream: the CRC32 checksum does not match its content")
    if min(h, w, ih, iw, ic, n) < 1 or (version == VQ_FORMAT and k < 1):
        raise BitstreamError("corrupted medzoo stream: a shape or count in the header is zero")
    header = StreamHeader(version, kinds[kind_id], name, model_version, weights_id, entropy_id, k, (h, w),
                          (ih, iw, ic), n, payload_len, header_bytes, len(data), quality)
    return header, payload


def _latent_block_shape(payload: bytes, kind: str, ranges: int) -> tuple[int, int]:
    """The latent's (h, w) from a mode-4/5 payload (after the pixel prefix of ``ranges`` image channels)."""
    r = Reader(payload)
    if kind == LATENT_PIXELS_KIND:
        r.take(2, "pixel type and rank")
        for _ in range(2 * ranges):
            r.varint("pixel range")
    r.varint("factor")
    r.take(4, "step")
    return r.varint("latent height"), r.varint("latent width")


def read_header(data) -> StreamHeader:
    """Parse and check a stream's header and checksum without decoding it (no model needed)."""
    return _parse(data)[0]


def read_stream_file(path) -> tuple[bytes, StreamHeader]:
    """A stream file's bytes and checked header; every error names the file (an empty one says so)."""
    import pathlib

    from medzoo.errors import DataError

    path = pathlib.Path(path)
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path}: empty file (0 bytes), not a medzoo stream")
    try:
        return data, read_header(data)
    except BitstreamError as exc:
        raise BitstreamError(f"{path}: {exc}") from None


# ------------------------------------------------------------------ public
def _is_hyperprior(model) -> bool:
    return hasattr(model, "hyper_synthesis") and hasattr(model, "entropy_bottleneck")


def _is_latent(model) -> bool:
    from medzoo.codec.latent import is_latent_coder

    return is_latent_coder(model)


def is_stream_coder(model) -> bool:
    """Whether ``model`` makes medzoo streams: a VQ-VAE, a hyperprior codec or an any-size autoencoder."""
    return hasattr(model, "quantizer") or _is_hyperprior(model) or _is_latent(model)


def _resolve_coder(model):
    """A zoo name, preset path or instance -> a model that can make streams (:func:`is_stream_coder`)."""
    from medzoo.zoo.identity import resolve_model

    model = resolve_model(model)
    if not is_stream_coder(model):
        raise ConfigError(f"compression needs a VQ-VAE (discrete code maps), a hyperprior codec or an any-size "
                          f"autoencoder (its latent, rounded); got a {type(model).__name__}")
    return model


def _resolve_vqvae(model):
    model = _resolve_coder(model)
    if not hasattr(model, "quantizer"):
        raise ConfigError(f"code maps come from a VQ-VAE; got a {type(model).__name__}")
    return model


def _codec_inputs(model, images) -> np.ndarray:
    """Float images (N, H, W, C) in [0, 1] of the codec's channels are used as they are; others preprocessed."""
    from medzoo.zoo.identity import prepare

    array = np.asarray(images)
    channels = model.image_shape[-1]
    if array.ndim == 3 and array.shape[-1] == channels and np.issubdtype(array.dtype, np.floating):
        array = array[None]
    if array.ndim == 4 and array.shape[-1] == channels and np.issubdtype(array.dtype, np.floating):
        if array.size == 0 or not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
            raise DataError("float images for a codec must be finite, in [0, 1], and at least one")
        return array.astype(np.float32, copy=False)
    return prepare(model, array)


def _checked_quality(quality, levels: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 0 <= quality < levels:
        raise ConfigError(f"quality must be an integer in 0..{levels - 1} (0 = fewest bits), got {quality!r}")
    return int(quality)


def _quality(model, quality) -> int:
    """A hyperprior codec's level: ``quality``, or the model's own."""
    return _checked_quality(model.quality if quality is None else quality, model.num_qualities)


def _latent_quality(model, quality) -> int:
    """An autoencoder's level: ``quality``, or the middle one of its levels."""
    from medzoo.codec.latent import levels_of

    levels = len(levels_of(model))
    return _checked_quality(levels // 2 if quality is None else quality, levels)


def _integer_latents(model, x, quality, batch_size) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs -> the rounded ``(y, z)`` (int64) at ``quality``, in batches.

    The encoder's floats need not be reproducible: only these integers travel.
    """
    from keras import ops

    ys, zs = [], []
    for i in range(0, len(x), batch_size):
        y, z = model.analyse(ops.convert_to_tensor(x[i:i + batch_size]), quality)
        ys.append(np.round(ops.convert_to_numpy(y)).astype(np.int64))
        zs.append(np.round(ops.convert_to_numpy(z)).astype(np.int64))
    return np.concatenate(ys), np.concatenate(zs)


def _lossy_block(model, tables, x, quality, batch_size, tile_size):
    """Model inputs (N, H, W, C) -> ``(block, y_hat, grid)``: the block is the largest tile side and the
    latents' ANS words; y_hat the coded integer latents of every tile (images over the tile size are
    split, :mod:`medzoo.codec.tiles`), so memory stays bounded at any image size."""
    from medzoo.codec import tiles
    from medzoo.codec.hyperprior import encode_latents

    grid = tiles.tile_grid(x.shape[1], x.shape[2], tile_size)
    latents = _integer_latents(model, tiles.split(x, grid), quality, tiles.per_call(grid, batch_size))
    words, y_hat = encode_latents(tables, *latents)
    return varint(tile_size) + _strip_last_word(words), y_hat, grid


def _packed(model, payload, fingerprint, tables_id, quality, image_shape, num_images, kind) -> bytes:
    from medzoo.zoo.identity import model_label, model_version

    name = model_label(model) if getattr(model, "zoo_metadata", None) else ""
    return pack_hyperprior(payload, model_name=name, model_version=model_version(model) if model else "",
                           weights_id=fingerprint, tables_id=tables_id, quality=quality, image_shape=image_shape,
                           num_images=num_images, kind=kind)


def _compress_hyperprior(model, x, quality, batch_size, tile_size) -> bytes:
    """Float model inputs -> a mode-0 stream (decoded to floats in [0, 1])."""
    from medzoo.codec.hyperprior import tables_for

    tables, fingerprint = tables_for(model)
    block, _, _ = _lossy_block(model, tables, x, quality, batch_size, tile_size)
    return _packed(model, block, fingerprint, tables.digest, quality, x.shape[1:], len(x), HYPERPRIOR_KIND)


def _compress_latent(model, images, quality, batch_size) -> bytes:
    """An any-size autoencoder's rounded latent at ``quality``: mode 4 (float inputs) or 5 (integer pixels)."""
    from medzoo.codec import latent
    from medzoo.codec.lossless import model_inputs

    factor, step = latent.levels_of(model)[quality]
    fingerprint = weights_fingerprint(model)
    if np.issubdtype(np.asarray(images).dtype, np.integer):
        pixels, rank, dtype, ranges = _codec_pixels(model, images)
        block = latent.encode_block(model, model_inputs(pixels, ranges), factor, step, batch_size)
        return _packed(model, _pixel_prefix(dtype, rank, ranges) + block, fingerprint, latent.TABLES_ID, quality,
                       pixels.shape[1:], len(pixels), LATENT_PIXELS_KIND)
    x = _codec_inputs(model, images)
    return _packed(model, latent.encode_block(model, x, factor, step, batch_size), fingerprint, latent.TABLES_ID,
                   quality, x.shape[1:], len(x), LATENT_KIND)


class NotIntegerPixelsError(DataError):
    """Lossless coding was given pixels of a type it does not code (floats, say): a model codes those lossily."""


def _integer_images(images) -> tuple[np.ndarray, int]:
    """Raw integer pixels (H, W), (N, H, W) or (N, H, W, C) -> (N, H, W, C) int64 and the rank given."""
    from medzoo.codec.lossless import DTYPES

    array = np.asarray(images)
    if array.dtype.name not in DTYPES:
        raise NotIntegerPixelsError(f"lossless compression codes integer pixels as read from the file ("
                                    f"{', '.join(DTYPES)}); "
                        f"got {array.dtype}" + (" (round and cast floats yourself: lossless means these exact "
                                                "integers)" if np.issubdtype(array.dtype, np.floating) else ""))
    if array.ndim not in (2, 3, 4) or array.size == 0:
        raise DataError(f"expected pixels of shape (H, W), (N, H, W) or (N, H, W, C), got {array.shape}")
    rank = array.ndim
    shaped = array[None, ..., None] if rank == 2 else array[..., None] if rank == 3 else array
    return shaped.astype(np.int64), rank


def _pixel_prefix(dtype, rank, ranges) -> bytes:
    """Pixel type, array rank and every image's and channel's range: how integer pixels come back."""
    from medzoo.codec.lossless import DTYPES

    return b"".join([bytes([DTYPES.index(np.dtype(dtype).name), rank]),
                     *(varint(zigzag(int(v))) for v in np.asarray(ranges).ravel())])


def _codec_pixels(model, images):
    """Integer pixels for a codec -> ``(pixels (N, H, W, C) int64, rank, dtype, ranges)``."""
    from medzoo.codec import lossless

    pixels, rank = _integer_images(images)
    if model is not None and pixels.shape[-1] != model.image_shape[-1]:
        raise DataError(f"this codec takes {model.image_shape[-1]} channel(s), the pixels have {pixels.shape[-1]}")
    return pixels, rank, np.asarray(images).dtype, lossless.pixel_range(pixels)


def _compress_pixels(model, images, quality, batch_size, tile_size) -> bytes:
    """Integer pixels -> a lossy mode-3 stream: each image and channel min-max scaled to [0, 1] for the
    codec, decoded back to the same dtype, shape and range."""
    from medzoo.codec import lossless
    from medzoo.codec.hyperprior import tables_for

    pixels, rank, dtype, ranges = _codec_pixels(model, images)
    tables, fingerprint = tables_for(model)
    block, _, _ = _lossy_block(model, tables, lossless.model_inputs(pixels, ranges), quality, batch_size, tile_size)
    return _packed(model, _pixel_prefix(dtype, rank, ranges) + block, fingerprint, tables.digest, quality,
                   pixels.shape[1:], len(pixels), PIXELS_KIND)


def _compress_lossless(model, images, quality, batch_size, tile_size) -> bytes:
    """Lossless stream; ``quality`` None tries the causal coder alone (on 8-bit colour also on luma and
    chroma) and on top of the codec's best level."""
    from medzoo.codec import colour, lossless, tiles
    from medzoo.codec.hyperprior import tables_for

    pixels, rank, dtype, ranges = _codec_pixels(model, images)
    tables, fingerprint = tables_for(model) if model is not None else (None, "0" * 8)
    n, h, w, c = pixels.shape

    def planes(a):
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2).reshape(n * c, h, w))

    def with_codec(level):
        x = lossless.model_inputs(pixels, ranges)
        block, y_hat, grid = _lossy_block(model, tables, x, level, batch_size, tile_size)
        recon = tiles.join(tables.reconstruct(model, y_hat, level, tiles.per_call(grid, 4)), grid, h, w)
        return block, lossless.encode_signal(planes(pixels - lossless.predictions(recon, ranges)), dtype)

    candidates = []  # (kind, quality, lossy payload, residual payload)
    if quality is None:
        candidates.append((CAUSAL_KIND, 0, b"", lossless.encode_signal(planes(pixels), dtype)))
        if colour.applies(pixels, dtype):
            candidates.append((CAUSAL_COLOUR_KIND, 0, b"",
                               lossless.encode_signal(planes(colour.forward(pixels)), colour.PLANE_DTYPE)))
    if model is not None:
        level = model.num_qualities - 1 if quality is None else quality
        candidates.append((LOSSLESS_KIND, level, *with_codec(level)))
    kind, level, lossy, residual = min(candidates, key=lambda c: len(c[2]) + len(c[3]))
    payload = _pixel_prefix(dtype, rank, ranges) + varint(len(lossy)) + lossy + residual
    return _packed(model, payload, fingerprint, tables.digest if tables else "0" * 8, level, pixels.shape[1:],
                   len(pixels), kind)


def compress(images, model=None, *, quality=None, lossless: bool = False, kind: str = DEFAULT_KIND,
             entropy_model=None, batch_size: int = 64, tile_size: int | None = None) -> bytes:
    """Compress images into a medzoo stream with a VQ-VAE, a hyperprior codec or an any-size autoencoder.

    Args:
        images: raw images (uint8 or float: the model's preprocessing is applied) or model
            inputs (float in [0, 1], used as they are); one image or a batch. A hyperprior
            codec takes any size (the stream records it; decoding crops the padding back),
            and integer pixels as read from the file (uint8, uint16, int16, int8), which it
            codes min-max scaled per image and decodes back to the same dtype, shape and
            range (12/16-bit radiographs, CT in Hounsfield units).
        model: a VQ-VAE or a :class:`~medzoo.models.hyperprior.HyperpriorCodec`: zoo name,
            preset path or instance; default ``"vqvae-chestxray"`` (the command line's ``medzoo
            compress`` with no model named codes losslessly instead). Lossless without a model:
            the causal coder alone (no weights needed to code or decode).
        quality: a hyperprior codec's quality level, 0 (fewest bits) to
            ``model.num_qualities - 1``; default the model's own ``quality``. An any-size
            autoencoder's: an index into its levels (:func:`medzoo.codec.latent.levels_of`),
            default the middle one. Lossless: the
            level whose reconstruction predicts the pixels; default None tries the highest
            level and no codec at all (the causal coder alone) and keeps the smaller stream.
        lossless: code the exact pixels (a hyperprior codec): ``images`` are integer arrays
            as read from the file (uint8, uint16, int16 or int8; (H, W), (N, H, W) or
            (N, H, W, C)), and ``decompress`` returns the same array, dtype and shape.
        kind: a VQ-VAE's entropy model: ``"context"`` (left/up neighbours + position,
            default), ``"position"`` or ``"iid"``.
        entropy_model: a VQ-VAE's :class:`~medzoo.codec.entropy.EntropyModel`; default: the
            one shipped in the model's preset, else a cached one, else one fitted now on its
            training split (see :func:`~medzoo.codec.entropy.entropy_model_for`).
        batch_size: images of 128 px coded per network call (bigger images or tiles go
            fewer at a time: memory stays bounded).
        tile_size: a hyperprior codec codes images with a side over this many pixels as
            equal tiles of at most this side (a multiple of 64; 0 never tiles); default
            :data:`medzoo.codec.tiles.DEFAULT_TILE` (512).

    Returns:
        The stream (bytes). ``medzoo.decompress(stream)`` gives ``model.decode(model.encode(x))``
        (a VQ-VAE), or the codec's reconstruction at that quality.

    Example:
        >>> data = medzoo.compress(raw_uint8_images, model="vqvae-chestxray")
        >>> 8 * len(data) / (len(raw_uint8_images) * 128 * 128)   # bits per pixel
        >>> images = medzoo.decompress(data)
    """
    from medzoo.codec.tiles import DEFAULT_TILE, check_tile_size
    from medzoo.zoo.identity import model_label, model_version, prepare

    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    tile_size = DEFAULT_TILE if tile_size is None else check_tile_size(tile_size)
    if lossless and model is None:
        if quality is not None:
            raise ConfigError("quality= picks a codec's level; lossless compression without a model has none")
        return _compress_lossless(None, images, None, batch_size, tile_size)
    model = _resolve_coder(DEFAULT_MODEL if model is None else model)
    if _is_latent(model):
        if lossless:
            raise ConfigError("an autoencoder's float decoder cannot predict pixels exactly; for lossless "
                              "compression pass no model (the causal coder) or a hyperprior codec")
        return _compress_latent(model, images, _latent_quality(model, quality), batch_size)
    if lossless:
        if not _is_hyperprior(model):
            raise ConfigError("lossless compression needs a hyperprior codec (its exact reconstruction predicts "
                              f"the pixels); got a {type(model).__name__}")
        return _compress_lossless(model, images, None if quality is None else _quality(model, quality), batch_size,
                                  tile_size)
    if _is_hyperprior(model):
        if np.issubdtype(np.asarray(images).dtype, np.integer):
            return _compress_pixels(model, images, _quality(model, quality), batch_size, tile_size)
        return _compress_hyperprior(model, _codec_inputs(model, images), _quality(model, quality), batch_size,
                                    tile_size)
    if quality is not None:
        raise ConfigError("quality= is for hyperprior codecs; a VQ-VAE has one rate (pick another VQ-VAE)")
    entropy_model = entropy_model or entropy_model_for(model)
    x = prepare(model, images)
    _check_code_size(model, entropy_model, x.shape[1:3])
    codes = model.encode(x, batch_size=batch_size)
    name = model_label(model) if getattr(model, "zoo_metadata", None) else ""
    # the input's own shape: an any-size model's stream says what size to decode back to
    return pack(codes, entropy_model, model_name=name, model_version=model_version(model),
                weights_id=weights_fingerprint(model), image_shape=x.shape[1:], kind=kind)


def _check_code_size(model, entropy_model: EntropyModel, image_size) -> None:
    """A fixed-size VQ-VAE codes its own size; an any-size one codes any (other sizes without the
    entropy model's per-position term, see :meth:`EntropyModel.step_probabilities`)."""
    if model.image_shape[0] is None or tuple(entropy_model.code_shape) == model.latent_size(*image_size):
        return
    height, width = model.image_shape[:2]
    raise DataError(f"{_label_of(model)} codes {height} x {width} images, not {image_size[0]} x {image_size[1]}: "
                    f"resize them first, e.g. with its preprocessing spec (model.preprocess_spec)")


def _label_of(model) -> str:
    from medzoo.zoo.identity import model_label

    return model_label(model) if getattr(model, "zoo_metadata", None) else "this VQ-VAE"


def _check_model(header: StreamHeader, model, fingerprint=None) -> None:
    from medzoo.zoo.identity import model_label

    fingerprint = (fingerprint or weights_fingerprint(model))[:2 * _ID_BYTES]
    if fingerprint != header.weights_id:
        made = f"{header.model_name} {header.model_version}" if header.model_name else "an unsaved model"
        raise BitstreamError(
            f"the stream was made with {made} (weights id {header.weights_id}) but the model given is "
            f"{model_label(model)} (weights id {fingerprint}); decode it with the model that made it"
        )
    if header.kind in LATENT_KINDS:
        if not _is_latent(model) or header.image_shape[-1] != model.image_shape[-1]:
            raise BitstreamError("the stream holds an autoencoder's latent; the model given cannot decode it")
        return
    if header.format_version == HYPERPRIOR_FORMAT:
        if not _is_hyperprior(model) or header.image_shape[-1] != model.image_shape[-1]:
            raise BitstreamError("the stream holds hyperprior latents; the model given cannot decode them")
        return
    if model.image_shape[0] is None:  # any size: the stream's image and code map must agree with f
        expected = (model.num_embeddings, model.latent_size(*header.image_shape[:2]), model.image_shape[-1])
        found = (header.num_codes, header.code_shape, header.image_shape[-1])
    else:
        expected = (model.num_embeddings, tuple(model.code_shape), tuple(model.image_shape))
        found = (header.num_codes, header.code_shape, header.image_shape)
    if expected != found:
        raise BitstreamError("the stream's codebook size or shapes do not match the model's")


#: what a decoder that cannot find the model a stream names is told to do
_PASS_THE_MODEL = "pass the model that made it (model=..., medzoo decompress --model PRESET_DIR)"


def check_named_model(header: StreamHeader) -> str:
    """The zoo name of the model a stream says made it, for decoding it without being told the model; a
    stream of an unsaved model, of a model the zoo does not hold (a preset folder) or of another version
    of a zoo name (an older release, a run of its recipe) is refused with what to pass instead. Reads the
    manifest only: no Keras."""
    from medzoo.errors import ModelNotFoundError
    from medzoo.zoo.manifest import find_entry, read_manifest, retired_record

    if not header.model_name:
        raise ConfigError(f"the stream was made with an unsaved model: {_PASS_THE_MODEL}")
    manifest = read_manifest()
    record = retired_record(manifest, header.model_name)
    if record is not None:  # its alias loads another network, which cannot decode this latent
        raise ConfigError(f"the stream was made with {header.model_name} {header.model_version}, which the zoo has "
                          f"retired (it now gives {record['replaced_by']}, another network): decode with that "
                          f"version's preset folder, from an older medzoo release or the repository's history: "
                          f"{_PASS_THE_MODEL}")
    try:
        held = find_entry(manifest, header.model_name)["version"]
    except ModelNotFoundError:
        raise ConfigError(f"the stream was made with {header.model_name} {header.model_version}, which the zoo "
                          f"does not hold (a preset folder or a model of your own): {_PASS_THE_MODEL}") from None
    if header.model_version and header.model_version != held:
        raise ConfigError(f"the stream was made with {header.model_name} {header.model_version}, and the zoo now "
                          f"holds version {held} (or the stream comes from a run of that recipe): {_PASS_THE_MODEL}")
    return header.model_name


def _model_for(header: StreamHeader, model):
    if model is None:
        from medzoo.zoo import load

        model = load(check_named_model(header), compile=False)
    return _resolve_coder(model)


def decompress_codes(data, model=None, *, entropy_model=None):
    """Decode a VQ-VAE stream's code maps: returns ``(header, codes (N, h, w) int32, model)``.

    ``model`` defaults to the zoo model the stream names (``medzoo.load(name)``); pass
    the model (or its preset path) for streams made with a model outside the zoo.
    """
    header, payload = _parse(data)
    if header.format_version != VQ_FORMAT:
        raise BitstreamError("the stream holds hyperprior latents, not code maps; use decompress_latents")
    model = _resolve_vqvae(_model_for(header, model))
    _check_model(header, model)
    entropy_model = entropy_model or entropy_model_for(model)
    if entropy_model.digest[:2 * _ID_BYTES] != header.entropy_model_id:
        raise BitstreamError(
            f"the stream was coded with entropy model {header.entropy_model_id}, but the one available for "
            f"this model is {entropy_model.digest[:2 * _ID_BYTES]} (refitted, or fitted on other data); "
            "use the entropy model file the stream was made with"
        )
    try:
        codes = decode_codes(payload, entropy_model, header.num_images, header.kind, header.code_shape)
    except (ValueError, RuntimeError) as exc:  # constriction refuses data it cannot decode
        raise BitstreamError(f"corrupted medzoo stream: the payload does not decode ({exc})") from exc
    return header, codes, model


def decompress_latents(data, model=None):
    """Decode a hyperprior stream's integer latents: returns ``(header, y_hat, z_hat, model)`` (int64, NHWC).

    These are the same integers on every machine, backend and batch size. Images over the
    stream's tile size give one latent per tile (images in order, tiles row by row).
    """
    header, _, _, y_hat, z_hat, model = _latents(data, model)
    return header, y_hat, z_hat, model


def _latents(data, model):
    """``(header, payload parts, tile grid, y_hat, z_hat, model)`` of a stream coded with a codec."""
    from medzoo.codec.hyperprior import decode_latents, latent_shapes, tables_for
    from medzoo.codec.tiles import tile_grid

    header, payload = _parse(data)
    if header.format_version != HYPERPRIOR_FORMAT:
        raise BitstreamError("the stream holds VQ-VAE code maps, not hyperprior latents; use decompress_codes")
    if header.kind in CAUSAL_KINDS:
        raise BitstreamError("this lossless stream was coded without the codec's reconstruction: it has no latents")
    if header.kind in LATENT_KINDS:
        raise BitstreamError("the stream holds an autoencoder's latent, not hyperprior latents; "
                             "medzoo.codec.latent.read_block reads it")
    model = _model_for(header, model)
    tables, fingerprint = tables_for(model) if _is_hyperprior(model) else (None, None)
    _check_model(header, model, fingerprint)
    if tables.digest[:2 * _ID_BYTES] != header.entropy_model_id:
        raise BitstreamError(f"the stream was coded with tables {header.entropy_model_id}, but this medzoo builds "
                             f"{tables.digest[:2 * _ID_BYTES]} for the model; decode it with the medzoo version "
                             "that made it")
    parts = _payload_parts(header, payload)
    h, w, c = header.image_shape
    grid = tile_grid(h, w, parts["tile"])
    y_shape, z_shape = latent_shapes(model, (grid.height, grid.width, c))
    words = parts["words"]
    try:
        y_hat, z_hat = decode_latents(tables, words + b"\x00" * (-len(words) % 4), header.num_images * grid.count,
                                      z_shape, y_shape)
    except (ValueError, RuntimeError) as exc:
        raise BitstreamError(f"corrupted medzoo stream: the payload does not decode ({exc})") from exc
    return header, parts, grid, y_hat, z_hat, model


def _payload_parts(header: StreamHeader, payload: bytes) -> dict:
    """A format-2 payload -> its parts: pixel type, rank and ranges (N, C, 2) of the pixel modes, the
    largest tile side and the latents' words (absent without a codec), the residuals (lossless)."""
    from medzoo.codec.lossless import DTYPES

    parts = {"lossy": payload, "residuals": b""}
    if header.kind in PIXEL_MODES:
        r = Reader(payload)
        dtype_id, rank = r.take(2, "pixel type and rank")
        if dtype_id >= len(DTYPES) or rank not in (2, 3, 4):
            raise BitstreamError("corrupted medzoo stream: unknown pixel type or rank")
        count = header.num_images * header.image_shape[-1] * 2
        ranges = np.array([r.signed("pixel range") for _ in range(count)], dtype=np.int64)
        parts.update(dtype=DTYPES[dtype_id], rank=rank, ranges=ranges.reshape(header.num_images, -1, 2))
        if header.kind in LOSSY_PIXEL_MODES:
            parts["lossy"] = payload[r.pos:]
        else:
            parts["lossy"] = r.take(r.varint("lossy payload length"), "lossy payload")
            parts["residuals"] = payload[r.pos:]
    if header.kind not in (*CAUSAL_KINDS, *LATENT_KINDS):
        r = Reader(parts["lossy"])
        parts["tile"] = r.varint("tile size")
        if parts["tile"] % 64:
            raise BitstreamError(f"corrupted medzoo stream: tile size {parts['tile']} is not a multiple of 64")
        parts["words"] = parts["lossy"][r.pos:]
    return parts


def _synthesised(model, y_hat, quality, grid, height, width, batch_size) -> np.ndarray:
    """Integer latents of every tile -> float images (N, height, width, C) in [0, 1], a few tiles at a time."""
    from keras import ops

    from medzoo.codec import tiles

    step = tiles.per_call(grid, batch_size)
    out = []
    for i in range(0, len(y_hat), step):
        x_hat = model.synthesise(ops.convert_to_tensor(y_hat[i:i + step].astype(np.float32)), quality)
        out.append(np.clip(ops.convert_to_numpy(x_hat)[:, :grid.height, :grid.width], 0.0, 1.0))
    return tiles.join(np.concatenate(out), grid, height, width).astype(np.float32)


def _as_given(pixels: np.ndarray, rank: int) -> np.ndarray:
    """(N, H, W, C) -> the rank the pixels were given in: (H, W), (N, H, W) or (N, H, W, C)."""
    return pixels[0, ..., 0] if rank == 2 else pixels[..., 0] if rank == 3 else pixels


def _decompress_lossless(data, model) -> np.ndarray:
    from medzoo.codec import colour, lossless, tiles

    header, payload = _parse(data)
    parts = _payload_parts(header, payload)
    n, (h, w, c) = header.num_images, header.image_shape
    if header.kind == LOSSLESS_KIND:
        from medzoo.codec.hyperprior import tables_for

        header, _, grid, y_hat, _, model = _latents(data, model)
        recon = tables_for(model)[0].reconstruct(model, y_hat, header.quality, tiles.per_call(grid, 4))
        prediction = lossless.predictions(tiles.join(recon, grid, h, w), parts["ranges"])
    else:
        prediction = 0
    try:
        signal = lossless.decode_signal(parts["residuals"], (n * c, h, w))
    except (ValueError, RuntimeError, DataError) as exc:
        raise BitstreamError(f"corrupted medzoo stream: the residuals do not decode ({exc})") from exc
    pixels = signal.reshape(n, c, h, w).transpose(0, 2, 3, 1) + prediction
    if header.kind == CAUSAL_COLOUR_KIND:
        if c != 3 or parts["dtype"] not in colour.CHANNEL_DTYPES:
            raise BitstreamError(f"corrupted medzoo stream: a colour-transformed stream of {c} {parts['dtype']} "
                                 f"channel(s) (the transform takes three of {' or '.join(colour.CHANNEL_DTYPES)})")
        pixels = colour.inverse(pixels)
    info = np.iinfo(parts["dtype"])
    if pixels.min() < info.min or pixels.max() > info.max:
        raise BitstreamError(f"corrupted medzoo stream: decoded pixels leave the {parts['dtype']} range")
    return _as_given(pixels.astype(parts["dtype"]), parts["rank"])


def decompress(data, model=None, *, entropy_model=None, batch_size: int = 64) -> np.ndarray:
    """Decode a medzoo stream back to images (N, H, W, C), float32 in the model's output range.

    A stream of integer pixels gives them back in the same dtype and shape: exactly (a
    lossless stream) or as the codec reconstructs them, in each image's value range.

    Raises:
        BitstreamError: not a medzoo stream, truncated, corrupted (CRC32), a newer format,
            or a stream made with other weights / another entropy model than those at hand.
    """
    header = read_header(data)
    if header.kind in (LOSSLESS_KIND, *CAUSAL_KINDS):
        return _decompress_lossless(data, model)  # a causal-only stream needs no model
    if header.kind in LATENT_KINDS:
        return _decompress_latent(data, model, batch_size)
    if header.format_version == HYPERPRIOR_FORMAT:
        from medzoo.codec.lossless import from_unit

        header, parts, grid, y_hat, _, model = _latents(data, model)
        h, w, _ = header.image_shape
        images = _synthesised(model, y_hat, header.quality, grid, h, w, batch_size)
        if header.kind == PIXELS_KIND:
            return _as_given(from_unit(images, parts["ranges"], parts["dtype"]), parts["rank"])
        return images
    header, codes, model = decompress_codes(data, model, entropy_model=entropy_model)
    size = header.image_shape[:2] if model.image_shape[0] is None else None  # crop an any-size model's padding
    return model.decode(codes, batch_size=batch_size, output_size=size)


def _decompress_latent(data, model, batch_size) -> np.ndarray:
    from medzoo.codec import latent
    from medzoo.codec.lossless import from_unit

    header, payload = _parse(data)
    model = _model_for(header, model)
    _check_model(header, model)
    known = {tables[:2 * _ID_BYTES]: version for tables, version in latent.VERSIONS.items()}
    if header.entropy_model_id not in known:
        raise BitstreamError(f"the stream's latent coder {header.entropy_model_id} is not one this medzoo reads "
                             f"({', '.join(known)}); decode it with the medzoo version that made it")
    parts = _payload_parts(header, payload)
    h, w, _ = header.image_shape
    images = latent.decode_block(model, parts["lossy"], header.num_images, h, w, batch_size,
                                 **known[header.entropy_model_id])
    if header.kind == LATENT_PIXELS_KIND:
        return _as_given(from_unit(images, parts["ranges"], parts["dtype"]), parts["rank"])
    return images


def zlib_bytes(codes) -> int:
    """Size of one code map as 16-bit integers compressed with zlib level 9 (a generic-compressor baseline)."""
    return len(zlib.compress(np.asarray(codes, dtype=">u2").tobytes(), 9))


def raw_bits(num_codes: int, code_shape) -> float:
    """Bits of a code map stored with ceil(log2 K) bits per code, no entropy coding."""
    return float(math.ceil(math.log2(num_codes)) * int(np.prod(code_shape)))
