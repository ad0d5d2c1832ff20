"""Range coding of the scale-hyperprior codec's latents, decodable bit for bit on any machine.

A :class:`~medzoo.models.hyperprior.HyperpriorCodec` turns an image into two integer
tensors: the latent ``y`` (H/16 per side, ``m`` channels) and the hyper-latent ``z``
(H/64, ``n`` channels). The stream holds ``z`` coded with the learned factorized
density (one table per channel), then ``y`` coded with a zero-mean Gaussian whose
scale the hyper-synthesis predicts from ``z``.

What the decoder recomputes must match the encoder to the bit, on another
processor, backend or batch size. :class:`CodingTables` therefore builds all of it
with :mod:`medzoo.codec.exact`, from the weights alone:

* the hyper-synthesis runs as an :class:`~medzoo.codec.exact.IntegerNetwork`
  (fixed point, exact integer sums), giving integer scale logits;
* each logit maps to one of :data:`SCALE_LEVELS` scales (log-spaced from
  :data:`SCALE_MIN` to :data:`SCALE_MAX`) by comparing integers with integer
  thresholds: the table *index* is what travels between encoder and decoder, never
  a float scale;
* each index has a probability table over ``[-T, T]`` plus an escape symbol, from
  :func:`~medzoo.codec.exact.gaussian_cdf`, quantised to integer frequencies; ``z``'s
  per-channel tables come from the bottleneck's cumulative network evaluated
  with exact arithmetic. Values outside a table's range are coded as the escape
  symbol followed by the value (16 bits, uniform).

Only the synthesis transform (integer latent -> pixels) runs in floating point, as
in every learned codec: its output may differ in the last float bits between
machines, which moves a lossy reconstruction by far less than one grey level.

Coding order (the decoder's): ``z`` channel by channel (all images at once), then
``y`` grouped by scale index, each group in row-major order of (image, row,
column, channel), escapes after their group. ``constriction``'s ANS coder is a
stack, so the encoder pushes the groups in the reverse order.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from medzoo.codec import exact
from medzoo.codec.bitio import range_coder
from medzoo.errors import ConfigError

#: the scale table: SCALE_LEVELS scales, log-spaced from SCALE_MIN to SCALE_MAX
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 64.0, 64
#: each scale's table covers [-T, T] with T = ceil(TAIL * scale); beyond it: escape + 16 bits
TAIL = 8.0
#: z's tables cover [-Z_RANGE, Z_RANGE]
Z_RANGE = 63
#: frequencies are integers out of about 2^FREQUENCY_BITS
FREQUENCY_BITS = 24
#: coded values (escapes included) are clipped to +-ESCAPE_LIMIT
ESCAPE_LIMIT = 32767


def _frequencies(pmf: np.ndarray) -> np.ndarray:
    """Probabilities (rows) -> exactly normalised float64 rows of integer frequencies, none zero."""
    freq = np.maximum(np.floor(np.ldexp(np.maximum(pmf, 0.0), FREQUENCY_BITS)), 1.0)
    total = np.cumsum(freq, axis=-1)[..., -1:]  # integers below 2^53: exact in any order
    return freq / total


def scale_table() -> np.ndarray:
    """The SCALE_LEVELS scales (float64, the same on every machine)."""
    lo, hi = exact.log(np.array([SCALE_MIN]))[0], exact.log(np.array([SCALE_MAX]))[0]
    steps = np.arange(SCALE_LEVELS, dtype=np.float64) / (SCALE_LEVELS - 1)
    return exact.exp(lo + (hi - lo) * steps)


def scale_thresholds(fraction_bits: int = exact.ACTIVATION_BITS) -> np.ndarray:
    """Integer thresholds on the fixed-point logits: index = how many thresholds are <= the logit.

    Between scales k and k+1 the boundary is their geometric mean ``g``; the logit whose
    softplus is ``g`` is ``log(exp(g) - 1)``.
    """
    s = scale_table()
    middle = np.sqrt(s[:-1] * s[1:])
    logits = exact.log(exact.exp(middle) - 1.0)
    return np.ceil(np.ldexp(logits, fraction_bits))


def gaussian_tables() -> list[np.ndarray]:
    """Per scale index: probabilities of ``-T..T`` then the escape (float64 rows summing to 1)."""
    tables = []
    for s in scale_table():
        t = int(np.ceil(TAIL * s))
        edges = np.arange(-t, t + 2, dtype=np.float64) - 0.5  # bin edges of -t..t
        cdf = exact.gaussian_cdf(edges / s)
        pmf = cdf[1:] - cdf[:-1]
        escape = cdf[0] + (1.0 - cdf[-1])
        tables.append(_frequencies(np.concatenate([pmf, [escape]])))
    return tables


def bottleneck_tables(bottleneck) -> np.ndarray:
    """The factorized density of ``z`` per channel: (channels, 2 Z_RANGE + 2), the escape last."""
    matrices = [np.asarray(m.numpy(), dtype=np.float64) for m in bottleneck.matrices]
    biases = [np.asarray(b.numpy(), dtype=np.float64) for b in bottleneck.biases]
    factors = [np.asarray(f.numpy(), dtype=np.float64) for f in bottleneck.factors]
    edges = np.arange(-Z_RANGE, Z_RANGE + 2, dtype=np.float64) - 0.5
    logits = np.broadcast_to(edges, (matrices[0].shape[0], 1, len(edges)))  # (C, 1, E)
    for k, (matrix, bias) in enumerate(zip(matrices, biases)):
        weight = exact.softplus(matrix)  # (C, out, in)
        out = np.zeros((weight.shape[0], weight.shape[1], logits.shape[-1]))
        for i in range(weight.shape[2]):  # a fixed summation order
            out = out + weight[:, :, i:i + 1] * logits[:, i:i + 1, :]
        logits = out + bias
        if k < len(factors):
            logits = logits + exact.tanh(factors[k]) * exact.tanh(logits)
    cdf = exact.sigmoid(logits[:, 0, :])
    pmf = cdf[:, 1:] - cdf[:, :-1]
    escape = cdf[:, :1] + (1.0 - cdf[:, -1:])
    return _frequencies(np.concatenate([pmf, escape], axis=1))


class CodingTables:
    """What encoder and decoder must share, built exactly from a codec's weights (see the module docstring).

    Attributes:
        hyper: the integer hyper-synthesis.
        thresholds: integer thresholds from logits to scale indices.
        y_tables: per scale index, probabilities of ``-T..T`` and the escape.
        z_tables: per channel of ``z``, probabilities of ``-Z_RANGE..Z_RANGE`` and the escape.
        digest: sha256 (hex) over all of them; a stream stores its first bytes.
    """

    def __init__(self, model):
        self.hyper = exact.IntegerNetwork(model.hyper_synthesis)
        self.thresholds = scale_thresholds()
        self.y_tables = gaussian_tables()
        self.z_tables = bottleneck_tables(model.entropy_bottleneck)
        digest = hashlib.sha256()
        for array in self.hyper.arrays():
            digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        for array in (self.thresholds, *self.y_tables, self.z_tables):
            digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        self.digest = digest.hexdigest()
        self._synthesis = {}  # quality -> IntegerNetwork, built on first use

    def scale_indices(self, z_hat) -> np.ndarray:
        """Integer hyper-latents (N, h, w, n) -> the scale index of every element of y (N, 4h, 4w, m)."""
        logits = self.hyper(z_hat)
        return np.searchsorted(self.thresholds, logits, side="right").astype(np.int64)

    def synthesis(self, model, quality: int) -> exact.IntegerNetwork:
        """The integer synthesis of one quality level (its inverse gains folded in), built once."""
        if quality not in self._synthesis:
            gains = np.asarray(model.inverse_gains.numpy(), dtype=np.float64)[quality]
            self._synthesis[quality] = exact.IntegerNetwork(model.synthesis, input_scale=gains)
        return self._synthesis[quality]

    def reconstruct(self, model, y_hat, quality: int, batch_size: int = 4) -> np.ndarray:
        """Integer latents -> the reconstruction in fixed point (ACTIVATION_BITS fractional bits), exact."""
        net = self.synthesis(model, quality)
        return np.concatenate([net(y_hat[i:i + batch_size]) for i in range(0, len(y_hat), batch_size)])

    @functools.cached_property
    def _y_models(self):
        family = range_coder().stream.model.Categorical
        return [family(p, perfect=False) for p in self.y_tables]

    @functools.cached_property
    def _z_models(self):
        family = range_coder().stream.model.Categorical
        return [family(p, perfect=False) for p in self.z_tables]

    def ideal_bits(self, y_hat, z_hat) -> float:
        """Ideal code length of integer latents under the tables, in bits (escapes at 16 bits each).

        A coded payload is this plus a few bytes: the yardstick of the range coder's overhead.
        """
        y_hat, z_hat = np.asarray(y_hat, dtype=np.int64), np.asarray(z_hat, dtype=np.int64)
        indices = self.scale_indices(z_hat)
        pairs = [(z_hat[..., c].ravel(), table) for c, table in enumerate(self.z_tables)]
        pairs += [(y_hat[indices == k], table) for k, table in enumerate(self.y_tables)]
        bits = 0.0
        for values, table in pairs:
            symbols, escapes = _symbols(values, (len(table) - 2) // 2)
            bits += float(-np.log2(table[symbols]).sum()) + 16.0 * escapes.size
        return bits


# ------------------------------------------------------------------ payload
def _symbols(values: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Values -> (table symbols with escapes, the escaped values as 16-bit offsets)."""
    escaped = np.abs(values) > half
    symbols = np.where(escaped, 2 * half + 1, values + half).astype(np.int32)
    return symbols, (values[escaped] + ESCAPE_LIMIT + 1).astype(np.int32)


def _groups(tables: CodingTables, z_hat: np.ndarray, y_hat: np.ndarray, indices: np.ndarray):
    """The (symbols, model) chunks in decoding order."""
    uniform = range_coder().stream.model.Uniform(2 * ESCAPE_LIMIT + 2)
    for c, model in enumerate(tables._z_models):
        symbols, escapes = _symbols(z_hat[..., c].ravel(), Z_RANGE)
        yield symbols, model
        yield escapes, uniform
    flat_y, flat_i = y_hat.ravel(), indices.ravel()
    for k, model in enumerate(tables._y_models):
        values = flat_y[flat_i == k]
        if values.size:
            symbols, escapes = _symbols(values, (len(tables.y_tables[k]) - 2) // 2)
            yield symbols, model
            yield escapes, uniform


def encode_latents(tables: CodingTables, y_hat, z_hat) -> tuple[bytes, np.ndarray]:
    """Integer latents -> ``(payload bytes, y as coded)``; values beyond +-ESCAPE_LIMIT are clipped."""
    z_hat = np.clip(np.asarray(z_hat, dtype=np.int64), -ESCAPE_LIMIT, ESCAPE_LIMIT)
    y_hat = np.clip(np.asarray(y_hat, dtype=np.int64), -ESCAPE_LIMIT, ESCAPE_LIMIT)
    indices = tables.scale_indices(z_hat)
    if indices.shape != y_hat.shape:
        raise ConfigError(f"the hyper-synthesis gives scales of shape {indices.shape} for y of shape {y_hat.shape}")
    coder = range_coder().stream.stack.AnsCoder()
    for symbols, model in reversed(list(_groups(tables, z_hat, y_hat, indices))):
        if symbols.size:
            coder.encode_reverse(symbols, model)
    return coder.get_compressed().astype("<u4").tobytes(), y_hat


def decode_latents(tables: CodingTables, payload: bytes, num_images: int, z_shape, y_shape) -> tuple:
    """Inverse of :func:`encode_latents`: ``(y_hat, z_hat)`` int64 of the given (h, w, C) shapes."""
    constriction = range_coder()
    if len(payload) % 4:
        raise ConfigError("a hyperprior payload is whole 32-bit words")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    uniform = constriction.stream.model.Uniform(2 * ESCAPE_LIMIT + 2)

    def take(count, model, half):
        symbols = coder.decode(model, int(count)).astype(np.int64) if count else np.zeros(0, np.int64)
        values = symbols - half
        escaped = symbols == 2 * half + 1
        if escaped.any():
            values[escaped] = coder.decode(uniform, int(escaped.sum())).astype(np.int64) - ESCAPE_LIMIT - 1
        return values

    z_hat = np.zeros((num_images, *z_shape), dtype=np.int64)
    per_channel = num_images * z_shape[0] * z_shape[1]
    for c, model in enumerate(tables._z_models):
        z_hat[..., c] = take(per_channel, model, Z_RANGE).reshape(num_images, *z_shape[:2])
    indices = tables.scale_indices(z_hat)
    if indices.shape[1:] != tuple(y_shape):
        raise ConfigError(f"the stream's latent shape {tuple(y_shape)} does not fit the model "
                          f"(its hyper-synthesis gives {indices.shape[1:]})")
    flat = np.zeros(indices.size, dtype=np.int64)
    flat_i = indices.ravel()
    for k, model in enumerate(tables._y_models):
        where = np.flatnonzero(flat_i == k)
        if where.size:
            flat[where] = take(where.size, model, (len(tables.y_tables[k]) - 2) // 2)
    return flat.reshape(indices.shape), z_hat


# ------------------------------------------------------------------- models
def latent_shapes(model, image_shape) -> tuple[tuple, tuple]:
    """``(y_shape, z_shape)`` as (h, w, C) for an image of ``image_shape`` (H, W[, C])."""
    h, w = (int(v) for v in image_shape[:2])
    y_h, y_w = model.latent_size(h, w)
    factor = model.downsample_factor // 16
    return (y_h, y_w, model.m), (y_h // factor, y_w // factor, model.n)


def tables_for(model) -> tuple[CodingTables, str]:
    """The model's :class:`CodingTables` and weights fingerprint, built once per set of weights.

    Cached on the model and keyed by the fingerprint, so a model that is trained
    further gets new tables, and repeated ``compress`` calls pay only the coding.
    """
    from medzoo.codec.entropy import weights_fingerprint

    fingerprint = weights_fingerprint(model)
    cached = getattr(model, "_medzoo_coding_tables", None)
    if cached is None or cached[1] != fingerprint:
        cached = (CodingTables(model), fingerprint)
        model._medzoo_coding_tables = cached
    return cached
