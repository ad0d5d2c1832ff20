"""Jittered copies of images: small rotations, zooms, shifts and gamma changes, reproducible from a seed.

A generative model trained on few images draws them back; seeing each image also slightly
rotated, zoomed, shifted and brighter or darker (changes a scan undergoes between patients and
acquisitions) gives it more distinct anatomy to learn from. The copies are reproducible from
their seed, so a memorisation measure can compare samples with every image the model saw.
Pure numpy (bilinear resampling, edges held), images ``(N, H, W, C)`` in [0, 1].
"""

from __future__ import annotations

import zlib

import numpy as np

#: the ranges each copy draws from: rotation in degrees, zoom (>= 1: in, so corners stay inside), shift as a
#: share of the side, gamma (the exponent of the [0, 1] intensities)
JITTER_RANGES = {"rotation_deg": 8.0, "zoom": (1.0, 1.12), "shift": 0.03, "gamma": (0.8, 1.25)}


def name_seed(name: str, seed: int = 0) -> int:
    """A seed that depends on a name (a dataset's) and a base seed: the same copies in training and evaluation."""
    return (zlib.crc32(name.encode()) + 7919 * int(seed)) % (2 ** 32)


def jittered_copies(images: np.ndarray, copies: int, seed: int, *, flip: bool = False) -> np.ndarray:
    """``copies`` jittered versions of every image, ``(copies * N, H, W, C)``: copy k of image i at ``k * N + i``.

    ``flip``: each copy is also left-right mirrored with probability one half (for sets whose
    mirror images are plausible scans). The same ``(images, copies, seed, flip)`` give the same copies.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"jittered_copies expects images (N, H, W, C), got shape {images.shape}")
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    rng = np.random.default_rng(seed)
    n, h, w, _ = images.shape
    out = np.empty((copies * n, *images.shape[1:]), np.float32)
    r = JITTER_RANGES
    for k in range(copies):
        angle = np.deg2rad(rng.uniform(-r["rotation_deg"], r["rotation_deg"], n))
        zoom = rng.uniform(*r["zoom"], n)
        shift = rng.uniform(-r["shift"], r["shift"], (n, 2)) * np.array([h, w])
        gamma = np.exp(rng.uniform(np.log(r["gamma"][0]), np.log(r["gamma"][1]), n))
        mirror = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
        for i in range(n):
            image = images[i, :, ::-1] if mirror[i] else images[i]
            warped = _affine(image, angle[i], zoom[i], shift[i])
            out[k * n + i] = np.clip(warped, 0.0, 1.0) ** gamma[i]
    return out


def _affine(image: np.ndarray, angle: float, zoom: float, shift) -> np.ndarray:
    """``image`` rotated by ``angle`` (radians) and zoomed by ``zoom`` about its centre, then shifted (bilinear)."""
    h, w = image.shape[:2]
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    dy, dx = yy - cy - shift[0], xx - cx - shift[1]
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    sy = np.clip(cy + cos * dy - sin * dx, 0, h - 1)  # where each output pixel reads from
    sx = np.clip(cx + sin * dy + cos * dx, 0, w - 1)
    y0, x0 = np.minimum(sy.astype(np.int64), h - 2), np.minimum(sx.astype(np.int64), w - 2)
    fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
