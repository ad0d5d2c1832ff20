"""What each quality level of a codec gives: bits per pixel of real streams, PSNR and SSIM.

A codec is a hyperprior codec (a level per trade-off ``lambda``) or an any-size autoencoder
coding its rounded latent (a level per ``(factor, step)``, :mod:`medzoo.codec.latent`).

The figures a codec preset records (``medzoo.info(NAME)["codec"]["qualities"]``) and that
``benchmarks/rate_distortion.py`` measures: every image is coded in a stream of its own,
header and checksum included (as an archive stores it), and decoded back.
"""

from __future__ import annotations

import numpy as np

from medzoo.codec.latent import is_latent_coder, levels_of
from medzoo.codec.stream import compress, decompress
from medzoo.metrics import psnr, ssim
from medzoo.progress import progress


def coded_one_by_one(model, x: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs (N, H, W, C) in [0, 1] -> ``(stream bytes per image, reconstructions)`` at ``quality``."""
    sizes, reconstructions = np.zeros(len(x), dtype=np.int64), np.empty_like(x)
    for i in range(len(x)):
        data = compress(x[i:i + 1], model, quality=quality)
        sizes[i] = len(data)
        reconstructions[i] = decompress(data, model)[0]
    return sizes, reconstructions


def num_levels(model) -> int:
    """How many quality levels the codec has."""
    return len(levels_of(model)) if is_latent_coder(model) else int(model.num_qualities)


def level_fields(model, quality: int) -> dict:
    """What defines a level: ``{"lambda"}`` (hyperprior) or ``{"factor", "step"}`` (an autoencoder's latent)."""
    if is_latent_coder(model):
        factor, step = levels_of(model)[quality]
        return {"factor": factor, "step": step}
    return {"lambda": float(model.lambdas[quality])}


def quality_table(model, x: np.ndarray, *, enabled=None) -> list[dict]:
    """One row per quality level: ``quality``, what defines it (:func:`level_fields`), mean ``bpp`` of real
    streams, ``psnr`` and ``ssim``."""
    pixels = x.shape[1] * x.shape[2]
    rows = []
    for q in progress(range(num_levels(model)), "codec qualities", enabled=enabled):
        sizes, rec = coded_one_by_one(model, x, q)
        rows.append({"quality": q, **level_fields(model, q), "bpp": float(np.mean(8.0 * sizes / pixels)),
                     "psnr": float(psnr(x, rec).mean()), "ssim": float(ssim(x, rec).mean())})
    return rows
