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


#: a ratio up to this factor past a codec's finest or coarsest level gets that level; further is refused
RATIO_SLACK = 1.25


def offered_qualities(metadata: dict) -> list[dict]:
    """The levels a codec preset offers, from its metadata (``metrics.qualities``), as rows sorted by
    ``quality``: each with its measured ``bpp``, ``psnr`` (and ``ms_ssim``, ``jpeg2000_psnr`` where the
    benchmark recorded them). A codec that ships offers only the levels where it is at or above JPEG 2000
    at the same bits (``tools/record_codec_qualities.py``, image by image where the benchmark compared
    them so); its other levels still decode, but are not recommended."""
    measured = (metadata.get("metrics") or {}).get("qualities") or {}
    return [{"quality": int(q), **row} for q, row in sorted(measured.items(), key=lambda kv: int(kv[0]))]


def quality_for_ratio(metadata: dict, ratio: float, stored_bits: int = 8) -> dict:
    """The offered level whose compression ratio of the stored bits (``stored_bits / bpp``) is nearest
    ``ratio`` (on a log scale), as its row with ``ratio`` added.

    Radiology states lossy compression as a ratio of the stored bits (10:1 and 30:1 for CR/DX chest
    images, 8:1 and 15:1 for CT). The measured bpp are means over the codec's test split: the ratio
    an image gets depends on its content, and ``medzoo compress`` prints the one it got.

    Raises:
        ConfigError: the codec has no measured levels, ``ratio`` is not above 1, or it lies more than
            :data:`RATIO_SLACK` past the finest level (more quality than the codec gives: code
            losslessly) or past the coarsest.
    """
    import math

    from medzoo.errors import ConfigError

    name = metadata.get("name", "this model")
    rows = [r for r in offered_qualities(metadata) if float(r.get("bpp", 0)) > 0]
    if not rows:
        raise ConfigError(f"{name} has no measured quality levels, so no level can be picked by ratio: give "
                          "--quality, or a codec preset whose metadata lists its levels (metrics.qualities)")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 1):
        raise ConfigError(f"a compression ratio is a number above 1 (30 means 30:1), got {ratio!r}")
    for row in rows:
        row["ratio"] = stored_bits / float(row["bpp"])
    finest, coarsest = min(rows, key=lambda r: r["ratio"]), max(rows, key=lambda r: r["ratio"])

    def described(row):
        return f"{row['ratio']:.3g}:1 ({row['bpp']:.3g} bpp, {row['psnr']:.2f} dB on its test split)"

    span = f"its levels span {finest['ratio']:.3g}:1 to {coarsest['ratio']:.3g}:1 of {stored_bits} stored bits"
    if ratio < finest["ratio"] / RATIO_SLACK:
        raise ConfigError(f"{ratio:g}:1 asks for more quality than {name}'s finest level, {described(finest)}: "
                          f"{span}; to keep every stored pixel, compress losslessly (name no model, or "
                          "--lossless)")
    if ratio > coarsest["ratio"] * RATIO_SLACK:
        raise ConfigError(f"{ratio:g}:1 is past {name}'s coarsest level, {described(coarsest)}: {span}")
    return min(rows, key=lambda r: abs(math.log(r["ratio"] / ratio)))
