"""The causal decoder's inner steps, compiled (numba): prediction and context of one wavefront at a time.

The lossless decoder (:mod:`medzoo.codec.lossless`) must walk the image in order, each pixel
predicted from neighbours it has just decoded, so it runs one wavefront after another: thousands
of steps on a radiograph. In numpy each step is dozens of small array operations, and their
overhead, not the arithmetic, set the speed (about 0.4 MP/s on RG1). Here each step is one
compiled loop over the wavefront's pixels; only the range decoder (``constriction``) stays in Python,
between steps.

The arithmetic is the numpy encoder's, operation for operation, in int64 (:mod:`medzoo.codec.prediction`:
features, activity, orientation, ``W + round(features . coefficients)`` clamped; the error energy
of :mod:`medzoo.codec.lossless`), so the two agree to the bit: every lossless round trip in the tests
checks it, the numpy encoder on one side and these loops on the other.
"""

from __future__ import annotations

import numba
import numpy as np

#: numba compiles on first use and keeps the machine code beside this module (``__pycache__``)
_jit = numba.njit(cache=True, nogil=True)


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
def linear_step(signal, errors, sources, error_sources, t, h, w, coefficients, activity_thresholds,
                context_thresholds, low, high, coef_bits, at, predicted, context):
    """Wavefront ``t = 2 r + c`` of payload version 2: fills ``at`` (its flat pixel indices, rows ascending),
    ``predicted`` and ``context`` (plane, then pixel: the stream's order) and returns its pixels per plane.

    ``signal`` and ``errors`` are (P, H*W + 1) with the zero last (:func:`~medzoo.codec.prediction.with_zero`);
    ``sources`` (9, H*W) and ``error_sources`` (4, H*W) are :func:`~medzoo.codec.prediction.neighbour_sources`.
    """
    first = max(0, -(-(t - w + 1) // 2))
    last = min(h - 1, t // 2)
    n = last - first + 1
    planes = signal.shape[0]
    half = np.int64(1) << (coef_bits - 1)
    orientations = 3
    for i in range(n):
        r = first + i
        at[i] = r * w + (t - 2 * r)
    near = np.empty(9, dtype=np.int64)
    for p in range(planes):
        for i in range(n):
            a = at[i]
            for k in range(9):
                near[k] = signal[p, sources[k, a]]
            wv, nv, nw, ne, ww, nn, nne = near[0], near[1], near[2], near[3], near[4], near[5], near[6]
            activity = abs(wv - nw) + abs(nv - nw) + abs(nv - ne) + abs(wv - ww) + abs(nv - nn)
            across_rows = abs(wv - ww) + abs(nv - nw) + abs(ne - nv)
            across_cols = abs(wv - nw) + abs(nv - nn) + abs(ne - nne)
            if 2 * across_rows < across_cols:
                orientation = 0
            elif 2 * across_cols < across_rows:
                orientation = 1
            else:
                orientation = 2
            cls = _count_at_most(activity_thresholds, activity) * orientations + orientation
            weighted = np.int64(0)
            for k in range(8):
                weighted += coefficients[cls, k] * (near[k + 1] - wv)
            weighted += coefficients[cls, 8] * (_median_edge(wv, nv, nw) - wv)
            value = wv + ((weighted + half) >> coef_bits)
            predicted[p * n + i] = min(max(value, low), high)
            energy = (abs(errors[p, error_sources[0, a]]) + abs(errors[p, error_sources[1, a]])
                      + abs(errors[p, error_sources[2, a]]) + abs(errors[p, error_sources[3, a]])
                      + (abs(wv - nw) + abs(nv - nw) + abs(nv - ne)) // 2)
            context[p * n + i] = _count_at_most(context_thresholds, energy)
    return n


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
