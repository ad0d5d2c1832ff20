"""Any-size autoencoders as codecs: the latent rounded on a uniform step and coded by the causal coder.

A design that trains on two CPU cores: the transform is a zoo autoencoder (its encoder
and decoder as trained for reconstruction, or fine-tuned for rate at the steps of its
levels: ``ConvAutoencoder(rate_steps=...)``, recipe ``codec-chestxray``), and the entropy
coder is :mod:`medzoo.codec.lossless`'s causal coder, whose classified linear prediction
and contexts are fitted by the encoder for each latent channel of each stream and sent. An
f4c3 autoencoder's latent is a smooth 3-channel map a quarter of the image's side; its
neighbours predict it well, which a zero-mean hyperprior would not exploit. Its channels
differ in scale and texture (a rate-trained latent keeps some nearly empty), so each gets
predictors and contexts of its own: 18-47% fewer bits than one fit over all channels on the
1024 px radiographs (``codec-chestxray`` stage 2, steps 0.088-1).

A quality level is a pair ``(factor, step)``:

* ``factor`` (1, 2, 4, ...): the image is first reduced that many times per side
  (antialiased bicubic, :func:`medzoo.metrics.resize_bicubic`) and enlarged back after
  decoding. At low rates a finer latent of a smaller image beats a coarse latent of the
  full one, as in JPEG 2000 dropping its finest subbands; the scale-robust native
  autoencoders were trained at every scale down to half their native size.
* ``step``: the latent is divided by it and rounded; the decoder sees the integers times
  the step. Halving the step costs about one bit more per latent value (0.19 bpp at f4c3).

Block layout (the lossy part of a format-2 stream in modes ``autoencoder`` and
``autoencoder-pixels``; varints as in :mod:`medzoo.codec.bitio`)::

    factor        v
    step          4 bytes, float32 big-endian
    h, w, c       v, v, v   the latent's shape per image
    c times:                one per latent channel, the N images' planes of that channel
      size        v         the payload's bytes
      signal                the causal coder's payload of the N integer planes (h, w)
    tile          v         the tile side the model coded in, at the coded size (0: whole images)
    if tile:
      rows, cols, k v, v, v the tile grid (tiling.tile_starts of the coded size) and image channels
      offsets       N*rows*cols*k zigzag varints: each tile's mean error, in units of OFFSET_STEP
    grid          v         the correction field's cell side at the coded size (0: no field)
    if grid:
      rows, cols    v, v      its nodes per column and row (ceil of the coded size over grid)
      size          v         the payload's bytes
      nodes                   the causal coder's payload of the N*k planes (rows, cols), in OFFSET_STEP units

**Tile offsets.** A large image is coded in tiles that the network normalises apart
(GroupNorm statistics per tile), and each decodes with an error whose mean is the tile's
own: a constant offset per tile, which a narrow window shows as a grid of blocks (on the
15-bit WG04 chest CR RG1 the error's 128 px block means had a standard deviation of 81.8
stored units; JPEG 2000's, at the same bits, 1.2). The encoder decodes what it coded,
measures each tile's mean error and sends it (a byte or two per tile); the decoder adds it
back, so the tiles no longer show.

**Correction field.** What the offsets leave is error that drifts slowly inside the tiles:
on RG1 at quality 4 the 128 px block means still had a standard deviation of 9.2 stored
units against JPEG 2000's 1.2. Latent coder 4 also sends a smooth field: nodes every
:data:`FIELD_GRID` px of the coded size, fitted by least squares to the error left after the
offsets and enlarged by the bicubic resize, so it has no steps of its own. The nodes are coded
by the causal coder: on RG1 at quality 4, 433 bytes (0.6% of the stream) took the block-mean
deviation from 9.2 to 2.1 stored units and PSNR from 43.15 to 43.20 dB (docs/results.md, "Tile
seams in lossy coding").

Streams of latent coder 3 (:data:`TABLES_ID_V3`, without the field), of latent coder 2
(:data:`TABLES_ID_V2`, without the offsets either) and of latent coder 1
(:data:`TABLES_ID_V1`, one signal of all N * c planes in place of the c payloads) still decode.

Only the integers must be reproduced exactly, and they travel; encoder floats never
need to match. The decoder runs in floating point like every learned codec's synthesis.
"""

from __future__ import annotations

import hashlib
import math
import struct
import warnings

import numpy as np

from medzoo.codec import lossless
from medzoo.codec.bitio import BitstreamError, Reader, varint
from medzoo.errors import ConfigError, DataError, DomainShiftWarning
from medzoo.metrics import bicubic_weights, resize_bicubic

#: quality levels ``(factor, step)``, fewest bits first, for a model whose preset names none. On the 1024 px
#: Hannover test radiographs (stage-2 native f4c3 weights) they span 0.04-0.65 bpp and 32.2-38.0 dB; the
#: halved image carries 0.1-0.2 bpp, where it beats JPEG 2000 (docs/results.md)
DEFAULT_LEVELS = ((4, 0.25), (2, 1.0), (2, 0.5), (2, 0.25), (2, 0.125), (1, 0.35), (1, 0.25), (1, 0.125))
#: the level ``compress`` uses unless told (the middle one)
DEFAULT_QUALITY = len(DEFAULT_LEVELS) // 2
#: pixels shared by neighbouring tiles when a large image is encoded, and by its latent's tiles when decoded:
#: none, so each decoder tile holds exactly one encoder tile's latent. With overlapping tiles the stitched
#: latent mixes tiles normalised apart (GroupNorm), which the decoder never saw in training:
#: codec-chestxray's stage 2 lost 1.2 dB that way (39.12 against 40.31 dB at its finest step on the
#: 1024 px Hannover test radiographs, at the same bpp). Overlapping the decoder's tiles alone (32 or 64 px,
#: cross-faded), or decoding each tile's latent with 2-4 latent px of its neighbours', lost 3.2-3.6 dB with
#: `ae-chestxray-f4c3` (docs/results.md, "Tile seams in lossy coding").
TILE_OVERLAP = 0
#: rounded latents are kept in int16 (values beyond are clipped; a step that small is not useful)
LATENT_LIMIT = 32767
#: the id a stream's header carries in place of coding tables: the scheme and its version
TABLES_ID = hashlib.sha256(b"medzoo latent coder 4: uniform step, a causal coder per latent channel, "
                           b"tile offsets, a smooth correction field").hexdigest()
#: the third version's id: tile offsets, no field (decoded, no longer written)
TABLES_ID_V3 = hashlib.sha256(b"medzoo latent coder 3: uniform step, a causal coder per latent channel, "
                              b"tile offsets").hexdigest()
#: the second version's id: no tile offsets (decoded, no longer written)
TABLES_ID_V2 = hashlib.sha256(b"medzoo latent coder 2: uniform step, a causal coder per latent channel").hexdigest()
#: the first version's id: one causal signal of all channels' planes (decoded, no longer written)
TABLES_ID_V1 = hashlib.sha256(b"medzoo latent coder 1: uniform step, causal coder").hexdigest()
#: what each known version's block holds: channels coded separately, tile offsets, a correction field
VERSIONS = {TABLES_ID: {"per_channel": True, "offsets": True, "field": True},
            TABLES_ID_V3: {"per_channel": True, "offsets": True, "field": False},
            TABLES_ID_V2: {"per_channel": True, "offsets": False, "field": False},
            TABLES_ID_V1: {"per_channel": False, "offsets": False, "field": False}}
#: a tile offset's unit, as a share of the [0, 1] model input range (1/16 of an 8-bit grey level)
OFFSET_STEP = 1.0 / 4096
#: the correction field's cell side at the coded size. On RG1 at quality 4 (coded at half size) 32 px cut the
#: block-mean deviation from 9.2 to 2.1 stored units for 0.6% more bytes (+0.05 dB); 64 px left 3.0 (+0.2%),
#: 16 px reached 1.2 for 2.8% more
FIELD_GRID = 32
#: the largest cell a stream may name (a corrupted one could otherwise ask for enormous weight tables)
MAX_FIELD_GRID = 1 << 12


def is_latent_coder(model) -> bool:
    """Whether ``model`` can code through its latent: an any-size autoencoder or VAE with a continuous one."""
    return bool(getattr(model, "any_size", False)) and hasattr(model, "decoder") and \
        not hasattr(model, "quantizer") and not hasattr(model, "hyper_synthesis")


def levels_of(model) -> tuple:
    """The model's quality levels ``((factor, step), ...)``: its preset's ``codec.levels``, else the steps it was
    trained for (a rate-trained autoencoder's ``codec_levels``), else the defaults."""
    codec = (getattr(model, "zoo_metadata", None) or {}).get("codec") or {}
    levels = codec.get("levels") or getattr(model, "codec_levels", None) or DEFAULT_LEVELS
    return tuple((int(f), float(s)) for f, s in levels)


def check_level(factor, step) -> tuple[int, float]:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ConfigError(f"a level's factor is a whole number >= 1, got {factor!r}")
    if isinstance(step, bool) or not (isinstance(step, (int, float, np.number)) and math.isfinite(step) and step > 0):
        raise ConfigError(f"a level's step is a positive number, got {step!r}")
    return int(factor), float(np.float32(step))


def reduced_size(height: int, width: int, factor: int, minimum: int) -> tuple[int, int]:
    """The size an image is coded at: ``factor`` times smaller per side, never below ``minimum``."""
    return max(minimum, math.ceil(height / factor)), max(minimum, math.ceil(width / factor))


def encode_block(model, x: np.ndarray, factor: int, step: float, batch_size: int = 64) -> bytes:
    """Model inputs (N, H, W, C) in [0, 1] -> the block above, at level ``(factor, step)``."""
    factor, step = check_level(factor, step)
    n, h, w, _ = x.shape
    size = reduced_size(h, w, factor, model.downsample_factor)
    if (h, w) == size:
        latent = model.encode(x, batch_size=batch_size, overlap=TILE_OVERLAP)
    else:  # the images are checked as given; their reduction is the level's, not a domain shift
        model.check_images(x)
        small = np.clip(resize_bicubic(x, *size), 0.0, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DomainShiftWarning)
            latent = model.encode(small, batch_size=batch_size, overlap=TILE_OVERLAP)
    latent = np.asarray(latent, np.float32)
    if latent.ndim != 4:
        raise ConfigError(f"{type(model).__name__} has a flat latent; coding needs a spatial one")
    q = np.clip(np.round(latent / np.float32(step)), -LATENT_LIMIT, LATENT_LIMIT).astype(np.int64)
    _, lh, lw, lc = q.shape
    # every count of the causal coder's levels is coded and the shortest kept: the network paces this codec
    payloads = [lossless.encode_signal(np.ascontiguousarray(q[..., c]), "int16", thorough=True) for c in range(lc)]
    coded = x if (h, w) == size else small
    return b"".join([varint(factor), struct.pack(">f", step), varint(lh), varint(lw), varint(lc),
                     *(varint(len(p)) + p for p in payloads), _corrections_block(model, coded, q, step, batch_size)])


def coding_tile(model, height: int, width: int) -> int:
    """The tile side ``model`` codes an ``height x width`` image in (its automatic tiling), 0 for whole images."""
    tiles = model._tiles(height, width, "auto", TILE_OVERLAP)
    return 0 if tiles is None else int(tiles[0])


def tile_partition(length: int, tile: int, multiple: int) -> np.ndarray:
    """The index of the tile each of ``length`` pixels is counted in: tiles start where the model's do
    (:func:`medzoo.models.tiling.tile_starts` of the padded length), each running to the next start."""
    from medzoo.models.tiling import tile_starts

    padded = length + (-length) % multiple
    starts = tile_starts(padded, min(tile, padded), 0)
    return np.searchsorted(np.asarray(starts), np.arange(length), side="right") - 1


def _tile_means(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, R, Q, C): the mean of each tile of the partition ``rows`` x ``cols``."""
    n, _, _, c = values.shape
    r, k = int(rows.max()) + 1, int(cols.max()) + 1
    sums = np.zeros((n, r, k, c))
    np.add.at(sums, (slice(None), rows[:, None], cols[None, :]), values.astype(np.float64))
    counts = np.bincount(rows, minlength=r)[:, None] * np.bincount(cols, minlength=k)[None, :]
    return sums / counts[None, :, :, None]


def _corrections_block(model, coded: np.ndarray, q: np.ndarray, step: float, batch_size: int) -> bytes:
    """The corrections' part of the block: each tile's mean error, then the correction field fitted to the error
    that is left (:func:`fit_field`), both measured on the encoder's own decoding."""
    from medzoo.codec.bitio import zigzag

    n, h, w, c = coded.shape
    tile = coding_tile(model, h, w)
    if not tile:
        return varint(0) + varint(0)
    f = model.downsample_factor
    decoded = model.decode(q.astype(np.float32) * np.float32(step), batch_size=batch_size, output_size=(h, w),
                           overlap=TILE_OVERLAP)
    rows, cols = tile_partition(h, tile, f), tile_partition(w, tile, f)
    decoded = np.clip(np.asarray(decoded, np.float64), 0.0, 1.0)
    coded = np.asarray(coded, np.float64)
    units = np.round(_tile_means(coded - decoded, rows, cols) / OFFSET_STEP).astype(np.int64)
    _, r, k, _ = units.shape
    offsets = b"".join([varint(tile), varint(r), varint(k), varint(c), *(varint(zigzag(int(v))) for v in units.ravel())])
    corrected = np.clip(decoded + (units * OFFSET_STEP)[:, rows][:, :, cols], 0.0, 1.0)
    nodes = fit_field(coded - corrected, FIELD_GRID)
    if not nodes.any():
        return offsets + varint(0)
    planes = np.ascontiguousarray(nodes.transpose(0, 3, 1, 2).reshape(n * c, *nodes.shape[1:3]))
    payload = lossless.encode_signal(planes, "int16")
    return offsets + b"".join([varint(FIELD_GRID), varint(nodes.shape[1]), varint(nodes.shape[2]),
                               varint(len(payload)), payload])


def _field_weights(length: int, grid: int) -> np.ndarray:
    """(length, cells) matrix that enlarges ``ceil(length / grid)`` nodes to ``length`` pixels (bicubic, node
    ``i`` at the centre of the ``grid`` px cell ``i``; the last cell cut where the image ends)."""
    cells = -(-length // grid)
    return bicubic_weights(cells, cells * grid)[:length].astype(np.float64)


def fit_field(error: np.ndarray, grid: int) -> np.ndarray:
    """(N, H, W, C) error -> (N, R, Q, C) int64 nodes in :data:`OFFSET_STEP` units, ``R = ceil(H / grid)``: the
    least-squares fit of :func:`smooth_field` to the error (a separable solve, exact for the nodes)."""
    _, h, w, _ = error.shape
    rows, cols = _field_weights(h, grid), _field_weights(w, grid)
    left = np.linalg.solve(rows.T @ rows, rows.T)  # (R, H): the rows' least-squares inverse
    right = np.linalg.solve(cols.T @ cols, cols.T)  # (Q, W)
    nodes = np.einsum("rh,nhwc,qw->nrqc", left, np.asarray(error, np.float64), right, optimize=True)
    return np.clip(np.round(nodes / OFFSET_STEP), -LATENT_LIMIT, LATENT_LIMIT).astype(np.int64)


def smooth_field(nodes: np.ndarray, height: int, width: int, grid: int) -> np.ndarray:
    """(N, R, Q, C) nodes in :data:`OFFSET_STEP` units -> the (N, height, width, C) field they describe."""
    rows, cols = _field_weights(height, grid), _field_weights(width, grid)
    return np.einsum("hr,nrqc,wq->nhwc", rows, np.asarray(nodes, np.float64) * OFFSET_STEP, cols, optimize=True)


class Corrections:
    """What a block carries beside its latents: each tile's mean error ``offsets`` (N, R, Q, k) of tiles of
    side ``tile``, and the correction field's ``nodes`` (N, rows, cols, k) every ``grid`` px (None: none)."""

    def __init__(self, tile: int, offsets: np.ndarray, grid: int = 0, nodes: np.ndarray | None = None):
        self.tile, self.offsets, self.grid, self.nodes = tile, offsets, grid, nodes

    def apply(self, images: np.ndarray, f: int) -> np.ndarray:
        """Add the offsets, then the field, to decoded images (N, h, w, k) of the coded size, in [0, 1]."""
        _, h, w, k = images.shape
        rows, cols = tile_partition(h, self.tile, f), tile_partition(w, self.tile, f)
        if self.offsets.shape[1:3] != (rows.max() + 1, cols.max() + 1) or self.offsets.shape[-1] != k:
            raise BitstreamError(f"the stream's tile offsets {self.offsets.shape[1:]} do not fit its {h}x{w} "
                                 f"image in {self.tile} px tiles")
        images = np.clip(images + self.offsets[:, rows][:, :, cols], 0.0, 1.0)
        if self.nodes is None:
            return images
        if self.nodes.shape[1:] != (-(-h // self.grid), -(-w // self.grid), k):
            raise BitstreamError(f"the stream's correction field {self.nodes.shape[1:]} does not fit its {h}x{w} "
                                 f"image in {self.grid} px cells")
        return np.clip(images + smooth_field(self.nodes, h, w, self.grid), 0.0, 1.0)


def read_block(block: bytes, num_images: int, per_channel: bool = True, offsets: bool = True,
               field: bool = True, image_size: tuple | None = None,
               minimum: int = 1) -> tuple[int, float, np.ndarray, Corrections | None]:
    """The block's level, integer latents (N, h, w, c) int64 and :class:`Corrections` or None; ``field=False``
    reads latent coder 3, ``offsets=False`` latent coder 2, ``per_channel=False`` latent coder 1.

    ``image_size`` (height, width) with the model's ``minimum`` coded side: the correction field's
    grid is checked against the coded size before its nodes are decoded (a corrupted stream is
    refused, not allocated)."""
    from medzoo.codec.bitio import unzigzag

    r = Reader(block)
    factor = r.varint("factor")
    (step,) = struct.unpack(">f", r.take(4, "step"))
    lh, lw, lc = (r.varint(what) for what in ("latent height", "latent width", "latent channels"))
    if factor < 1 or not (math.isfinite(step) and step > 0) or min(lh, lw, lc) < 1:
        raise BitstreamError("corrupted medzoo stream: the latent block's level or shape is invalid")
    try:
        if not per_channel:
            planes = lossless.decode_signal(block[r.pos:], (num_images * lc, lh, lw))
            return factor, step, planes.reshape(num_images, lc, lh, lw).transpose(0, 2, 3, 1), None
        channels = []
        for c in range(lc):
            size = r.varint(f"latent channel {c}'s size")
            channels.append(lossless.decode_signal(r.take(size, f"latent channel {c}"), (num_images, lh, lw)))
    except (ValueError, RuntimeError, DataError) as exc:
        raise BitstreamError(f"corrupted medzoo stream: the latents do not decode ({exc})") from exc
    corrections = None
    tile = r.varint("tile side") if offsets else 0
    if tile:
        rows, cols, k = (r.varint(what) for what in ("tile rows", "tile columns", "image channels"))
        if min(rows, cols, k) < 1 or num_images * rows * cols * k > len(block):
            raise BitstreamError("corrupted medzoo stream: the tile offsets' grid is invalid")
        units = [unzigzag(r.varint("tile offset")) for _ in range(num_images * rows * cols * k)]
        corrections = Corrections(tile, np.asarray(units, np.float64).reshape(num_images, rows, cols, k) * OFFSET_STEP)
    grid = r.varint("correction field's cell") if field else 0
    if grid:
        rows, cols = r.varint("field rows"), r.varint("field columns")
        expected = None if image_size is None else tuple(
            -(-side // grid) for side in reduced_size(*image_size, factor, minimum))
        if corrections is None or grid > MAX_FIELD_GRID or min(rows, cols) < 1 or rows * cols > 1 << 24 \
                or (expected is not None and (rows, cols) != expected):
            raise BitstreamError("corrupted medzoo stream: the correction field's grid is invalid")
        k = corrections.offsets.shape[-1]
        try:
            planes = lossless.decode_signal(r.take(r.varint("field's size"), "correction field"),
                                            (num_images * k, rows, cols))
        except (ValueError, RuntimeError, DataError) as exc:
            raise BitstreamError(f"corrupted medzoo stream: the correction field does not decode ({exc})") from exc
        corrections.grid, corrections.nodes = grid, planes.reshape(num_images, k, rows, cols).transpose(0, 2, 3, 1)
    if r.pos != len(block):
        raise BitstreamError(f"corrupted medzoo stream: {len(block) - r.pos} bytes after the latent channels")
    return factor, step, np.stack(channels, axis=-1), corrections


def decode_block(model, block: bytes, num_images: int, height: int, width: int, batch_size: int = 64,
                 per_channel: bool = True, offsets: bool = True, field: bool = True) -> np.ndarray:
    """Inverse of :func:`encode_block`: float images (N, height, width, C) in [0, 1]."""
    f = model.downsample_factor
    factor, step, q, corrections = read_block(block, num_images, per_channel, offsets, field,
                                              image_size=(height, width), minimum=f)
    size = reduced_size(height, width, factor, f)
    if q.shape[1:3] != (math.ceil(size[0] / f), math.ceil(size[1] / f)) or q.shape[-1] != _latent_channels(model):
        raise BitstreamError(f"the stream's latent {q.shape[1:]} does not fit this model at {height}x{width}")
    small = np.clip(model.decode(q.astype(np.float32) * np.float32(step), batch_size=batch_size, output_size=size,
                                 overlap=TILE_OVERLAP), 0.0, 1.0)
    if corrections is not None:
        small = corrections.apply(small, f)
    return np.clip(resize_bicubic(small.astype(np.float32), height, width), 0.0, 1.0).astype(np.float32)


def _latent_channels(model) -> int:
    shape = model.decoder.input_shape
    return int(shape[-1])
