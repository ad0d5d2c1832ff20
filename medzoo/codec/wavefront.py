"""The causal decoder's inner steps, compiled (numba): prediction and context of one wavefront at a time.

The lossless decoder (:mod:`medzoo.codec.lossless`) must walk the image in order, each pixel
predicted from neighbours it has just decoded, so it runs one wavefront after another: thousands
of steps on a radiograph. In numpy each step is dozens of small array operations, and their
overhead, not the arithmetic, set the speed (about 0.4 MP/s on RG1). Here each step is one
compiled loop over the wavefront's pixels, and the range decoder between steps is compiled too
(:mod:`medzoo.codec.ans`).

The encoder runs the same per-pixel functions over the whole signal at once (:func:`linear_predictions`,
:func:`linear_energies`), so both sides compute the same int64 numbers by construction; the
numpy definitions they follow (:mod:`medzoo.codec.prediction`: features, activity, orientation)
still classify the pixels the encoder fits on. ``tests/test_codec_wavefront.py`` holds the compiled
loops to them, and ``tests/test_codec_hyperprior.py`` to payloads pinned before they existed.

numba compiles these on first use (a few seconds) and keeps the machine code in
``__pycache__`` beside this module, or in ``$NUMBA_CACHE_DIR`` / ``~/.cache/numba`` where that is
read-only; where no directory is writable it compiles them in each process instead.
"""

from __future__ import annotations

import numba
import numpy as np

from medzoo.codec.prediction import FALLBACK, OFFSETS


def _cacheable() -> bool:
    """Whether numba finds a writable place for its cache (else ``cache=True`` fails at decoration)."""
    def probe():
        return 0

    try:
        numba.njit(cache=True)(probe)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return False
    return True


#: the decorator of medzoo's compiled loops (here and in :mod:`medzoo.codec.ans`)
jit = numba.njit(cache=_cacheable(), nogil=True)


@jit
def _count_at_most(thresholds, value):
    """``np.searchsorted(thresholds, value, side="right")``: how many thresholds are ``<= value``."""
    lo, hi = 0, thresholds.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if thresholds[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@jit
def _median_edge(west, north, north_west):
    high, low = max(west, north), min(west, north)
    if north_west >= high:
        return low
    if north_west <= low:
        return high
    return west + north - north_west


#: the nine neighbours' rows up and columns left (:data:`~medzoo.codec.prediction.OFFSETS`), and the one that
#: stands in for each outside the image (:data:`~medzoo.codec.prediction.FALLBACK`; W's, -1, is special)
_ROWS_UP = np.array([dr for dr, _ in OFFSETS], dtype=np.int64)
_COLUMNS_LEFT = np.array([dc for _, dc in OFFSETS], dtype=np.int64)
_FALLBACK = np.array([-1 if k is None else k for k in FALLBACK], dtype=np.int64)


@jit
def _neighbours(r, c, h, w, fallback, src):
    """The flat indices of pixel ``(r, c)``'s first ``len(src)`` neighbours into ``src``: column ``r * w + c`` of
    :func:`~medzoo.codec.prediction.neighbour_sources` for an H x W image, computed rather than read from
    that table (nine scattered reads a pixel in the decoder's wavefronts, and 36 bytes a pixel to build)."""
    a = r * w + c
    if r >= 2 and 2 <= c < w - 1:  # inside: every neighbour is in the image
        for k in range(src.shape[0]):
            src[k] = a - (_ROWS_UP[k] * w + _COLUMNS_LEFT[k])
        return
    for k in range(src.shape[0]):
        up, left = r - _ROWS_UP[k], c - _COLUMNS_LEFT[k]
        if up >= 0 and 0 <= left < w:
            src[k] = up * w + left
        elif not fallback:
            src[k] = h * w  # the zero after the plane
        elif k == 0:  # W: N in the first column, the zero at the very first pixel
            src[k] = a - w if r >= 1 else h * w
        else:
            src[k] = src[_FALLBACK[k]]


@jit
def neighbour_indices(pixels, h, w, fallback, out):
    """:func:`~medzoo.codec.prediction.neighbour_sources` ``[:len(out), pixels]`` (flat pixel indices), without
    the whole table: the encoder's fit reads the neighbours of a strided sample of pixels."""
    src = np.empty(out.shape[0], dtype=np.int64)
    for i in range(pixels.shape[0]):
        _neighbours(pixels[i] // w, pixels[i] % w, h, w, fallback, src)
        out[:, i] = src


@jit
def _gradients(signal, p, src):
    """``|W - NW| + |N - NW| + |N - NE|`` at the pixel whose neighbours are ``src`` (plane ``p``): the part of
    the activity that the context variable also reads."""
    wv, nv, nw, ne = signal[p, src[0]], signal[p, src[1]], signal[p, src[2]], signal[p, src[3]]
    return abs(wv - nw) + abs(nv - nw) + abs(nv - ne)


@jit
def _activity(signal, p, src):
    """:func:`~medzoo.codec.prediction.activity` at the pixel whose neighbours are ``src``: the gradients plus
    ``|W - WW| + |N - NN|``."""
    return (_gradients(signal, p, src) + abs(signal[p, src[0]] - signal[p, src[4]])
            + abs(signal[p, src[1]] - signal[p, src[5]]))


@jit
def _linear_prediction(signal, p, src, coefficients, activity_thresholds, low, high, coef_bits):
    """Payload version 2's prediction of the pixel whose neighbours are ``src`` (plane ``p``):
    ``W + round(features . coefficients)`` of its class (:func:`~medzoo.codec.prediction.features`,
    :func:`~medzoo.codec.prediction.classes`), clamped to ``[low, high]``."""
    wv, nv, nw, ne = signal[p, src[0]], signal[p, src[1]], signal[p, src[2]], signal[p, src[3]]
    ww, nn, nne = signal[p, src[4]], signal[p, src[5]], signal[p, src[6]]
    activity = _activity(signal, p, src)
    across_rows = abs(wv - ww) + abs(nv - nw) + abs(ne - nv)
    across_cols = abs(wv - nw) + abs(nv - nn) + abs(ne - nne)
    if 2 * across_rows < across_cols:
        orientation = 0
    elif 2 * across_cols < across_rows:
        orientation = 1
    else:
        orientation = 2
    cls = _count_at_most(activity_thresholds, activity) * 3 + orientation
    weighted = np.int64(0)
    for k in range(8):
        weighted += coefficients[cls, k] * (signal[p, src[k + 1]] - wv)
    weighted += coefficients[cls, 8] * (_median_edge(wv, nv, nw) - wv)
    value = wv + ((weighted + (np.int64(1) << (coef_bits - 1))) >> coef_bits)
    return min(max(value, low), high)


@jit
def _linear_energy(signal, errors, p, src, error_src):
    """Payload version 2's context variable at the pixel whose neighbours are ``src`` (``error_src``: its
    W, N, NW and NE, the zero outside the image): the errors there and half the local activity."""
    return (abs(errors[p, error_src[0]]) + abs(errors[p, error_src[1]]) + abs(errors[p, error_src[2]])
            + abs(errors[p, error_src[3]]) + _gradients(signal, p, src) // 2)


@jit
def _floor_edge(signal, p, src, floor):
    """Payload version 3's test at the pixel whose neighbours are ``src`` (plane ``p``): ``(1, mean)`` where its
    nine neighbours mix ``floor`` with other values (the pixel lies on the edge of a region at the floor, a CT
    scanner's padding outside its field of view), ``mean`` that of the others rounded down; else ``(-1, 0)``."""
    total = np.int64(0)
    count = 0
    for k in range(9):
        v = signal[p, src[k]]
        if v != floor:
            total += v
            count += 1
    if count == 0 or count == 9:
        return np.int64(-1), np.int64(0)
    return np.int64(1), total // count


@jit
def linear_floor_step(signal, errors, t, h, w, coefficients, activity_thresholds, context_thresholds,
                      level_thresholds, low, high, coef_bits, edge_context, at, predicted, context):
    """Wavefront ``t = 2 r + c`` of payload versions 2-4: fills ``at`` (its flat pixel indices, rows ascending),
    ``predicted`` and ``context`` (plane, then pixel: the stream's order) and returns its pixels per plane.

    ``signal`` and ``errors`` are (P, H*W + 1) with the zero last (:func:`~medzoo.codec.prediction.with_zero`);
    a pixel's neighbours are those of :func:`~medzoo.codec.prediction.neighbour_sources` (:func:`_neighbours`).
    Version 2: ``edge_context`` -1 and ``level_thresholds`` empty. Version 3: a pixel on the edge of the floor
    ``low`` (:func:`_floor_edge`) is predicted by its neighbours off the floor and takes context
    ``edge_context``; :func:`place_floor` reads its error. Version 4 (``level_thresholds``): a pixel's context
    is its energy's bin times their count plus one, plus the level of its prediction (how many of them are
    ``<=`` it)."""
    first = max(0, -(-(t - w + 1) // 2))
    n = min(h - 1, t // 2) - first + 1
    levels = level_thresholds.shape[0] + 1
    for i in range(n):
        r = first + i
        at[i] = r * w + (t - 2 * r)
    src = np.empty(9, dtype=np.int64)
    error_src = np.empty(4, dtype=np.int64)
    for i in range(n):
        r = first + i
        a = at[i]
        _neighbours(r, t - 2 * r, h, w, True, src)
        _neighbours(r, t - 2 * r, h, w, False, error_src)
        for p in range(signal.shape[0]):
            j = p * n + i
            if edge_context >= 0:
                edge, mean = _floor_edge(signal, p, src, low)
                if edge > 0:
                    predicted[j] = mean
                    context[j] = edge_context
                    continue
            value = _linear_prediction(signal, p, src, coefficients, activity_thresholds, low, high, coef_bits)
            predicted[j] = value
            energy = _count_at_most(context_thresholds, _linear_energy(signal, errors, p, src, error_src))
            context[j] = energy * levels + _count_at_most(level_thresholds, value)
    return n


@jit
def floor_edges(signal, h, w, floor, edge, means):
    """The encoder's side of :func:`_floor_edge`: every pixel's flag (1 on the floor's edge, else 0, into
    ``edge``) and mean of its neighbours off the floor (into ``means``; 0 off the edge)."""
    src = np.empty(9, dtype=np.int64)
    for p in range(means.shape[0]):
        for a in range(means.shape[1]):
            r, c = a // w, a - (a // w) * w
            _neighbours(r, c, h, w, True, src)
            flag, mean = _floor_edge(signal, p, src, floor)
            edge[p, a] = 1 if flag > 0 else 0
            means[p, a] = mean


@jit
def linear_activities(signal, h, w, out):
    """Every pixel's :func:`~medzoo.codec.prediction.activity` (the encoder sets the class thresholds at its
    quantiles)."""
    src = np.empty(9, dtype=np.int64)
    for p in range(out.shape[0]):
        for a in range(out.shape[1]):
            r, c = a // w, a - (a // w) * w
            _neighbours(r, c, h, w, True, src)
            out[p, a] = _activity(signal, p, src)


@jit
def linear_predictions(signal, h, w, coefficients, activity_thresholds, low, high, coef_bits, out):
    """The encoder's side of :func:`linear_floor_step`: every pixel's prediction at once (the whole signal is known)."""
    src = np.empty(9, dtype=np.int64)
    for p in range(out.shape[0]):
        for a in range(out.shape[1]):
            r, c = a // w, a - (a // w) * w
            _neighbours(r, c, h, w, True, src)
            out[p, a] = _linear_prediction(signal, p, src, coefficients, activity_thresholds, low, high, coef_bits)


@jit
def linear_energies(signal, errors, h, w, out):
    """The encoder's side of :func:`linear_floor_step`: every pixel's context variable at once."""
    src = np.empty(9, dtype=np.int64)
    error_src = np.empty(4, dtype=np.int64)
    for p in range(out.shape[0]):
        for a in range(out.shape[1]):
            r, c = a // w, a - (a // w) * w
            _neighbours(r, c, h, w, True, src)
            _neighbours(a // w, a % w, h, w, False, error_src)
            out[p, a] = _linear_energy(signal, errors, p, src, error_src)


@jit
def median_edge_step(signal, errors, d, h, w, thresholds, at, predicted, context):
    """Anti-diagonal ``d = r + c`` of payload version 1: like :func:`linear_floor_step`, on (P, (H+1)*(W+1)) planes
    with a zero row above and a zero column left (``at`` indexes them); the predictor is the median edge
    detector and the context :func:`~medzoo.codec.lossless.energy`."""
    first = max(0, d - w + 1)
    n = min(d, h - 1) - first + 1
    stride = w + 1
    for i in range(n):
        r = first + i
        at[i] = (r + 1) * stride + (d - r) + 1
    for p in range(signal.shape[0]):
        for i in range(n):
            a = at[i]
            left, up, upleft = signal[p, a - 1], signal[p, a - stride], signal[p, a - stride - 1]
            predicted[p * n + i] = _median_edge(left, up, upleft)
            energy = (abs(left - upleft) + abs(up - upleft) + 2 * (abs(errors[p, a - 1]) + abs(errors[p, a - stride]))
                      + abs(errors[p, a - stride - 1]))
            context[p * n + i] = _count_at_most(thresholds, energy)
    return n


@jit
def place(signal, errors, at, n, predicted, decoded):
    """Write a wavefront's decoded errors and pixels (``predicted + error``) back into (P, H*W + 1)."""
    for p in range(signal.shape[0]):
        for i in range(n):
            e = decoded[p * n + i]
            errors[p, at[i]] = e
            signal[p, at[i]] = predicted[p * n + i] + e


@jit
def place_floor(signal, errors, at, n, predicted, decoded, context, edge_context, floor):
    """:func:`place` for payload version 3: in ``edge_context`` the symbol 0 is the floor itself and any
    other error ``e`` was coded as ``e + 1`` if it is >= 0 (:func:`~medzoo.codec.lossless.floor_symbols`);
    a pixel at the floor leaves an error of 0 for its neighbours' contexts."""
    for p in range(signal.shape[0]):
        for i in range(n):
            e = decoded[p * n + i]
            if context[p * n + i] == edge_context:
                if e == 0:
                    errors[p, at[i]] = 0
                    signal[p, at[i]] = floor
                    continue
                if e > 0:
                    e -= 1
            errors[p, at[i]] = e
            signal[p, at[i]] = predicted[p * n + i] + e


@jit
def coding_order(context, contexts, row_weight, order):
    """The encoder's side of the stream order: a stable counting sort of the pixels of (P, H, W) by their group
    ``(row_weight * r + c) * contexts + context`` into ``order`` (flat indices); returns every group's size."""
    planes, h, w = context.shape
    sizes = np.zeros(max(0, (row_weight * (h - 1) + w) * contexts), dtype=np.int64)
    for p in range(planes):
        for r in range(h):
            for c in range(w):
                sizes[(row_weight * r + c) * contexts + context[p, r, c]] += 1
    slot = np.empty_like(sizes)
    total = 0
    for g in range(sizes.shape[0]):
        slot[g] = total
        total += sizes[g]
    i = 0
    for p in range(planes):
        for r in range(h):
            for c in range(w):
                g = (row_weight * r + c) * contexts + context[p, r, c]
                order[slot[g]] = i
                slot[g] += 1
                i += 1
    return sizes
