"""Classified linear prediction: each pixel predicted from nine causal neighbours with coefficients per class.

The lossless coder's predictor since payload version 2 (:mod:`medzoo.codec.lossless`). The
median edge detector of JPEG-LS sees three neighbours and has no parameters; medical images
reward more: CT noise is correlated over several pixels and a radiograph's anatomy is smooth
along directions. Here every pixel ``(r, c)`` is predicted from W, N, NW, NE, WW, NN, NNE, NWW
and NNW (and the median edge detector's value, a non-linear feature) with integer coefficients
that the encoder fits by least squares, per *class* of pixels, and sends.

Classes: the local activity ``|W - NW| + |N - NW| + |N - NE| + |W - WW| + |N - NN|`` in
:func:`activity_bins` bins (thresholds at its quantiles, sent) times three orientations
(smooth along rows, along columns, neither): flat regions, edges and texture each get their
own predictor. Coefficients have :data:`COEF_BITS` fractional bits; the arithmetic is int64,
so encoder and decoder agree to the bit on any machine. This module defines the numbers
(neighbour tables, features, classes, the fit); the prediction of every pixel runs as a
compiled loop in :mod:`medzoo.codec.wavefront`, on both sides.

Order: the NE neighbour lies on the anti-diagonal of its pixel, so the decoder walks
*wavefronts* ``t = 2 r + c`` instead (every neighbour above lies on an earlier one, W on
``t - 1``): ``2 H + W - 2`` steps, each a compiled loop over its pixels (of every plane;
:mod:`medzoo.codec.wavefront`).

Borders: a neighbour outside the image is replaced by one inside, always one already decoded
(:func:`neighbour_sources`), so the first row and column are predicted from the pixels before them.
"""

from __future__ import annotations

import functools

import numpy as np

#: (rows up, columns left) of the nine neighbours, in feature order: W N NW NE WW NN NNE NWW NNW
OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (2, -1), (1, 2), (2, 1))
#: the neighbour that stands in for each one outside the image (an index into OFFSETS; W's is special)
FALLBACK = (None, 0, 1, 1, 0, 1, 3, 2, 2)
#: fractional bits of the coefficients (int16 in the stream: each within [-8, 8))
COEF_BITS = 12
#: features: the eight neighbours other than W and the median edge detector's value, each minus W
FEATURES = len(OFFSETS)
#: orientations per activity bin
ORIENTATIONS = 3
#: activity bins by pixels per signal: (up to this many pixels, bins)
ACTIVITY_BINS = ((1 << 14, 2), (1 << 16, 4), (1 << 18, 8), (None, 16))
#: a class fitted on fewer pixels keeps :func:`default_coefficients` (a fit on a handful would not pay its bytes)
MIN_CLASS_PIXELS = 64
#: the encoder fits the coefficients on at most this many pixels (evenly strided)
FIT_PIXELS = 1 << 18


def activity_bins(pixels: int) -> int:
    return next(bins for limit, bins in ACTIVITY_BINS if limit is None or pixels <= limit)


@functools.lru_cache(maxsize=2)
def neighbour_sources(h: int, w: int, fallback: bool = True) -> np.ndarray:
    """Where each pixel's nine neighbours are read: flat indices (9, H*W) into a plane of H*W values followed by
    a zero (index ``H*W``).

    A neighbour inside the image is itself; one outside is its :data:`FALLBACK` (W: N, or the
    zero at the first pixel), so only pixels above, or left in the same row, are ever read and
    the decoder, which has decoded only those, computes the same numbers. Without ``fallback``
    a neighbour outside reads the zero (prediction errors). The table depends on the shape
    alone. It is the definition, in numpy: the coder's compiled loops compute each pixel's column of
    it instead (:func:`medzoo.codec.wavefront.neighbour_indices`; a radiograph's table is hundreds of MB),
    and ``tests/test_codec_wavefront.py`` holds them to it. The last tables are kept (read-only).
    """
    dtype = np.int32 if h * w < 2 ** 31 - 1 else np.int64
    at = np.arange(h * w, dtype=dtype)
    zero = h * w
    found = np.empty((len(OFFSETS), h * w), dtype=dtype)
    for k, (dr, dc) in enumerate(OFFSETS):
        index = found[k]
        np.subtract(at, dr * w + dc, out=index)  # right inside the image; the border is fixed below
        border = _border(h, w, dr, dc)
        if not fallback:
            index[border] = zero
        elif k == 0:  # W: N in the first column, the zero at the very first pixel
            index[border] = np.where(border >= w, border - w, zero)
        else:
            index[border] = found[FALLBACK[k]][border]
    found.flags.writeable = False
    return found


def _border(h: int, w: int, dr: int, dc: int) -> np.ndarray:
    """Flat indices of the pixels whose neighbour ``dr`` rows up and ``dc`` columns left lies outside an
    H x W image: the first ``dr`` rows, and the first ``dc`` (or last ``-dc``) columns of the others. Built
    from the border alone (a few rows and columns), not by testing every pixel."""
    top = min(dr, h)
    columns = np.arange(dc) if dc > 0 else np.arange(w + dc, w)
    columns = columns[(columns >= 0) & (columns < w)]
    side = (np.arange(top, h, dtype=np.int64)[:, None] * w + columns[None, :]).ravel()
    return np.concatenate([np.arange(top * w, dtype=np.int64), side])


def with_zero(flat: np.ndarray) -> np.ndarray:
    """Planes (P, H*W) followed by a zero column: what :func:`neighbour_sources` indexes."""
    return np.concatenate([flat, np.zeros((flat.shape[0], 1), dtype=flat.dtype)], axis=1)


def median_edge(west, north, north_west):
    """JPEG-LS's median edge detector: min or max of W and N at an edge, else the plane W + N - NW."""
    high, low = np.maximum(west, north), np.minimum(west, north)
    return np.where(north_west >= high, low, np.where(north_west <= low, high, west + north - north_west))


def features(near: list[np.ndarray]) -> list[np.ndarray]:
    """FEATURES arrays (P, n), int64: N NW NE WW NN NNE NWW NNW and the median edge detector's value, each minus W."""
    west = near[0]
    return [v - west for v in near[1:]] + [median_edge(west, near[1], near[2]) - west]


def activity(near: list[np.ndarray]) -> np.ndarray:
    w, n, nw, ne, ww, nn = near[:6]
    return np.abs(w - nw) + np.abs(n - nw) + np.abs(n - ne) + np.abs(w - ww) + np.abs(n - nn)


def orientation(near: list[np.ndarray]) -> np.ndarray:
    """0: smooth along rows (the horizontal differences are small), 1: along columns, 2: neither."""
    w, n, nw, ne, ww, nn, nne = near[:7]
    across_rows = np.abs(w - ww) + np.abs(n - nw) + np.abs(ne - n)
    across_cols = np.abs(w - nw) + np.abs(n - nn) + np.abs(ne - nne)
    return np.where(2 * across_rows < across_cols, 0, np.where(2 * across_cols < across_rows, 1, 2))


def classes(near: list[np.ndarray], thresholds: np.ndarray) -> np.ndarray:
    """The predictor class of each pixel: activity bin (``thresholds``) times orientation."""
    return np.searchsorted(thresholds, activity(near), side="right") * ORIENTATIONS + orientation(near)


def default_coefficients() -> np.ndarray:
    """The median edge detector's own prediction (its feature weighted 1): for classes too small to fit."""
    q = np.zeros(FEATURES, dtype=np.int64)
    q[-1] = 1 << COEF_BITS
    return q


def fit_coefficients(feats: list[np.ndarray], targets: np.ndarray, cls: np.ndarray, num_classes: int,
                     max_pixels: int = FIT_PIXELS) -> np.ndarray:
    """Least-squares coefficients per class (the encoder's choice), quantised: int64 (num_classes, FEATURES).

    ``feats`` (:func:`features`) and ``targets`` (``pixel - W``) of every pixel, ``cls`` their classes;
    at most ``max_pixels`` of them, evenly strided, enter the fit (more would not change it). Each
    class's normal equations are lightly regularised towards the median edge detector, so a
    degenerate class still solves; classes of fewer than MIN_CLASS_PIXELS keep it.
    """
    step = max(1, -(-cls.size // max_pixels))
    cls = cls.ravel()[::step]
    order = np.argsort(cls, kind="stable")
    design = np.empty((FEATURES, cls.size))  # float64, one row per feature: contiguous per class
    for k, f in enumerate(feats):
        design[k] = f.ravel()[::step][order]
    y = targets.ravel()[::step][order].astype(np.float64)
    bounds = np.searchsorted(cls[order], np.arange(num_classes + 1))
    default = default_coefficients()
    out = np.tile(default, (num_classes, 1))
    prior = default.astype(np.float64) / (1 << COEF_BITS)
    for k in range(num_classes):
        a, b = bounds[k], bounds[k + 1]
        if b - a < MIN_CLASS_PIXELS:
            continue
        part = design[:, a:b]
        gram = part @ part.T
        ridge = 1e-6 * max(np.trace(gram), 1.0) / FEATURES
        solution = np.linalg.solve(gram + ridge * np.eye(FEATURES), part @ y[a:b] + ridge * prior)
        out[k] = np.clip(np.round(solution * (1 << COEF_BITS)), -(1 << 15), (1 << 15) - 1)
    return out
