"""Tiles: a large image is coded as a grid of equal tiles, so memory stays bounded at any size.

A hyperprior codec's activations grow with the image (a 2,048 px radiograph needs gigabytes at
the first layers). Images with a side over ``max_side`` are split into the fewest rows and
columns of tiles whose sides are at most ``max_side``, each tile a multiple of 64 px (the
codec's padding) and all of one size, so they are coded as a batch of small images. The
image is edge-padded to the grid; decoding crops it back. The stream records ``max_side``,
and the decoder recomputes the same grid from the image size.

Tiles are coded independently, like JPEG 2000 tiles: at low rates their borders can show.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from medzoo.errors import ConfigError

#: the largest tile side ``compress`` uses unless told otherwise (px)
DEFAULT_TILE = 512
#: tile sides are multiples of this (the codec pads images to it)
ALIGN = 64
#: pixels of tiles coded per network call for each unit of ``batch_size`` (one 128 px image)
_PIXELS_PER_BATCH_ITEM = 128 * 128


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """``rows x cols`` tiles of ``height x width`` px; one tile (the whole image) when not tiled."""

    rows: int
    cols: int
    height: int
    width: int

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def tiled(self) -> bool:
        return self.count > 1


def check_tile_size(max_side) -> int:
    """``max_side`` as an int: 0 (never tile) or a positive multiple of 64."""
    if max_side is None:
        return 0
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 0 or \
            max_side % ALIGN:
        raise ConfigError(f"tile_size must be 0 or None (never tile) or a positive multiple of {ALIGN}, "
                          f"got {max_side!r}")
    return int(max_side)


def tile_grid(height: int, width: int, max_side: int) -> TileGrid:
    """The grid of an ``height x width`` image for tiles of at most ``max_side`` px (0: one tile)."""
    if not max_side or (height <= max_side and width <= max_side):
        return TileGrid(1, 1, height, width)
    rows, cols = math.ceil(height / max_side), math.ceil(width / max_side)
    return TileGrid(rows, cols, ALIGN * math.ceil(height / rows / ALIGN), ALIGN * math.ceil(width / cols / ALIGN))


def split(images: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Images (N, H, W, C) -> tiles (N * rows * cols, h, w, C), row by row within each image."""
    if not grid.tiled:
        return images
    n, h, w, c = images.shape
    padded = np.pad(images, ((0, 0), (0, grid.rows * grid.height - h), (0, grid.cols * grid.width - w), (0, 0)),
                    mode="edge")
    return (padded.reshape(n, grid.rows, grid.height, grid.cols, grid.width, c)
            .transpose(0, 1, 3, 2, 4, 5).reshape(-1, grid.height, grid.width, c))


def join(tiles: np.ndarray, grid: TileGrid, height: int, width: int) -> np.ndarray:
    """Tiles from :func:`split` (or decoded ones) -> images (N, height, width, C), the padding cropped."""
    if not grid.tiled:
        return tiles[:, :height, :width]
    c = tiles.shape[-1]
    n = len(tiles) // grid.count
    whole = (tiles.reshape(n, grid.rows, grid.cols, grid.height, grid.width, c)
             .transpose(0, 1, 3, 2, 4, 5).reshape(n, grid.rows * grid.height, grid.cols * grid.width, c))
    return whole[:, :height, :width]


def per_call(grid: TileGrid, batch_size: int) -> int:
    """Tiles (or whole images) per network call: ``batch_size`` counts 128 px images, so bigger ones go
    fewer at a time and memory stays bounded."""
    return max(1, int(batch_size) * _PIXELS_PER_BATCH_ITEM // (grid.height * grid.width))
