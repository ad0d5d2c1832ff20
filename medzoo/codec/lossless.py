"""Lossless coding: a learned codec's exact reconstruction predicts the pixels; the rest is coded causally.

Two predictions stack. First, optionally, the codec: its lossy stream is decoded with
the *integer* synthesis (:class:`~medzoo.codec.exact.IntegerNetwork`), so encoder and
decoder compute the same reconstruction to the bit on any machine. Each image keeps
its own integer range ``[low, high]`` (stored in the stream): the model sees
``(x - low) / (high - low)`` as in training (min-max scaled), and its reconstruction
maps back to ``low + round(x_hat (high - low))``. Then the signal left (the pixels, or
their difference from that reconstruction) is predicted from its already decoded
neighbours, and the prediction error is coded with a discrete Laplace or Gaussian
distribution per *context* of local error energy (CALIC's idea: errors cluster) in 8 to
32 bins by image size, thresholds at its quantiles (chosen per stream and sent). The
encoder picks, per context, the family and scale that code its errors in the fewest bits
(searched around the scales that fit their mean and their median magnitude: outliers
inflate the mean) and sends its index; where a context's own histogram (quantised to a
byte per value, sent; priced at several widths up to 255 either side of zero) saves more than it
costs, that is its table instead (:data:`EXPLICIT`).
Wide errors (12-16-bit images) are split: the low ``shift`` bits are sent as they are,
the rest with the table; values beyond a table are escaped (uniform, ESCAPE_BITS).

The neighbours predict in one of two ways (versions 2-4, and 1), the payload's first byte says which:

* version 2 (what :func:`encode_signal` writes): classified linear prediction
  (:mod:`medzoo.codec.prediction`): nine neighbours and the median edge detector's value,
  weighted by least-squares coefficients per class of local activity and orientation,
  fitted by the encoder and sent. Error energy: the prediction errors at W, N, NW, NE
  plus half the local activity. Decoded one wavefront ``2 r + c`` at a time: 2H + W - 2
  steps. On native-resolution radiographs and CT it takes 1-14% fewer bits than version 1
  and beats JPEG-LS (``benchmarks/lossless.py``).
* version 3 (:func:`encode_signal` also tries it on padded signals, :func:`is_padded`): version 2
  with the edge of the *floor* (the signal's lowest value) apart. CT scanners pad the corners
  outside their circular field of view far below air (-2000 or -3024 HU); a pixel whose nine
  neighbours mix that floor with other values is predicted by the mean of the others and coded
  in a context of its own, where one symbol stands for the floor. 13% fewer bits on the WG04 head
  CT, 4% on the TCIA test slices.
* version 4 (what :func:`encode_signal` writes where it saves 1% of versions 2 and 3's bits): either of them
  with each context of error energy split further by the level of the pixel's prediction, at quantiles
  of the predicted values (sent). X-ray and CT noise grows with the signal; 2.6% fewer bits on the
  WG04 CR extremity. On the other radiographs, the MR and the CT they save 0.1-0.5%, too little for
  the slower coding (:data:`LEVEL_SAVING`), so those keep versions 2 and 3 (:func:`_levels`). A learned
  codec's latent channels, coded with every count of levels tried, take 2-8% fewer bits.
* version 1 (:func:`encode_signal_med`; :func:`encode_signal` still picks it where it costs
  less, e.g. on thumbnails and flat graphics): JPEG-LS's median edge detector on left, up and
  up-left, error energy ``|left - upleft| + |up - upleft| + 2 |e_left| + 2 |e_up| + |e_upleft|``;
  decoded one anti-diagonal at a time: H + W - 1 steps.

The decoder's steps are compiled loops (:mod:`medzoo.codec.wavefront`); the range decoder, compiled too
(:mod:`medzoo.codec.ans`, word for word ``constriction``'s streams), runs between them, for each context
present in a step: its symbols, any escapes, any low bits.

Any integer image round-trips exactly, negative values included (CT in Hounsfield units).
"""

from __future__ import annotations

import functools

import numpy as np

from medzoo.codec import ans, exact, prediction, wavefront
from medzoo.codec.hyperprior import SCALE_LEVELS, _frequencies, gaussian_tables, scale_table
from medzoo.codec.bitio import Reader, varint, zigzag
from medzoo.errors import DataError

#: the reconstruction's fixed point: x_hat in [0, 1] is an integer in [0, 2^RECON_BITS]
RECON_BITS = exact.ACTIVATION_BITS
#: error-energy bins of the causal neighbourhood, by pixels per stream: (up to this many pixels, bins)
CONTEXT_BINS = ((1 << 15, 8), (1 << 18, 16), (None, 32))
#: shifts go up to this (a residual's low bits sent as they are)
MAX_SHIFT = 15
#: each Laplace table covers [-T, T], T = ceil(LAPLACE_TAIL * b)
LAPLACE_TAIL = 20.0
#: escaped residuals are coded in ESCAPE_BITS bits (uniform): |r| < 2^(ESCAPE_BITS - 1)
ESCAPE_BITS = 18
#: the pixel types the lossless mode takes, and their ids in a stream
DTYPES = ("uint8", "uint16", "int16", "int8")
#: a context's table index that announces an explicit table (its histogram follows in the side information)
EXPLICIT = 255
#: an explicit table covers at most [-EXPLICIT_HALF, EXPLICIT_HALF] (its half-width is sent in a byte); its
#: counts are sent as bytes ``round(COUNT_STEPS * log2(1 + count))``
EXPLICIT_HALF, COUNT_STEPS = 255, 16
#: the largest count a byte level holds (level 255, about 62,800); the encoder scales a histogram's counts below it
EXPLICIT_PEAK = 2.0 ** (255 / COUNT_STEPS) - 1.0
#: an explicit table is priced at half-widths ``2^k`` and ``3 * 2^k`` (96 among them: the width it had before it
#: was chosen by cost) and at these upper quantiles of its errors' magnitudes
EXPLICIT_WIDTHS = tuple(sorted({*(1 << k for k in range(8)), *(3 << k for k in range(7))}))
EXPLICIT_QUANTILES = (0.9, 0.99, 0.999, 0.9999, 1.0)
#: contexts of at least this many residuals may send an explicit table (where it pays for itself)
EXPLICIT_MIN = 64


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
def error_tables() -> tuple:
    """The tables a context may pick (its index in a stream): the discrete Laplace scales, then the
    discretized Gaussian ones (smooth noise, e.g. CT, has lighter tails than a Laplace)."""
    return laplace_tables() + tuple(gaussian_tables())


@functools.lru_cache(maxsize=1)
def _parametric_cdfs() -> tuple:
    """The range coder's cumulative table of each parametric table (:func:`error_tables`), quantised once."""
    return tuple(ans.quantised_cdf(p) for p in error_tables())


def _cdf(table: np.ndarray, index: int) -> np.ndarray:
    """A context's cumulative table: a cached parametric one, or one made for an explicit table."""
    return _parametric_cdfs()[index] if index != EXPLICIT else ans.quantised_cdf(table)


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


def from_unit(images: np.ndarray, ranges: np.ndarray, dtype) -> np.ndarray:
    """Float images (N, H, W, C) in [0, 1] -> integer pixels of ``dtype`` in each image's and channel's range
    (the inverse of :func:`model_inputs` up to rounding)."""
    low = ranges[:, None, None, :, 0].astype(np.float64)
    high = ranges[:, None, None, :, 1].astype(np.float64)
    return np.clip(np.round(low + images.astype(np.float64) * (high - low)), low, high).astype(dtype)


def predictions(recon: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Fixed-point reconstructions (N, H, W, C) -> integer predictions ``low + round(x_hat (high - low))``."""
    fixed = np.clip(recon, 0, 2 ** RECON_BITS).astype(np.int64)
    low = ranges[:, None, None, :, 0]
    span = ranges[:, None, None, :, 1] - low
    return low + ((fixed * span + (1 << (RECON_BITS - 1))) >> RECON_BITS)


def _neighbours(signal: np.ndarray):
    """Left, up and up-left neighbours of every pixel of (P, H, W), zero outside the image."""
    padded = np.pad(signal, ((0, 0), (1, 0), (1, 0)))
    return padded[:, 1:, :-1], padded[:, :-1, 1:], padded[:, :-1, :-1]


def activity(left, up, upleft):
    return np.abs(left - upleft) + np.abs(up - upleft)


def energy(left, up, upleft, e_left, e_up, e_upleft):
    """The context variable: local activity plus the magnitude of the neighbours' prediction errors."""
    return activity(left, up, upleft) + 2 * (np.abs(e_left) + np.abs(e_up)) + np.abs(e_upleft)


def num_contexts(pixels: int) -> int:
    return by_size(CONTEXT_BINS, pixels)


def by_size(table, pixels: int) -> int:
    """The value of a ``((up to this many pixels, value), ..., (None, value))`` table for a signal of ``pixels``."""
    return next(value for limit, value in table if limit is None or pixels <= limit)


def context_thresholds(values: np.ndarray, contexts: int) -> np.ndarray:
    """``contexts - 1`` increasing thresholds at the quantiles of ``values`` (the encoder's choice; sent)."""
    values = values.ravel()
    quantiles = lower_quantiles(values, np.arange(1, contexts) / contexts) if values.size else \
        np.zeros(contexts - 1)
    return np.maximum.accumulate(np.asarray(quantiles, dtype=np.int64) + np.arange(contexts - 1))


def count_at_most(thresholds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.searchsorted(thresholds, values, side="right")`` (each value's context), through a table of the
    values' range where it is small: one gather instead of a binary search per pixel."""
    if values.size < 4096:
        return np.searchsorted(thresholds, values, side="right")
    values = np.asarray(values, dtype=np.int64)  # differences below in int64, whatever the type given
    low, high = int(values.min()), int(values.max())
    if high - low > values.size:
        return np.searchsorted(thresholds, values, side="right")
    table = np.searchsorted(thresholds, np.arange(low, high + 1), side="right")
    return table[values - low]


def lower_quantiles(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(values, q, method="lower")`` of integers, from one histogram where their range allows
    (a sixth of the encoder's time went to numpy's partitions, one per quantile, on a 1024 px image)."""
    values = np.asarray(values, dtype=np.int64)  # differences below in int64, whatever the type given
    low, high = int(values.min()), int(values.max())
    if high - low > max(4 * values.size, 1 << 16):
        return np.quantile(values, q, method="lower")
    ranks = np.floor((values.size - 1) * np.asarray(q, dtype=np.float64)).astype(np.intp)  # numpy's "lower" index
    below = np.cumsum(np.bincount(values - low, minlength=high - low + 1))  # values <= low + k
    return low + np.searchsorted(below, ranks, side="right")


# ----------------------------------------------------------------- coding
@functools.lru_cache(maxsize=1)
def _level_counts() -> np.ndarray:
    """The count each byte level stands for, ``2^(level / COUNT_STEPS) - 1``, floored at 1e-3 (exact, read-only)."""
    counts = exact.exp(np.arange(256, dtype=np.float64) * (0.6931471805599453 / COUNT_STEPS)) - 1.0
    counts = np.maximum(counts, 1e-3)
    counts.flags.writeable = False
    return counts


def explicit_table(levels: np.ndarray) -> np.ndarray:
    """Quantised counts (bytes, the symbols ``-T..T`` then the escape) -> the table both sides use (exact)."""
    counts = _level_counts()[np.asarray(levels, dtype=np.uint8)]
    return _frequencies(counts / np.sum(counts))


class _Histogram:
    """Counts of ``residuals >> shift`` over their range, so that pricing a table costs its length, not
    the number of residuals (the encoder prices a few dozen tables per context)."""

    def __init__(self, residuals: np.ndarray, shift: int):
        high = np.asarray(residuals, dtype=np.int64) >> shift  # differences below in int64, whatever the type given
        self.shift, self.size = shift, residuals.size
        self.low = int(high.min()) if high.size else 0
        self.counts = np.bincount(high - self.low) if high.size else np.zeros(1, dtype=np.int64)

    def median_magnitude(self) -> float:
        """``np.median(np.abs(residuals >> shift))``, read off the counts (no sort of the residuals)."""
        values = np.arange(self.low, self.low + len(self.counts))
        magnitudes = np.bincount(np.abs(values), weights=self.counts).astype(np.int64)
        ranks = np.cumsum(magnitudes)
        middle = np.searchsorted(ranks, [(self.size - 1) // 2, self.size // 2], side="right")
        return float(middle.sum()) / 2.0

    def entropy_bits(self) -> float:
        """The empirical entropy of ``residuals >> shift`` times their number, plus the low bits sent as they
        are: no table codes them in fewer bits (an escape's 18 raw bits hold any value a table leaves out)."""
        counts = self.counts[self.counts > 0].astype(np.float64)
        return float(counts @ np.log2(self.size / counts)) + self.shift * self.size

    def magnitude_quantiles(self, q: list[float]) -> np.ndarray:
        """``np.quantile(np.abs(residuals >> shift), q, method="higher")``, read off the counts."""
        values = np.arange(self.low, self.low + len(self.counts))
        below = np.cumsum(np.bincount(np.abs(values), weights=self.counts).astype(np.int64))  # |r| <= k
        ranks = np.ceil((self.size - 1) * np.asarray(q, dtype=np.float64)).astype(np.int64)  # numpy's "higher" index
        return np.searchsorted(below, ranks, side="right")

    def inside(self, half: int) -> np.ndarray:
        """Counts of the values ``-half..half`` (int64, length ``2 half + 1``)."""
        counts = np.zeros(2 * half + 1, dtype=np.int64)
        first, last = max(self.low, -half), min(self.low + len(self.counts) - 1, half)
        if first <= last:
            counts[first + half:last + half + 1] = self.counts[first - self.low:last - self.low + 1]
        return counts

    def cost(self, table: np.ndarray) -> float:
        """Bits to code the residuals with ``table`` (symbols ``-T..T``, then the escape)."""
        half = (len(table) - 2) // 2
        counts = self.inside(half)
        escapes = self.size - int(counts.sum())
        return (float(counts @ -np.log2(table[:2 * half + 1])) + escapes * (ESCAPE_BITS - np.log2(table[-1]))
                + self.shift * self.size)


def _explicit_levels(histogram: _Histogram, half: int) -> np.ndarray:
    """The byte levels of an explicit table over ``-half..half`` (the encoder's histogram, quantised).

    The counts are scaled so that the largest (or the escapes') fits a byte's level: unscaled, every
    count above :data:`EXPLICIT_PEAK` would read as that peak, and a large context's
    most frequent errors would all be priced alike. Only ratios matter, since the table is normalised.
    """
    counts = histogram.inside(half).astype(np.float64)
    counts = np.append(counts, histogram.size - counts.sum())
    counts *= min(1.0, EXPLICIT_PEAK / max(float(counts.max()), 1.0))
    return np.minimum(255, np.round(COUNT_STEPS * np.log2(1.0 + counts))).astype(np.uint8)


def explicit_side_bits(half: int) -> int:
    """What an explicit table of half-width ``half`` costs to send: its width byte and a byte per level
    (``2 half + 1`` values and the escape)."""
    return 8 * (2 * half + 3)


def explicit_bits(histogram: _Histogram, levels: np.ndarray) -> float:
    """Bits to code the histogram's residuals with the explicit table of ``levels``, its side bytes included."""
    return histogram.cost(explicit_table(levels)) + explicit_side_bits((len(levels) - 2) // 2)


def _explicit_halves(histogram: _Histogram) -> list[int]:
    """The half-widths an explicit table is priced at: :data:`EXPLICIT_WIDTHS`, :data:`EXPLICIT_HALF` and the
    errors' own upper quantiles (:data:`EXPLICIT_QUANTILES`), within ``1..EXPLICIT_HALF``. Wide enough saves
    escapes (18 bits each), narrow enough saves side bytes and the probability every listed value holds;
    only the bits tell which wins."""
    candidates = [*histogram.magnitude_quantiles(list(EXPLICIT_QUANTILES)), *EXPLICIT_WIDTHS, EXPLICIT_HALF]
    return sorted({min(EXPLICIT_HALF, max(1, int(h))) for h in candidates})


def choose_table(residuals: np.ndarray, max_shift: int) -> tuple[int, int, np.ndarray | None]:
    """:func:`choose_model`'s parametric choice, or an explicit table (index :data:`EXPLICIT`, its byte levels
    sent) where its histogram saves more bits than it costs to send.

    A context's errors need not look like a Laplace or a Gaussian: an ultrasound's black background
    gives a context of zeros with a few jumps to the text's 255, images rescaled from fewer bits give
    spikes. The explicit table is priced at several half-widths (:func:`_explicit_halves`, the one it
    had before among them) and kept at the cheapest, side bytes included. Only the encoder chooses: the
    decoder reads any table up to :data:`EXPLICIT_HALF` either side of zero.
    """
    index, shift = choose_model(residuals, max_shift)
    if residuals.size < EXPLICIT_MIN:
        return index, shift, None
    histogram = _Histogram(residuals, shift)
    best = (histogram.cost(error_tables()[index]), index, None)
    floor = histogram.entropy_bits()
    for half in _explicit_halves(histogram):
        if floor + explicit_side_bits(half) >= best[0]:  # even a perfect table this wide would not pay its side
            break
        levels = _explicit_levels(histogram, half)
        bits = explicit_bits(histogram, levels)
        if bits < best[0]:
            best = (bits, EXPLICIT, levels)
    return best[1], shift, best[2]


def choose_model(residuals: np.ndarray, max_shift: int) -> tuple[int, int]:
    """The (scale index, shift) that code ``residuals`` in the fewest bits (the encoder's choice; sent)."""
    if residuals.size == 0:
        return 0, 0
    best, scales = None, scale_table()
    for shift in range(max_shift + 1):
        magnitude = np.abs(residuals >> shift)
        histogram = _Histogram(residuals, shift)
        median = histogram.median_magnitude()
        # scales fitting the mean |r| and, robust to outliers, the median |r| (Laplace b, Gaussian sigma)
        centres = {min(int(np.searchsorted(scales, v)), SCALE_LEVELS - 1) + family * SCALE_LEVELS
                   for family, v in (
            (0, magnitude.mean() + 0.5), (0, median / 0.6931 + 0.5),
            (1, 1.2533 * magnitude.mean() + 0.5), (1, median / 0.6745 + 0.5))}
        candidates = sorted({i for c in centres for i in range(c - 3, c + 4)
                             if (c // SCALE_LEVELS) * SCALE_LEVELS <= i < (c // SCALE_LEVELS + 1) * SCALE_LEVELS})
        for index in candidates:
            cost = histogram.cost(error_tables()[index])
            if best is None or cost < best[0]:
                best = (cost, index, shift)
        if best[2] < shift:  # a larger shift stopped helping
            break
    return best[1], best[2]


def _max_shift(dtype) -> int:
    return min(MAX_SHIFT, max(0, np.iinfo(dtype).bits - 8))


def _coding_order(context: np.ndarray, contexts: int, row_weight: int):
    """The pixels of (P, H, W) in stream order, and where each (wavefront, context) group starts.

    The stream codes one wavefront ``row_weight * r + c`` after another (1: anti-diagonals, the
    first payload version; 2: the second's wavefronts) and, within one, the pixels of each
    context in turn (plane, then row), which is the order the decoder can recover them in.
    Returns the flat pixel indices in that order, the group (``wavefront * contexts + context``)
    of every non-empty group and where each starts (plus the end).
    """
    order = np.empty(context.size, dtype=np.int64)
    sizes = wavefront.coding_order(np.ascontiguousarray(context, dtype=np.int64), contexts, row_weight, order)
    groups = np.flatnonzero(sizes)
    return order, groups, np.append(0, np.cumsum(sizes[groups]))


def _by_context(errors: np.ndarray, context: np.ndarray, contexts: int) -> list[np.ndarray]:
    """Each context's errors, from one stable (radix) sort of the small context labels rather than a mask
    per context over all the errors (a fifth of the encoder's time at 1 megapixel)."""
    keys = context.ravel().astype(np.int16)
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(contexts + 1, dtype=np.int16)).tolist()
    grouped = errors.ravel()[order]
    return [grouped[bounds[k]:bounds[k + 1]] for k in range(contexts)]


def _code_errors(errors: np.ndarray, context: np.ndarray, contexts: int, thresholds: np.ndarray, dtype,
                 row_weight: int) -> bytes:
    """Prediction errors (P, H, W) and their contexts -> each context's table (side information), the context
    thresholds and the ANS words, the errors in stream order (:func:`_coding_order`)."""
    largest = int(np.abs(errors).max()) if errors.size else 0
    if largest >= 1 << (ESCAPE_BITS - 1):  # beyond the escape's range (no error of DTYPES reaches it)
        raise DataError(f"a prediction error of {largest} is beyond what the causal coder can code "
                        f"(below 2^{ESCAPE_BITS - 1})")
    chosen = [choose_table(group, _max_shift(dtype)) for group in _by_context(errors, context, contexts)]
    choices = [(index, shift) for index, shift, _ in chosen]
    tables = [error_tables()[index] if levels is None else explicit_table(levels) for index, _, levels in chosen]
    cdfs, starts = ans.pack([_cdf(table, index) for table, (index, _) in zip(tables, choices)])
    shifts = np.array([shift for _, shift in choices], dtype=np.int64)
    halves = np.array([(len(table) - 2) // 2 for table in tables], dtype=np.int64)

    # the errors in stream order, split and coded in one compiled pass
    order, groups, bounds = _coding_order(context, contexts, row_weight)
    words = np.empty(2 * errors.size + 2, dtype=np.uint32)
    used = ans.encode_groups(errors.ravel(), order, groups % contexts, bounds, shifts, halves, cdfs, starts,
                             ESCAPE_BITS, words)
    side = bytes([contexts] + [v for index, shift in choices for v in (index, shift)])
    explicit = b"".join(bytes([(len(levels) - 2) // 2]) + levels.tobytes() for _, _, levels in chosen
                        if levels is not None)
    return (side + b"".join(varint(int(t)) for t in thresholds) + explicit
            + words[:used].astype("<u4").tobytes())


def _thresholds(values: list[int], what: str) -> np.ndarray:
    """Thresholds read from a payload (int64), checked: the encoder writes them strictly increasing
    (:func:`context_thresholds`), and the decoder's binary search needs them so."""
    if any(not -2 ** 63 <= v < 2 ** 63 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise DataError(f"the residual payload's {what} thresholds are not increasing 64-bit integers")
    return np.asarray(values, dtype=np.int64)


class _ErrorDecoder:
    """Reads what :func:`_code_errors` wrote and gives back each wavefront's errors, given their contexts."""

    def __init__(self, r: Reader, payload: bytes, extra_contexts: int = 0, levels: int = 1):
        """``extra_contexts``: contexts after the thresholded ones (version 3's floor edge); ``levels``: how
        many levels of the predicted value split each energy bin (version 4)."""
        contexts = r.take(1, "residual contexts")[0]
        bins, split = divmod(contexts - extra_contexts, levels)
        if split or bins not in {b for _, b in CONTEXT_BINS}:
            raise DataError(f"the residual payload names an unknown number of contexts ({contexts})")
        side = r.take(2 * contexts, "residual tables")
        choices = [(side[2 * k], side[2 * k + 1]) for k in range(contexts)]
        if any((index >= len(error_tables()) and index != EXPLICIT) or shift > MAX_SHIFT
               for index, shift in choices):
            raise DataError("the residual payload names an unknown table")
        self.thresholds = _thresholds([r.varint("context threshold") for _ in range(bins - 1)], "context")
        tables = []
        for index, _ in choices:
            if index == EXPLICIT:
                half = r.take(1, "explicit table size")[0]
                tables.append(explicit_table(np.frombuffer(r.take(2 * half + 2, "explicit table"), dtype=np.uint8)))
            else:
                tables.append(error_tables()[index])
        words = payload[r.pos:]
        if len(words) % 4:
            raise DataError("a residual payload is whole 32-bit words")
        self.coder = ans.Decoder(np.frombuffer(words, dtype="<u4"))
        self.cdfs, self.starts = ans.pack([_cdf(table, index) for table, (index, _) in zip(tables, choices)])
        self.shifts = np.array([shift for _, shift in choices], dtype=np.int64)
        self.halves = np.array([(len(table) - 2) // 2 for table in tables], dtype=np.int64)
        self.contexts = contexts

    def decode_steps(self, steps: int, step, signal: np.ndarray, errors: np.ndarray, longest: int,
                     floor: tuple[int, int] | None = None) -> None:
        """Run ``steps`` wavefronts: ``step(t, at, predicted, context)`` (a :mod:`~medzoo.codec.wavefront` step)
        fills a wavefront's pixels, predictions and contexts and returns its pixels per plane; their
        errors are read here and the pixels written back into ``signal`` and ``errors`` ((P, N) planes).
        ``floor``: version 3's ``(edge context, floor value)``, whose symbols :func:`floor_symbols` mapped."""
        planes = signal.shape[0]
        at = np.empty(longest, dtype=np.int64)
        predicted = np.empty(planes * longest, dtype=np.int64)
        context = np.empty(planes * longest, dtype=np.int64)
        decoded = np.empty(planes * longest, dtype=np.int64)
        words, cursor = self.coder.words, self.coder.cursor
        for t in range(steps):
            n = step(t, at, predicted, context)
            if not ans.decode_wavefront(words, cursor, context[:planes * n], self.contexts, self.cdfs, self.starts,
                                        self.shifts, self.halves, ESCAPE_BITS, decoded):
                raise DataError("the residual payload gives a pixel a context it does not have")
            if floor is None:
                wavefront.place(signal, errors, at, n, predicted, decoded)
            else:
                wavefront.place_floor(signal, errors, at, n, predicted, decoded, context, *floor)
        self.coder.check_finished()


# ----------------------------------------------------------------- payload version 1: the median edge detector
def encode_signal_med(signal: np.ndarray, dtype) -> bytes:
    """Payload version 1: the median edge detector (three neighbours), decoded along anti-diagonals.

    What medzoo wrote first (it keeps decoding); :func:`encode_signal` still picks it where it costs less.
    """
    return _code_plan(_med_plan(np.asarray(signal, dtype=np.int64)), dtype)


def _med_plan(signal: np.ndarray) -> dict:
    """Version 1's prediction errors and contexts (what :func:`_code_plan` codes)."""
    left, up, upleft = _neighbours(signal)
    errors = signal - prediction.median_edge(left, up, upleft)
    contexts = num_contexts(signal.size)
    local = energy(left, up, upleft, *_neighbours(errors))
    thresholds = context_thresholds(local, contexts)
    return {"head": b"", "errors": errors, "context": count_at_most(thresholds, local),
            "contexts": contexts, "thresholds": thresholds, "row_weight": 1, "levels": 1}


def _code_plan(plan: dict, dtype) -> bytes:
    return plan["head"] + _code_errors(plan["errors"], plan["context"], plan["contexts"], plan["thresholds"], dtype,
                                       plan["row_weight"])


def estimated_bits(plan: dict) -> float:
    """About how many bits a plan's errors take: the empirical entropy of each context's errors (clipped to
    +-2^11), summed, plus Miller and Madow's correction for its bias (``(m - 1) / (2 ln 2)`` bits per
    context of ``m`` distinct errors). Cheap (one ``bincount``), and the same yardstick for every version.

    Without the correction, more contexts always look cheaper: split a context's errors and the
    halves' empirical entropies shrink even where the noise is the same in both. On a ramp with even
    Gaussian noise, which 64 contexts code 0.05% longer than 32, they looked 1.3% cheaper uncorrected,
    0.3% with the correction."""
    errors = plan["errors"].ravel()
    half = min(1 << 11, int(np.abs(errors).max(initial=0)) + 1)  # as few bins as hold every error
    contexts = plan["contexts"]
    key = plan["context"].ravel() * (2 * half) + np.clip(errors, -half, half - 1) + half
    counts = np.bincount(key, minlength=contexts * 2 * half).reshape(contexts, 2 * half).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = -np.where(counts > 0, counts * np.log2(counts / np.maximum(totals, 1)), 0.0)
    distinct = np.count_nonzero(counts, axis=1)
    return float(bits.sum() + np.maximum(distinct - 1, 0).sum() / (2 * np.log(2)))


def _decode_med(r: Reader, payload: bytes, shape) -> np.ndarray:
    errors_in = _ErrorDecoder(r, payload)
    planes, h, w = shape
    # a zero border above and left stands in for the neighbours outside the image; flat, for the compiled steps
    signal = np.zeros((planes, (h + 1) * (w + 1)), dtype=np.int64)
    errors = np.zeros_like(signal)
    errors_in.decode_steps(h + w - 1, lambda d, *out: wavefront.median_edge_step(signal, errors, d, h, w,
                                                                                 errors_in.thresholds, *out),
                           signal, errors, longest=min(h, w))
    return signal.reshape(planes, h + 1, w + 1)[:, 1:, 1:]


# ----------------------------------------------------------------- payload versions 2 and 3: classified linear prediction
#: the first byte of a version-2 payload (a version-1 payload starts with its number of contexts: 8, 16 or 32)
LINEAR_MARKER = 0xC2
#: the first byte of a version-3 payload: version 2 with the edge of the floor coded apart (:func:`encode_signal`)
FLOOR_MARKER = 0xC3
#: the encoder tries version 3 where at least this share of the pixels lies at the signal's lowest value
#: (:func:`is_padded`) ...
FLOOR_SHARE = 1 / 64
#: ... and the next value present lies above it by more than this share of the range, and by at least
#: FLOOR_MIN_GAP (a sparse latent of 0s and a few 1s is no padding)
FLOOR_GAP, FLOOR_MIN_GAP = 1 / 16, 16
#: the first bytes of version 4: version 2 (3 with the floor apart) whose contexts split by the prediction's level
LEVELS_MARKER, LEVELS_FLOOR_MARKER = 0xC4, 0xC5
#: how many levels of the predicted value :func:`encode_signal` tries (1: versions 2 and 3) ...
LEVEL_CHOICES = (1, 2, 4, 8)
#: ... where the energy bins beside them keep the contexts (bins x levels) at most this many, by pixels per stream:
#: a small signal fills fewer contexts (on 128 px thumbnails 64 saved no more than 16 and took 1.4-1.5 times as
#: long to encode) ...
LEVEL_CONTEXTS = ((1 << 15, 16), (1 << 16, 32), (None, 64))
#: ... and are taken only where they save at least this share of the estimated bits (2.6% fewer bits on the WG04 CR
#: extremity, 0.1-0.5% on the other radiographs, the MR and the CT): chosen when the range coder read each
#: context present in a wavefront with its own Python call and 64 contexts decoded 1.4-1.8 times slower than 32;
#: kept since, so that streams stay as they were
LEVEL_SAVING = 0.01


#: signals of at most this many pixels are coded both ways and the shorter payload kept: on a thumbnail the
#: linear predictor's coefficients (up to 108 bytes) can cost more than they save
BOTH_WAYS_PIXELS = 1 << 16


def encode_signal(signal: np.ndarray, dtype, thorough: bool = False) -> bytes:
    """Integer planes (P, H, W) -> a payload: version 2 (classified linear prediction, :mod:`~medzoo.codec.prediction`)
    or version 1 (the median edge detector), or on padded signals version 3 (version 2 with the floor's edge
    apart), whichever costs least; versions 2 and 3 become version 4 where splitting their contexts by the
    prediction's level (:func:`_levels`) saves at least :data:`LEVEL_SAVING` of their bits.

    Version 3 is tried too where the signal's lowest value looks like padding
    (:func:`is_padded`): a CT slice's corners outside the scanner's circular field of view (a fifth
    of the pixels at -2000 or -3024 HU). Across that circle's edge every linear prediction mixes
    padding with air and misses by thousands, and the misses inflate the contexts of the pixels
    around them. Version 3 predicts a pixel whose nine neighbours mix the floor with other values
    from those other values alone, and codes it in a context of its own where one symbol means "the
    floor" (:func:`floor_symbols`).

    Each version's count of levels is the one with the fewest :func:`estimated_bits` (plus side
    information). Small signals (:data:`BOTH_WAYS_PIXELS`) are then coded every way tried and the
    shortest payload kept; larger ones are predicted every way (cheap) and only the plan with the
    fewest estimated bits is coded: the median edge detector still wins on flat graphics, e.g. an
    ultrasound's annotations.

    ``thorough``: every version is coded with each count of levels (:func:`_level_shapes`) and the
    shortest payload kept, whatever the estimate says. The estimate misjudges small signals; a
    learned codec's latent channels (:mod:`medzoo.codec.latent`), whose decoding the synthesis
    network and not the range coder paces, take up to 8% fewer bits this way than by the estimate.
    """
    signal = np.asarray(signal, dtype=np.int64)
    shapes = _level_shapes(signal.size, thorough)
    versions = [_linear_plans(signal, shapes=shapes), [_med_plan(signal)]]
    if is_padded(signal):
        versions.append(_linear_plans(signal, floor=True, shapes=shapes))
    if thorough:
        return min((_code_plan(plan, dtype) for plans in versions for plan in plans), key=len)
    best = [_fewest_bits(plans) for plans in versions]  # each at its count of levels, by estimate
    if signal.size <= BOTH_WAYS_PIXELS:
        return min((_code_plan(plan, dtype) for plan in best), key=len)
    return _code_plan(min(best, key=_estimated_cost), dtype)


def _estimated_cost(plan: dict) -> float:
    """A plan's :func:`estimated_bits` plus its side information: its head, and at least two bytes per context
    (its table's). Kept in the plan."""
    if "estimate" not in plan:
        plan["estimate"] = estimated_bits(plan) + 8 * (len(plan["head"]) + 2 * plan["contexts"])
    return plan["estimate"]


def is_padded(signal: np.ndarray) -> bool:
    """Whether the signal's lowest value looks like padding, where :func:`encode_signal` tries version 3: at
    least :data:`FLOOR_SHARE` of the pixels hold it, and the next value present lies above it by more than
    :data:`FLOOR_GAP` of the range and at least :data:`FLOOR_MIN_GAP` (CT padding at -2000 or -3024 HU
    below air at -1000; not the black background of a radiograph or an MR, which shades into the image)."""
    if not signal.size:
        return False
    low = signal.min()
    at_floor = signal == low
    if np.count_nonzero(at_floor) < FLOOR_SHARE * signal.size or at_floor.all():
        return False
    above = np.min(signal, where=~at_floor, initial=signal.max())
    return bool(above - low > FLOOR_GAP * (signal.max() - low) and above - low >= FLOOR_MIN_GAP)


def encode_signal_linear(signal: np.ndarray, dtype, floor: bool = False, levels: int = 1) -> bytes:
    """:func:`encode_signal`'s version-2 payload (version 3 with ``floor``; version 4 with ``levels`` of the
    predicted value above 1, one of :data:`LEVEL_CHOICES`), whatever it costs."""
    if levels not in LEVEL_CHOICES:
        raise ValueError(f"levels must be one of {LEVEL_CHOICES}, not {levels!r}")
    return _code_plan(_linear_plan(np.asarray(signal, dtype=np.int64), floor, levels), dtype)


def floor_symbols(errors: np.ndarray, at_floor: np.ndarray) -> np.ndarray:
    """Version 3's symbols in the floor-edge context: 0 for a pixel at the floor, else its error ``e`` as
    ``e + 1`` if ``e >= 0`` and ``e`` if negative (:func:`~medzoo.codec.wavefront.place_floor` inverts it)."""
    return np.where(at_floor, 0, errors + (errors >= 0))


def _linear_plan(signal: np.ndarray, floor: bool = False, levels: int | None = None) -> dict:
    """Version 2's coefficients (the payload's head), prediction errors and contexts; version 3's with ``floor``.

    ``levels`` of the predicted value split the contexts too (version 4, :func:`_levels`); ``None``:
    whichever of :func:`_level_shapes` gives the fewest estimated bits (1 keeps version 2 or 3)."""
    shapes = None if levels is None else [(levels, _energy_bins(signal.size, levels))]
    return _fewest_bits(_linear_plans(signal, floor, shapes))


def _fewest_bits(plans: list[dict]) -> dict:
    """The plan with the fewest estimated bits (:func:`_estimated_cost`), one with levels only where it saves
    :data:`LEVEL_SAVING` of those of the best without."""
    best = min(plans, key=_estimated_cost)
    plain = [plan for plan in plans if plan["levels"] == 1]
    if best["levels"] == 1 or not plain:
        return best
    without = min(plain, key=_estimated_cost)
    return best if _estimated_cost(best) < (1 - LEVEL_SAVING) * _estimated_cost(without) else without


def _linear_plans(signal: np.ndarray, floor: bool = False, shapes=None) -> list[dict]:
    """:func:`_linear_plan` for each ``(levels, energy bins)`` of ``shapes`` (default :func:`_level_shapes`): the
    prediction is computed once."""
    shapes = _level_shapes(signal.size) if shapes is None else shapes
    planes, h, w = signal.shape
    flat = signal.reshape(planes, -1)
    padded = prediction.with_zero(flat)
    low, high = int(signal.min()), int(signal.max())
    inside = None  # version 3: the pixels the linear predictor predicts, every one but the floor's edge
    if floor:
        edge, means = np.empty(flat.shape, dtype=np.int8), np.empty_like(flat)
        wavefront.floor_edges(padded, h, w, low, edge, means)
        inside = edge == 0

    def predicted(values):  # the values of the linearly predicted pixels (all of them in version 2)
        return values if inside is None else values[inside]

    bins = prediction.activity_bins(signal.size)
    activity = np.empty_like(flat)
    wavefront.linear_activities(padded, h, w, activity)
    activity_thresholds = context_thresholds(predicted(activity), bins)
    num_classes = bins * prediction.ORIENTATIONS
    # the fit sees at most FIT_PIXELS pixels, evenly strided over (plane, pixel): gather only those
    step = max(1, -(-flat.size // prediction.FIT_PIXELS))
    fitted = np.arange(0, flat.size, step)
    if inside is not None:
        fitted = fitted[inside.ravel()[fitted]]
    plane, pixel = np.divmod(fitted, h * w)
    row = plane * (h * w + 1)  # where each fitted pixel's plane starts in the padded planes, flattened
    sources = np.empty((prediction.FEATURES, pixel.size), dtype=np.int64)
    wavefront.neighbour_indices(pixel, h, w, True, sources)
    near = [np.take(padded.ravel(), row + index)[None] for index in sources]
    coefficients = prediction.fit_coefficients(prediction.features(near), flat[plane, pixel][None] - near[0],
                                               prediction.classes(near, activity_thresholds), num_classes)
    errors = np.empty_like(flat)
    wavefront.linear_predictions(padded, h, w, coefficients, activity_thresholds, low, high,
                                 prediction.COEF_BITS, errors)
    kept = errors  # what later pixels' contexts read
    if inside is None:
        np.subtract(flat, errors, out=errors)
    else:
        np.subtract(flat, np.where(inside, errors, means), out=errors)
        at_floor = ~inside & (flat == low)
        kept = np.where(at_floor, 0, errors)  # a floor pixel on the edge leaves no error
    local = np.empty_like(flat)
    wavefront.linear_energies(padded, prediction.with_zero(kept), h, w, local)
    values = flat - errors  # the predictions (the means of the floor's edge in version 3)
    if inside is not None:
        errors = np.where(inside, errors, floor_symbols(errors, at_floor))
    body = (bytes([bins]) + b"".join(varint(int(t)) for t in activity_thresholds)
            + coefficients.astype("<i2").tobytes() + varint(zigzag(low)) + varint(zigzag(high)))
    plans, energy, levels = [], {}, {}  # each count of bins' or levels' thresholds and pixels' bins, computed once
    for count, energy_bins in shapes:
        if energy_bins not in energy:
            thresholds = context_thresholds(predicted(local), energy_bins)
            energy[energy_bins] = thresholds, count_at_most(thresholds, local)
        thresholds, context = energy[energy_bins]
        level_thresholds = np.zeros(0, dtype=np.int64)
        if count > 1:
            if count not in levels:
                levels[count] = _levels(values, inside, count)
            level_thresholds, level = levels[count]
            context = context * count + level
        contexts = energy_bins * count
        if inside is not None:
            context = np.where(inside, context, contexts)
        head = bytes([(LEVELS_FLOOR_MARKER if floor else LEVELS_MARKER) if count > 1
                      else FLOOR_MARKER if floor else LINEAR_MARKER]) + body
        if count > 1:
            head += bytes([count]) + b"".join(varint(zigzag(int(t))) for t in level_thresholds)
        plans.append({"head": head, "errors": errors.reshape(signal.shape), "context": context.reshape(signal.shape),
                      "contexts": contexts + int(floor), "thresholds": thresholds, "row_weight": 2, "levels": count})
    return plans


def _energy_bins(pixels: int, levels: int) -> int:
    """How many bins of error energy a signal of ``pixels`` has beside ``levels`` of the predicted value: at
    least 8, at most :func:`num_contexts`, and within :data:`LEVEL_CONTEXTS` where 8 are."""
    if levels == 1:
        return num_contexts(pixels)
    return max(CONTEXT_BINS[0][1], min(num_contexts(pixels), by_size(LEVEL_CONTEXTS, pixels) // levels))


def _level_shapes(pixels: int, thorough: bool = False) -> list[tuple[int, int]]:
    """The ``(levels, energy bins)`` :func:`encode_signal` tries on a signal of ``pixels``: no levels, and the
    most of :data:`LEVEL_CHOICES` that stay within :data:`LEVEL_CONTEXTS`. Of the radiographs, MR and CT
    measured only the CR extremity saves :data:`LEVEL_SAVING` with levels, and most with the most levels
    (8 of 8 energy bins: 2.6%, 4 of 16: 2.1%); trying one count costs the encoder a third of what trying
    three does. ``thorough``: every count of levels, each beside 8 energy bins (what
    :func:`encode_signal` codes one by one with ``thorough``)."""
    plain = (1, num_contexts(pixels))
    if thorough:
        return [plain] + [(k, CONTEXT_BINS[0][1]) for k in LEVEL_CHOICES[1:]]
    count = max(k for k in LEVEL_CHOICES if _energy_bins(pixels, k) * k <= by_size(LEVEL_CONTEXTS, pixels))
    return [plain, (count, _energy_bins(pixels, count))]


def _levels(values: np.ndarray, inside: np.ndarray | None, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Version 4's ``count`` levels of the predicted ``values``: their thresholds (sent), at quantiles of the
    predicted pixels' (``inside``; version 3's floor edge takes a context of its own), and every pixel's level.

    X-ray noise grows with the signal (quantum noise), so a pixel's error spreads with its
    brightness as well as with its neighbours' errors: on the WG04 CR extremity 8 levels take 2.6%
    fewer bits, 0.1-0.5% on the chest radiographs, MR and CT, and on a learned codec's latent channels
    2-8% (every count tried, :func:`encode_signal`'s ``thorough``).
    """
    thresholds = context_thresholds(values if inside is None else values[inside], count)
    return thresholds, count_at_most(thresholds, values)


def _decode_linear(r: Reader, payload: bytes, shape) -> np.ndarray:
    marker = r.take(1, "predictor version")[0]
    floor = marker in (FLOOR_MARKER, LEVELS_FLOOR_MARKER)
    bins = r.take(1, "activity bins")[0]
    if bins not in {b for _, b in prediction.ACTIVITY_BINS}:
        raise DataError(f"the residual payload names an unknown number of predictor classes ({bins})")
    activity_thresholds = _thresholds([r.varint("activity threshold") for _ in range(bins - 1)], "activity")
    num_classes = bins * prediction.ORIENTATIONS
    coefficients = np.frombuffer(r.take(2 * num_classes * prediction.FEATURES, "predictor coefficients"),
                                 dtype="<i2").astype(np.int64).reshape(num_classes, prediction.FEATURES)
    low, high = r.signed("lowest value"), r.signed("highest value")
    if not -2 ** 63 <= low <= high < 2 ** 63:
        raise DataError(f"the residual payload's value range [{low}, {high}] is not one of 64-bit integers")
    level_thresholds = np.zeros(0, dtype=np.int64)
    if marker in (LEVELS_MARKER, LEVELS_FLOOR_MARKER):
        levels = r.take(1, "predicted-value levels")[0]
        if levels not in LEVEL_CHOICES[1:]:
            raise DataError(f"the residual payload names an unknown number of predicted-value levels ({levels})")
        level_thresholds = _thresholds([r.signed("level threshold") for _ in range(levels - 1)], "level")
    errors_in = _ErrorDecoder(r, payload, extra_contexts=int(floor), levels=len(level_thresholds) + 1)
    edge_context = errors_in.contexts - 1 if floor else -1
    planes, h, w = shape
    signal = np.zeros((planes, h * w + 1), dtype=np.int64)  # the last column: the zero outside the image
    errors = np.zeros((planes, h * w + 1), dtype=np.int64)
    errors_in.decode_steps(
        2 * (h - 1) + w, lambda t, *out: wavefront.linear_floor_step(
            signal, errors, t, h, w, coefficients, activity_thresholds, errors_in.thresholds,
            level_thresholds, low, high, prediction.COEF_BITS, edge_context, *out),
        signal, errors, longest=min(h, (w + 1) // 2 + 1),  # the most pixels a wavefront holds (per plane)
        floor=(edge_context, low) if floor else None)
    return signal[:, :-1].reshape(shape)


def decode_signal(payload: bytes, shape) -> np.ndarray:
    """Inverse of :func:`encode_signal` (and of :func:`encode_signal_med`): the integer planes (P, H, W)."""
    r = Reader(payload)
    if payload[:1] and payload[0] in (LINEAR_MARKER, FLOOR_MARKER, LEVELS_MARKER, LEVELS_FLOOR_MARKER):
        return _decode_linear(r, payload, shape)
    return _decode_med(r, payload, shape)
