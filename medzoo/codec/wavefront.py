"""The causal decoder's inner steps, compiled (numba): prediction and context of one wavefront at a time.

The lossless decoder (:mod:`medzoo.codec.lossless`) must walk the image in order, each pixel
predicted from neighbours it has just decoded, so it runs one wavefront after another: thousands
of steps on a radiograph. In numpy each step is dozens of small array operations, and their
overhead, not the arithmetic, set the speed (about 0.4 MP/s on RG1). Here each step is one
compiled loop over the wavefront's pixels; only the range decoder (``constriction``) stays in Python,
between steps.

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


def _cacheable() -> bool:
    """Whether numba finds a writable place for its cache (else ``cache=True`` fails at decoration)."""
    def probe():
        return 0

    try:
        numba.njit(cache=True)(probe)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return False
    return True


_jit = numba.njit(cache=_cacheable(), nogil=True)


@_jit
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


@_jit
def _median_edge(west, north, north_west):
    high, low = max(west, north), min(west, north)
    if north_west >= high:
        return low
    if north_west <= low:
        return high
    return west + north - north_west


@_jit
def _gradients(signal, p, a, sources):
    """``|W - NW| + |N - NW| + |N - NE|`` at pixel ``a`` of plane ``p``: the part of the activity that the
    context variable also reads."""
    wv, nv, nw, ne = signal[p, sources[0, a]], signal[p, sources[1, a]], signal[p, sources[2, a]], \
        signal[p, sources[3, a]]
    return abs(wv - nw) + abs(nv - nw) + abs(nv - ne)


@_jit
def _activity(signal, p, a, sources):
    """:func:`~medzoo.codec.prediction.activity` at pixel ``a`` of plane ``p``: the gradients plus
    ``|W - WW| + |N - NN|``."""
    return (_gradients(signal, p, a, sources) + abs(signal[p, sources[0, a]] - signal[p, sources[4, a]])
            + abs(signal[p, sources[1, a]] - signal[p, sources[5, a]]))


@_jit
def _linear_prediction(signal, p, a, sources, coefficients, activity_thresholds, low, high, coef_bits):
    """Payload version 2's prediction of pixel ``a`` of plane ``p``: ``W + round(features . coefficients)``
    of its class (:func:`~medzoo.codec.prediction.features`, :func:`~medzoo.codec.prediction.classes`),
    clamped to ``[low, high]``."""
    wv, nv, nw, ne = signal[p, sources[0, a]], signal[p, sources[1, a]], signal[p, sources[2, a]], \
        signal[p, sources[3, a]]
    ww, nn, nne = signal[p, sources[4, a]], signal[p, sources[5, a]], signal[p, sources[6, a]]
    activity = _activity(signal, p, a, sources)
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
        weighted += coefficients[cls, k] * (signal[p, sources[k + 1, a]] - wv)
    weighted += coefficients[cls, 8] * (_median_edge(wv, nv, nw) - wv)
    value = wv + ((weighted + (np.int64(1) << (coef_bits - 1))) >> coef_bits)
    return min(max(value, low), high)


@_jit
def _linear_energy(signal, errors, p, a, sources, error_sources):
    """Payload version 2's context variable at pixel ``a`` of plane ``p``: the errors at W, N, NW, NE and half
    the local activity."""
    return (abs(errors[p, error_sources[0, a]]) + abs(errors[p, error_sources[1, a]])
            + abs(errors[p, error_sources[2, a]]) + abs(errors[p, error_sources[3, a]])
            + _gradients(signal, p, a, sources) // 2)


@_jit
def _floor_edge(signal, p, a, sources, floor):
    """Payload version 3's test at pixel ``a`` of plane ``p``: ``(1, mean)`` where its nine neighbours mix
    ``floor`` with other values (the pixel lies on the edge of a region at the floor, a CT scanner's padding
    outside its field of view), ``mean`` that of the others rounded down; else ``(-1, 0)``."""
    total = np.int64(0)
    count = 0
    for k in range(9):
        v = signal[p, sources[k, a]]
        if v != floor:
            total += v
            count += 1
    if count == 0 or count == 9:
        return np.int64(-1), np.int64(0)
    return np.int64(1), total // count


@_jit
def linear_step(signal, errors, sources, error_sources, t, h, w, coefficients, activity_thresholds,
                context_thresholds, low, high, coef_bits, at, predicted, context):
    """Wavefront ``t = 2 r + c`` of payload version 2: fills ``at`` (its flat pixel indices, rows ascending),
    ``predicted`` and ``context`` (plane, then pixel: the stream's order) and returns its pixels per plane.

    ``signal`` and ``errors`` are (P, H*W + 1) with the zero last (:func:`~medzoo.codec.prediction.with_zero`);
    ``sources`` (9, H*W) and ``error_sources`` (4, H*W) are :func:`~medzoo.codec.prediction.neighbour_sources`.
    """
    return linear_floor_step(signal, errors, sources, error_sources, t, h, w, coefficients, activity_thresholds,
                             context_thresholds, np.zeros(0, dtype=np.int64), low, high, coef_bits, -1, at,
                             predicted, context)


@_jit
def linear_floor_step(signal, errors, sources, error_sources, t, h, w, coefficients, activity_thresholds,
                      context_thresholds, level_thresholds, low, high, coef_bits, edge_context, at, predicted,
                      context):
    """:func:`linear_step` of payload versions 3 and 4 (version 2's where ``edge_context`` is -1 and
    ``level_thresholds`` empty): a pixel on the edge of the floor ``low`` (:func:`_floor_edge`) is predicted
    by its neighbours off the floor and takes context ``edge_context``; :func:`place_floor` reads its error.
    With ``level_thresholds`` (version 4), a pixel's context is its energy's bin times their count plus one,
    plus the level of its prediction (how many of them are ``<=`` it)."""
    first = max(0, -(-(t - w + 1) // 2))
    n = min(h - 1, t // 2) - first + 1
    levels = level_thresholds.shape[0] + 1
    for i in range(n):
        r = first + i
        at[i] = r * w + (t - 2 * r)
    for p in range(signal.shape[0]):
        for i in range(n):
            a = at[i]
            if edge_context >= 0:
                edge, mean = _floor_edge(signal, p, a, sources, low)
                if edge > 0:
                    predicted[p * n + i] = mean
                    context[p * n + i] = edge_context
                    continue
            value = _linear_prediction(signal, p, a, sources, coefficients, activity_thresholds, low, high,
                                       coef_bits)
            predicted[p * n + i] = value
            energy = _count_at_most(context_thresholds, _linear_energy(signal, errors, p, a, sources, error_sources))
            context[p * n + i] = energy * levels + _count_at_most(level_thresholds, value)
    return n


@_jit
def floor_edges(signal, sources, floor, edge, means):
    """The encoder's side of :func:`_floor_edge`: every pixel's flag (1 on the floor's edge, else 0, into
    ``edge``) and mean of its neighbours off the floor (into ``means``; 0 off the edge)."""
    for p in range(means.shape[0]):
        for a in range(means.shape[1]):
            flag, mean = _floor_edge(signal, p, a, sources, floor)
            edge[p, a] = 1 if flag > 0 else 0
            means[p, a] = mean


@_jit
def linear_activities(signal, sources, out):
    """Every pixel's :func:`~medzoo.codec.prediction.activity` (the encoder sets the class thresholds at its
    quantiles)."""
    for p in range(out.shape[0]):
        for a in range(out.shape[1]):
            out[p, a] = _activity(signal, p, a, sources)


@_jit
def linear_predictions(signal, sources, coefficients, activity_thresholds, low, high, coef_bits, out):
    """The encoder's side of :func:`linear_step`: every pixel's prediction at once (the whole signal is known)."""
    for p in range(out.shape[0]):
        for a in range(out.shape[1]):
            out[p, a] = _linear_prediction(signal, p, a, sources, coefficients, activity_thresholds, low, high,
                                           coef_bits)


@_jit
def linear_energies(signal, errors, sources, error_sources, out):
    """The encoder's side of :func:`linear_step`: every pixel's context variable at once."""
    for p in range(out.shape[0]):
        for a in range(out.shape[1]):
            out[p, a] = _linear_energy(signal, errors, p, a, sources, error_sources)


@_jit
def median_edge_step(signal, errors, d, h, w, thresholds, at, predicted, context):
    """Anti-diagonal ``d = r + c`` of payload version 1: like :func:`linear_step`, on (P, (H+1)*(W+1)) planes
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


@_jit
def place(signal, errors, at, n, predicted, decoded):
    """Write a wavefront's decoded errors and pixels (``predicted + error``) back into (P, H*W + 1)."""
    for p in range(signal.shape[0]):
        for i in range(n):
            e = decoded[p * n + i]
            errors[p, at[i]] = e
            signal[p, at[i]] = predicted[p * n + i] + e


@_jit
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


@_jit
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


@_jit
def assemble_errors(ctx, counts, symbols, lows, escapes, halves, shifts, escape_offset, out):
    """A wavefront's errors in pixel order, from what the range decoder gave in stream order.

    The stream holds the pixels of each context in turn (``ctx`` ascending, then pixel order):
    ``symbols`` (a table index, ``2 half + 1`` announcing an escape), ``lows`` (the low ``shift``
    bits, 0 where a context has none) and ``escapes`` (the escaped values, in the same order,
    offset by ``escape_offset``). Each error is ``(high << shift) + low``.
    """
    contexts = counts.shape[0]
    slot = np.empty(contexts, dtype=np.int64)  # the next stream slot of each context
    total = 0
    for k in range(contexts):
        slot[k] = total
        total += counts[k]
    pixel_of = np.empty(total, dtype=np.int64)
    for i in range(ctx.shape[0]):
        k = ctx[i]
        pixel_of[slot[k]] = i
        slot[k] += 1
    escaped = 0
    for j in range(total):
        i = pixel_of[j]
        k = ctx[i]
        s = np.int64(symbols[j])
        if s == 2 * halves[k] + 1:
            high = np.int64(escapes[escaped]) - escape_offset
            escaped += 1
        else:
            high = s - halves[k]
        out[i] = (high << shifts[k]) + lows[j]
