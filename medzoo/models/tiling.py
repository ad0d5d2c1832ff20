"""Tiled inference: run a model over overlapping tiles of a large image and blend them back.

Peak memory then depends on the tile size, not the image size: a 4,096 x 4,096
radiograph goes through 512 x 512 tiles. Tiles overlap by ``overlap`` pixels and
are cross-faded with linear ramps over the overlap, so each output pixel near a
tile border is mostly taken from the tile where it lies further inside, where the
network saw the most context; the ramps sum to one, so flat regions stay flat and
no seam is drawn.

One function serves encode (output ``f`` times smaller), decode (``f`` times larger)
and reconstruct (same size): ``scale`` is the ratio of output to input size. Tile
origins and sizes are multiples of ``multiple`` (the model's ``f``), so tiles in the
image grid map exactly onto tiles in the latent grid.
"""

from __future__ import annotations

import math

import numpy as np

from medzoo.errors import ConfigError


#: :func:`tiled_apply` passes tiles to the model in groups of about this many pixels (16 M, 64 MB of float32)
TILE_GROUP_PIXELS = 1 << 24


#: a model call over tiles holds about this many pixels (four 1024 px images' worth), whatever the
#: tile: 4 tiles of 128 px a call would spend the time in calls, 64 tiles of 512 px would not fit
TILE_CALL_PIXELS = 4 * 1024 * 1024


def tiles_per_call(tile: int, batch_size: int) -> int:
    """Tiles per model call: :data:`TILE_CALL_PIXELS` worth (one at least); ``batch_size`` counts whole
    images and does not apply to tiles."""
    return max(1, TILE_CALL_PIXELS // (int(tile) * int(tile)))


def check_tiling(tile: int, overlap: int, multiple: int) -> tuple[int, int]:
    """Validate a tile size and overlap for a model whose sizes must be multiples of ``multiple``."""
    for name, value in (("tile_size", tile), ("overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer number of pixels, got {value!r}")
    tile, overlap = int(tile), int(overlap)
    if tile < 2 * multiple or tile % multiple:
        raise ConfigError(f"tile_size must be a multiple of the model's downsampling factor {multiple} and at "
                          f"least {2 * multiple}, got {tile}")
    if overlap < 0 or overlap % multiple or overlap > tile // 2:
        raise ConfigError(f"overlap must be a multiple of {multiple} between 0 and half the tile size "
                          f"({tile // 2}), got {overlap}")
    return tile, overlap


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Origins of tiles of size ``tile`` covering ``[0, length)``, neighbours sharing at least ``overlap``.

    The last tile ends at ``length`` (it may overlap its neighbour by more); a
    ``length`` up to ``tile`` is one tile.
    """
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(size: int, fade: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """1-D blending weights: linear ramps of ``fade`` samples at the ends that border another tile."""
    weights = np.ones(size, np.float32)
    if fade > 0:
        rising = (np.arange(fade, dtype=np.float32) + 0.5) / fade
        if fade_in:
            weights[:fade] = np.minimum(weights[:fade], rising)
        if fade_out:
            weights[-fade:] = np.minimum(weights[-fade:], rising[::-1])
    return weights


def tiled_apply(fn, x: np.ndarray, *, tile: int, overlap: int, multiple: int, scale: float = 1.0,
                output_size=None) -> np.ndarray:
    """Apply ``fn`` ((N, h, w, C) -> (N, h*scale, w*scale, C')) to ``x`` tile by tile and blend.

    Args:
        fn: the model function on one batch of tiles (numpy in, numpy out).
        x: (N, H, W, C) images or latents.
        tile: tile size in ``x``'s pixels (a multiple of ``multiple``).
        overlap: pixels that neighbouring tiles share (a multiple of ``multiple``).
        multiple: sizes and origins are kept to multiples of this; ``x`` is
            reflect-padded at the bottom and right to a multiple of it first.
        scale: output size / input size (``1 / f`` to encode, ``f`` to decode, 1 to reconstruct).
        output_size: ``(H', W')`` to crop the result to; default ``ceil(H * scale), ceil(W * scale)``.

    Returns:
        float32 (N, H', W', C').
    """
    tile, overlap = check_tiling(tile, overlap, multiple)
    n, h, w = x.shape[:3]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
    hp, wp = h + pad_h, w + pad_w
    th, tw = min(tile, hp), min(tile, wp)
    fade = int(round(overlap * scale))
    origins = [(y0, x0) for y0 in tile_starts(hp, th, overlap) for x0 in tile_starts(wp, tw, overlap)]
    # many tiles go through fn at once (it batches them): small tiles one call each would cost more in
    # calls than in arithmetic; groups of about TILE_GROUP_PIXELS keep memory bounded
    group = max(1, TILE_GROUP_PIXELS // max(1, n * th * tw))
    out = weight = None
    for first in range(0, len(origins), group):
        chosen = origins[first:first + group]
        batch = np.concatenate([x[:, y0:y0 + th, x0:x0 + tw] for y0, x0 in chosen])
        pieces = np.asarray(fn(batch), np.float32)
        for k, (y0, x0) in enumerate(chosen):
            piece = pieces[k * n:(k + 1) * n]
            if out is None:
                out = np.zeros((n, int(round(hp * scale)), int(round(wp * scale)), piece.shape[-1]), np.float32)
                weight = np.zeros(out.shape[1:3], np.float32)
            oy, ox = int(round(y0 * scale)), int(round(x0 * scale))
            ph, pw = piece.shape[1:3]
            mask = np.outer(_ramp(ph, fade, y0 > 0, y0 + th < hp), _ramp(pw, fade, x0 > 0, x0 + tw < wp))
            out[:, oy:oy + ph, ox:ox + pw] += piece * mask[None, :, :, None]
            weight[oy:oy + ph, ox:ox + pw] += mask
    out /= weight[None, :, :, None]
    if output_size is None:
        output_size = (math.ceil(h * scale), math.ceil(w * scale))
    return out[:, : output_size[0], : output_size[1]]


def match_means(outputs: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """Shift each tile's reconstruction so that its mean (per channel) is its input tile's.

    An any-size network normalises each tile on its own statistics (GroupNorm), so the absolute level
    of a tile's content is lost after its first layer and the decoder has to guess it back: on images
    unlike its training data each tile comes back with an offset of its own, a grid of blocks in a
    narrow window (``ae-chestxray-f4c3`` on the 15-bit WG04 chest CR RG1: the error's 128 px block
    means spread 86 stored units; matched, 2.1, and 2.4 dB more PSNR). The input holds the mean, and a
    reconstruction (or a denoising: noise averages out over a tile) should keep it. Outputs
    ``(T, h, w, C)`` and inputs ``(T, h, w, C)``: the same tiles.
    """
    shift = inputs.mean(axis=(1, 2), keepdims=True, dtype=np.float64) - \
        outputs.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
    return (outputs + shift).astype(np.float32)


def set_inference_tile(model, tile) -> None:
    """Make ``tile_size="auto"`` use ``tile = [size, overlap]`` pixels for images of more than four tiles'
    pixels (a preset records it as ``training.tiling`` when its crops call for it; see ``Recipe.inference_tile``)."""
    size, overlap = (int(v) for v in tile)
    check_tiling(size, overlap, model.downsample_factor)
    model.default_tile = (size, overlap)
    model.auto_tile_pixels = 4 * size * size
