"""Lossless coding with a learned codec: its exact reconstruction predicts each pixel; the residual is range coded.

The codec's lossy stream is decoded with the *integer* synthesis
(:class:`~medzoo.codec.exact.IntegerNetwork`), so encoder and decoder compute the same
reconstruction to the bit on any machine. Each image keeps its own integer range
``[low, high]`` (stored in the stream): the model sees ``(x - low) / (high - low)`` as it
did in training (min-max scaled), and its reconstruction maps back to a prediction
``low + round(x_hat (high - low))``. The residual ``x - prediction`` is coded with a
discrete Laplace distribution whose scale depends on the pixel's context in the
reconstruction (how steep it is, how bright); the encoder picks, per image and
context, the scale that codes that context's residuals in the fewest bits and sends
its index. Wide residuals (12-16-bit images) are split: the low ``shift`` bits are
sent as they are, the rest with the table. Residuals outside a table's range are
escaped (18 bits, uniform), so any integer image round-trips exactly, negative
values included (CT in Hounsfield units).
"""

from __future__ import annotations

import functools

import numpy as np

from medzoo.codec import exact
from medzoo.codec.hyperprior import SCALE_LEVELS, _frequencies, scale_table
from medzoo.errors import DataError

#: the reconstruction's fixed point: x_hat in [0, 1] is an integer in [0, 2^RECON_BITS]
RECON_BITS = exact.ACTIVATION_BITS
#: steepness bins: |horizontal| + |vertical| central differences of the reconstruction, in 2^-RECON_BITS
GRADIENT_THRESHOLDS = (16, 48, 128, 320, 800)
#: brightness bins: the reconstruction's value in quarters of the range
BRIGHTNESS_BINS = 4
CONTEXTS = (len(GRADIENT_THRESHOLDS) + 1) * BRIGHTNESS_BINS
#: shifts go up to this (a residual's low bits sent as they are)
MAX_SHIFT = 15
#: each Laplace table covers [-T, T], T = ceil(LAPLACE_TAIL * b)
LAPLACE_TAIL = 20.0
#: escaped residuals are coded in ESCAPE_BITS bits (uniform): |r| < 2^(ESCAPE_BITS - 1)
ESCAPE_BITS = 18
#: the pixel types the lossless mode takes, and their ids in a stream
DTYPES = ("uint8", "uint16", "int16", "int8")


def _constriction():
    import constriction

    return constriction


@functools.lru_cache(maxsize=1)
def laplace_tables() -> tuple:
    """Per scale index: probabilities of ``-T..T`` then the escape, a discrete Laplace of scale b."""
    tables = []
    for b in scale_table():
        t = int(np.ceil(LAPLACE_TAIL * b))
        edges = np.arange(-t, t + 2, dtype=np.float64) - 0.5
        cdf = np.where(edges < 0, 0.5 * exact.exp(np.minimum(edges, 0.0) / b),
                       1.0 - 0.5 * exact.exp(-np.maximum(edges, 0.0) / b))
        pmf = cdf[1:] - cdf[:-1]
        tables.append(_frequencies(np.concatenate([pmf, [cdf[0] + (1.0 - cdf[-1])]])))
    return tuple(tables)


@functools.lru_cache(maxsize=1)
def _models():
    family = _constriction().stream.model.Categorical
    return [family(p, perfect=False) for p in laplace_tables()]


# ----------------------------------------------------------------- prediction
def pixel_range(images: np.ndarray) -> np.ndarray:
    """Per image and channel ``[low, high]`` (int64 array (N, C, 2))."""
    low = images.min(axis=(1, 2))
    high = images.max(axis=(1, 2))
    return np.stack([low, high], axis=-1).astype(np.int64)


def model_inputs(images: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Integer images (N, H, W, C) -> float32 in [0, 1], each image and channel min-max scaled."""
    low = ranges[:, None, None, :, 0].astype(np.float64)
    span = np.maximum(ranges[:, None, None, :, 1] - ranges[:, None, None, :, 0], 1).astype(np.float64)
    return ((images - low) / span).astype(np.float32)


def predictions(recon: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Fixed-point reconstructions (N, H, W, C) -> integer predictions ``low + round(x_hat (high - low))``."""
    fixed = np.clip(recon, 0, 2 ** RECON_BITS).astype(np.int64)
    low = ranges[:, None, None, :, 0]
    span = ranges[:, None, None, :, 1] - low
    return low + ((fixed * span + (1 << (RECON_BITS - 1))) >> RECON_BITS)


def contexts(recon: np.ndarray) -> np.ndarray:
    """The context (0..CONTEXTS-1) of every pixel, from the fixed-point reconstruction (N, H, W, C)."""
    fixed = np.clip(recon, 0, 2 ** RECON_BITS).astype(np.int64)
    padded = np.pad(fixed, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    gradient = (np.abs(padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) +
                np.abs(padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]))
    steep = np.searchsorted(np.asarray(GRADIENT_THRESHOLDS), gradient, side="right")
    bright = np.minimum(fixed * BRIGHTNESS_BINS >> RECON_BITS, BRIGHTNESS_BINS - 1)
    return steep * BRIGHTNESS_BINS + bright


# ----------------------------------------------------------------- coding
def _split(residuals: np.ndarray, shift: int, half: int):
    """Residuals -> (table symbols with escapes, escaped values offset to >= 0, low bits)."""
    high = residuals >> shift
    low = residuals - (high << shift)
    escaped = np.abs(high) > half
    symbols = np.where(escaped, 2 * half + 1, high + half).astype(np.int32)
    return symbols, (high[escaped] + (1 << (ESCAPE_BITS - 1))).astype(np.int32), low.astype(np.int32)


def _cost(residuals: np.ndarray, shift: int, index: int) -> float:
    table = laplace_tables()[index]
    half = (len(table) - 2) // 2
    high = residuals >> shift
    inside = np.abs(high) <= half
    counts = np.bincount(high[inside] + half, minlength=2 * half + 1)
    bits = -np.log2(table[:2 * half + 1])
    escapes = int((~inside).sum())
    return float(counts @ bits) + escapes * (ESCAPE_BITS - np.log2(table[-1])) + shift * residuals.size


def choose_model(residuals: np.ndarray, max_shift: int) -> tuple[int, int]:
    """The (scale index, shift) that code ``residuals`` in the fewest bits (the encoder's choice; sent)."""
    if residuals.size == 0:
        return 0, 0
    best = None
    for shift in range(max_shift + 1):
        spread = np.mean(np.abs(residuals >> shift)) + 0.5
        centre = int(np.searchsorted(scale_table(), spread))  # the Laplace b fitting the mean |r|
        for index in range(max(0, centre - 3), min(SCALE_LEVELS, centre + 4)):
            cost = _cost(residuals, shift, index)
            if best is None or cost < best[0]:
                best = (cost, index, shift)
        if best[2] < shift:  # a larger shift stopped helping
            break
    return best[1], best[2]


def _max_shift(dtype) -> int:
    return min(MAX_SHIFT, max(0, np.iinfo(dtype).bits - 8))


def encode_residuals(residuals: np.ndarray, context: np.ndarray, dtype) -> bytes:
    """Residuals and their contexts (N, H, W, C) -> ANS payload (side information + residuals)."""
    constriction = _constriction()
    chunks = []  # (symbols, model) in decoding order
    uniform_index, uniform_shift = (constriction.stream.model.Uniform(n) for n in (SCALE_LEVELS, MAX_SHIFT + 1))
    uniform_escape = constriction.stream.model.Uniform(1 << ESCAPE_BITS)
    max_shift = _max_shift(dtype)
    n, _, _, c = residuals.shape
    for i in range(n):
        for ch in range(c):
            r, ctx = residuals[i, ..., ch].ravel(), context[i, ..., ch].ravel()
            for k in range(CONTEXTS):
                values = r[ctx == k]
                index, shift = choose_model(values, max_shift)
                chunks.append((np.array([index], np.int32), uniform_index))
                chunks.append((np.array([shift], np.int32), uniform_shift))
                if values.size:
                    table = laplace_tables()[index]
                    symbols, escapes, low = _split(values, shift, (len(table) - 2) // 2)
                    chunks.append((symbols, _models()[index]))
                    chunks.append((escapes, uniform_escape))
                    if shift:
                        chunks.append((low, constriction.stream.model.Uniform(1 << shift)))
    coder = constriction.stream.stack.AnsCoder()
    for symbols, model in reversed(chunks):
        if symbols.size:
            coder.encode_reverse(symbols, model)
    return coder.get_compressed().astype("<u4").tobytes()


def decode_residuals(payload: bytes, context: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_residuals`, given the same contexts: residuals (N, H, W, C) int64."""
    constriction = _constriction()
    if len(payload) % 4:
        raise DataError("a residual payload is whole 32-bit words")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    uniform_index, uniform_shift = (constriction.stream.model.Uniform(n) for n in (SCALE_LEVELS, MAX_SHIFT + 1))
    uniform_escape = constriction.stream.model.Uniform(1 << ESCAPE_BITS)
    out = np.zeros(context.shape, dtype=np.int64)
    n, _, _, c = context.shape
    for i in range(n):
        for ch in range(c):
            ctx = context[i, ..., ch].ravel()
            plane = np.zeros(ctx.size, dtype=np.int64)
            for k in range(CONTEXTS):
                where = np.flatnonzero(ctx == k)
                index = int(coder.decode(uniform_index))
                shift = int(coder.decode(uniform_shift))
                if not where.size:
                    continue
                table = laplace_tables()[index]
                half = (len(table) - 2) // 2
                symbols = coder.decode(_models()[index], int(where.size)).astype(np.int64)
                high = symbols - half
                escaped = symbols == 2 * half + 1
                if escaped.any():
                    high[escaped] = coder.decode(uniform_escape, int(escaped.sum())).astype(np.int64) \
                        - (1 << (ESCAPE_BITS - 1))
                low = coder.decode(constriction.stream.model.Uniform(1 << shift), int(where.size)).astype(np.int64) \
                    if shift else 0
                plane[where] = (high << shift) + low
            out[i, ..., ch] = plane.reshape(context.shape[1:3])
    return out
