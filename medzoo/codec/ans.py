"""The lossless coder's range coder, compiled (numba), word for word the streams ``constriction`` writes.

The causal coder (:mod:`medzoo.codec.lossless`) codes millions of residuals in thousands of small
groups (one per wavefront and context). Through ``constriction``'s Python API each group is a call
(348,000 on RG1), and their overhead, not the coding, took a third of the encoder's and half of the
decoder's time. Here the whole stream is one compiled loop on the encoder's side and one call per
wavefront on the decoder's.

The streams are those of ``constriction.stream.stack.AnsCoder`` (asymmetric numeral systems: a
64-bit state, 32-bit words, probabilities of 24 bits) with ``Categorical(p, perfect=False)`` and
``Uniform(2^k)`` models, to the bit, so every stream written before decodes as it did and
``tests/test_codec_ans.py`` checks both coders against each other:

* a categorical model's cumulative table is ``floor(P_i (2^24 - n) / sum p) + i`` for symbol ``i`` of
  ``n``, where ``P_i`` is the sum of the probabilities before it, added left to right in float64
  (every symbol keeps at least 1/2^24);
* a uniform model over ``2^k`` values gives each ``2^(24 - k)``;
* the encoder pushes words onto a stack (the stream's start) and ends with the state's nonzero
  32-bit words, low then high; the decoder pops from the end.
"""

from __future__ import annotations

import numpy as np

from medzoo.codec.wavefront import jit
from medzoo.errors import DataError

#: probabilities are integers out of 2^PRECISION
PRECISION = 24


def quantised_cdf(probabilities: np.ndarray) -> np.ndarray:
    """A categorical model's cumulative table (int64, ``n + 1`` entries from 0 to 2^24), as ``constriction``'s
    ``Categorical(probabilities, perfect=False)`` quantises it."""
    p = np.asarray(probabilities, dtype=np.float64)
    n = p.shape[0]
    if not 2 <= n < (1 << PRECISION) - 1:
        raise DataError(f"a categorical model needs 2 to 2^24 - 2 symbols, not {n}")
    total = float(np.cumsum(p)[-1])  # constriction's sequential sum; it refuses a table unless this is normal
    if not (np.isfinite(p).all() and (p >= 0).all() and np.isfinite(total) and total >= np.finfo(np.float64).tiny):
        raise DataError("a categorical model's probabilities must be finite, non-negative and not all zero")
    out = np.empty(n + 1, dtype=np.int64)
    _fill_cdf(p, out)
    return out


@jit
def _fill_cdf(p, out):
    n = p.shape[0]
    total = 0.0
    for i in range(n):  # a sequential sum, as constriction's
        total += p[i]
    scale = float((1 << 24) - n) / total
    cumulative = 0.0
    for i in range(n):
        out[i] = np.int64(np.uint32(cumulative * scale)) + i
        cumulative += p[i]
    out[n] = 1 << 24


def pack(cdfs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Several cumulative tables as one array and where each starts (the compiled loops take them so)."""
    starts = np.zeros(len(cdfs) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(c) for c in cdfs])
    return (np.concatenate(cdfs) if cdfs else np.zeros(0, dtype=np.int64)), starts


# ----------------------------------------------------------------------------------------------- encoder
@jit
def _push(state, words, n, left, probability):
    """Push one symbol (its cumulative ``left`` and ``probability`` out of 2^24); returns the state and the
    number of words."""
    if (state >> np.uint64(40)) >= np.uint64(probability):
        words[n] = np.uint32(state & np.uint64(0xFFFFFFFF))
        n += 1
        state = state >> np.uint64(32)
    p = np.uint64(probability)
    state = ((state // p) << np.uint64(24)) | (np.uint64(left) + state % p)
    return state, n


@jit
def encode_groups(errors, order, contexts, bounds, shifts, halves, cdfs, starts, escape_bits, words):
    """The residual stream of :func:`medzoo.codec.lossless._code_errors`, as ``constriction`` would write it.

    ``errors[order[bounds[g]:bounds[g + 1]]]`` are group ``g``'s errors, all in context ``contexts[g]``.
    Context ``k`` splits an error into ``high << shifts[k]`` plus low bits; ``high`` is the symbol
    ``high + halves[k]`` of table ``cdfs[starts[k]:starts[k + 1]]``, or beyond ``halves[k]`` the escape
    symbol ``2 halves[k] + 1`` followed by ``high`` in ``escape_bits`` bits (offset by half their range).
    The decoder reads, group after group: the symbols, the escaped values, the low bits, so the
    encoder pushes them in the reverse. ``words`` needs room for two words per error plus two; returns
    how many it holds.
    """
    state = np.uint64(0)
    n = 0
    escape_probability = 1 << (24 - escape_bits)
    escape_offset = 1 << (escape_bits - 1)
    for g in range(contexts.shape[0] - 1, -1, -1):
        k = contexts[g]
        a, b = bounds[g], bounds[g + 1]
        shift, half, start = shifts[k], halves[k], starts[k]
        if shift:
            probability = 1 << (24 - shift)
            for i in range(b - 1, a - 1, -1):
                e = errors[order[i]]
                state, n = _push(state, words, n, (e - ((e >> shift) << shift)) * probability, probability)
        for i in range(b - 1, a - 1, -1):
            high = errors[order[i]] >> shift
            if abs(high) > half:
                state, n = _push(state, words, n, (high + escape_offset) * escape_probability, escape_probability)
        for i in range(b - 1, a - 1, -1):
            high = errors[order[i]] >> shift
            s = start + (2 * half + 1 if abs(high) > half else high + half)
            state, n = _push(state, words, n, cdfs[s], cdfs[s + 1] - cdfs[s])
    while state:  # the state's nonzero words, low first (the decoder pops the high one first)
        words[n] = np.uint32(state & np.uint64(0xFFFFFFFF))
        n += 1
        state = state >> np.uint64(32)
    return n


# ----------------------------------------------------------------------------------------------- decoder
class Decoder:
    """A stream's words and the decoder's cursor (state, position), which :func:`decode_wavefront` advances one
    wavefront at a time, popping what :func:`encode_groups` pushed."""

    def __init__(self, words: np.ndarray):
        """``words``: the stream's 32-bit words (as ``constriction.stream.stack.AnsCoder(words)`` takes them)."""
        self.words = np.ascontiguousarray(words, dtype=np.uint32)
        if self.words.size and self.words[-1] == 0:
            raise DataError("a residual payload's range-coded words end in a zero word, which no encoder writes")
        # state and position in one array, so the compiled calls carry them from one wavefront to the next
        self.cursor = np.zeros(2, dtype=np.uint64)
        pos = self.words.size
        state = 0
        if pos:
            pos -= 1
            state = int(self.words[pos])
            if pos:
                pos -= 1
                state = (state << 32) | int(self.words[pos])
        self.cursor[:] = (state, pos)

    def check_finished(self) -> None:
        """Every word read and the state back at the encoder's start (0): else the stream held other symbols
        than the decoder read, i.e. it is damaged or truncated."""
        if self.cursor[0] != 0 or self.cursor[1] != 0:
            raise DataError("a residual payload's range-coded words do not decode to its pixels: it is damaged or "
                            "truncated")


@jit
def _pop_symbol(words, state, pos, cdfs, start, size):
    """Decode one symbol of the categorical model at ``cdfs[start:start + size + 1]``; returns it, the state and
    the position."""
    quantile = np.int64(state & np.uint64(0xFFFFFF))
    lo, hi = 0, size - 1  # the last entry with a value <= quantile
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if cdfs[start + mid] <= quantile:
            lo = mid
        else:
            hi = mid - 1
    left = cdfs[start + lo]
    state = (state >> np.uint64(24)) * np.uint64(cdfs[start + lo + 1] - left) + np.uint64(quantile - left)
    if state < np.uint64(1 << 32) and pos > 0:
        pos -= 1
        state = (state << np.uint64(32)) | np.uint64(words[pos])
    return lo, state, pos


@jit
def _pop_bits(words, state, pos, bits):
    """Decode a value of ``bits`` bits coded with the uniform model; returns it, the state and the position."""
    quantile = state & np.uint64(0xFFFFFF)
    drop = np.uint64(24 - bits)
    value = quantile >> drop
    state = ((state >> np.uint64(24)) << drop) + (quantile - (value << drop))
    if state < np.uint64(1 << 32) and pos > 0:
        pos -= 1
        state = (state << np.uint64(32)) | np.uint64(words[pos])
    return np.int64(value), state, pos


@jit
def decode_wavefront(words, cursor, ctx, contexts, cdfs, starts, shifts, halves, escape_bits, out):
    """One wavefront's errors, whose contexts are ``ctx`` (pixel order), into ``out``; ``cursor`` holds the
    decoder's state and position between calls. Returns False (nothing decoded) if a context is not below
    ``contexts``, which no valid payload gives.

    The stream holds, per context present (ascending): its pixels' symbols in pixel order (a table
    index, ``2 half + 1`` announcing an escape), then its escaped values (offset by
    ``2^(escape_bits - 1)``), then its low bits; each error is ``(high << shift) + low``.
    """
    for i in range(ctx.shape[0]):
        if not 0 <= ctx[i] < contexts:
            return False
    state, pos = cursor[0], np.int64(cursor[1])
    counts = np.zeros(contexts + 1, dtype=np.int64)
    for i in range(ctx.shape[0]):
        counts[ctx[i] + 1] += 1
    for k in range(contexts):  # counts[k]: where context k's pixels start in the stream order
        counts[k + 1] += counts[k]
    pixel_of = np.empty(ctx.shape[0], dtype=np.int64)
    fill = counts[:-1].copy()
    for i in range(ctx.shape[0]):
        k = ctx[i]
        pixel_of[fill[k]] = i
        fill[k] += 1
    high = np.empty(ctx.shape[0], dtype=np.int64)  # the high part of each error, in stream order
    escape_offset = 1 << (escape_bits - 1)
    for k in range(contexts):
        a, b = counts[k], counts[k + 1]
        if a == b:
            continue
        start, size, half = starts[k], starts[k + 1] - starts[k] - 1, halves[k]
        for j in range(a, b):
            high[j], state, pos = _pop_symbol(words, state, pos, cdfs, start, size)
        for j in range(a, b):
            if high[j] == 2 * half + 1:
                value, state, pos = _pop_bits(words, state, pos, escape_bits)
                high[j] = value - escape_offset
            else:
                high[j] -= half
        shift = shifts[k]
        for j in range(a, b):
            low = 0
            if shift:
                low, state, pos = _pop_bits(words, state, pos, shift)
            out[pixel_of[j]] = (high[j] << shift) + low
    cursor[0], cursor[1] = state, np.uint64(pos)
    return True
