"""The layers of a learned image codec: GDN and the two entropy models of the scale hyperprior.

* :class:`GDN` - generalized divisive normalization (Balle et al., 2016), the codec
  transforms' nonlinearity; ``inverse=True`` gives IGDN for the synthesis transform.
* :class:`EntropyBottleneck` - a learned, factorized density per channel (Balle et al.,
  2018, appendix 6.1): a small monotonic network is the cumulative distribution, so the
  likelihood of a value quantised to integers is ``c(x + 1/2) - c(x - 1/2)``. It models
  the hyper-latent ``z``, which nothing else describes, and the latent of an autoencoder
  trained for rate (:class:`~medzoo.models.autoencoder.ConvAutoencoder`'s ``rate_steps``),
  with bins as wide as its quantisation step.
* :func:`gaussian_likelihood` - the latent ``y`` given the scales the hyper-decoder
  predicts: a zero-mean Gaussian convolved with a unit uniform, i.e. the probability
  of the integer bin around each value.

All in ``keras.ops``: the same code trains on every backend. The codec package
(:mod:`medzoo.codec`) turns the trained densities into the integer tables that the
range coder needs.
"""

from __future__ import annotations

import math

import numpy as np
import keras
from keras import ops

#: smallest likelihood a value may get (its rate is then about 30 bits)
LIKELIHOOD_BOUND = 1e-9
#: smallest scale of the Gaussian conditional (below it a bin's mass is ~1 anyway)
SCALE_BOUND = 0.11


def _softplus_inverse(y: float) -> float:
    return float(np.log(np.expm1(y)))


@keras.saving.register_keras_serializable(package="medzoo")
class GDN(keras.layers.Layer):
    """``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)`` (or times the root for ``inverse=True``).

    ``beta`` and ``gamma`` are kept positive through a softplus; they start at the
    identity-like values of the reference implementations (beta 1, gamma 0.1 I).
    """

    def __init__(self, inverse=False, **kwargs):
        super().__init__(**kwargs)
        self.inverse = bool(inverse)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        eye = np.eye(channels, dtype="float32")
        self.beta_raw = self.add_weight(name="beta", shape=(channels,),
                                        initializer=keras.initializers.Constant(_softplus_inverse(1.0)))
        gamma = eye * _softplus_inverse(0.1) + (1 - eye) * _softplus_inverse(1e-6)
        self.gamma_raw = self.add_weight(name="gamma", shape=(channels, channels),
                                         initializer=keras.initializers.Constant(gamma))
        self.built = True

    def call(self, x):
        beta = ops.softplus(self.beta_raw) + 1e-6
        gamma = ops.softplus(self.gamma_raw)
        norm = ops.matmul(ops.square(x), ops.cast(gamma, x.dtype)) + ops.cast(beta, x.dtype)
        return x * ops.sqrt(norm) if self.inverse else x * ops.rsqrt(norm)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "inverse": self.inverse}


@keras.saving.register_keras_serializable(package="medzoo")
class EntropyBottleneck(keras.layers.Layer):
    """A learned, factorized density per channel; ``likelihood(x)`` is the mass of ``[x - 1/2, x + 1/2]``.

    Args:
        filters: hidden widths of each channel's cumulative network (Balle et al. use (3, 3, 3)).
        init_scale: the densities start as wide as this.
    """

    def __init__(self, filters=(3, 3, 3), init_scale=10.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        dims = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        self.matrices, self.biases, self.factors = [], [], []
        for k in range(len(dims) - 1):
            init = _softplus_inverse(1.0 / scale / dims[k + 1])
            self.matrices.append(self.add_weight(name=f"matrix{k}", shape=(channels, dims[k + 1], dims[k]),
                                                 initializer=keras.initializers.Constant(init)))
            self.biases.append(self.add_weight(name=f"bias{k}", shape=(channels, dims[k + 1], 1),
                                               initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=k)))
            if k < len(dims) - 2:
                self.factors.append(self.add_weight(name=f"factor{k}", shape=(channels, dims[k + 1], 1),
                                                    initializer="zeros"))
        self.channels = channels
        self.built = True

    def logits_cumulative(self, values):
        """The cumulative's logits for ``values`` of shape (channels, 1, n), float32."""
        logits = values
        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            logits = ops.matmul(ops.softplus(matrix), logits) + bias
            if k < len(self.factors):
                logits = logits + ops.tanh(self.factors[k]) * ops.tanh(logits)
        return logits

    def likelihood(self, x, width=None):
        """Per-element probability of the bin around each value of ``x`` (N, H, W, C).

        The bin is a unit one, or ``width`` wide (a tensor that broadcasts to ``x``, e.g. one
        quantisation step per image (N, 1, 1, 1)): then the density is of ``x`` itself and a
        step ``s`` rounds ``x / s``, so one density prices every step of a variable-rate latent.
        """
        x = ops.cast(x, "float32")
        shape = ops.shape(x)
        values = ops.reshape(ops.transpose(x, (3, 0, 1, 2)), (self.channels, 1, -1))
        half = 0.5
        if width is not None:
            width = ops.broadcast_to(ops.cast(width, "float32"), shape)
            half = 0.5 * ops.reshape(ops.transpose(width, (3, 0, 1, 2)), (self.channels, 1, -1))
        lower = self.logits_cumulative(values - half)
        upper = self.logits_cumulative(values + half)
        sign = -ops.sign(lower + upper)  # evaluate on the side of the median where the sigmoid is small
        sign = ops.where(ops.equal(sign, 0.0), ops.ones_like(sign), sign)
        mass = ops.abs(ops.sigmoid(sign * upper) - ops.sigmoid(sign * lower))
        mass = ops.reshape(mass, (self.channels, shape[0], shape[1], shape[2]))
        return ops.maximum(ops.transpose(mass, (1, 2, 3, 0)), LIKELIHOOD_BOUND)

    def cdf_table(self, low: int, high: int) -> np.ndarray:
        """``c(k + 1/2)`` for the integers k in ``[low - 1, high]``, per channel: (channels, high - low + 2), numpy."""
        grid = np.arange(low - 1, high + 1, dtype=np.float32) + 0.5
        values = np.broadcast_to(grid, (self.channels, 1, len(grid)))
        return ops.convert_to_numpy(ops.sigmoid(self.logits_cumulative(ops.convert_to_tensor(values))))[:, 0]

    def call(self, x):
        return self.likelihood(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "filters": list(self.filters), "init_scale": self.init_scale}


def gaussian_likelihood(y, scales):
    """Probability of the unit bin around each value of ``y`` under N(0, scale^2), per element."""
    y = ops.cast(y, "float32")
    scales = ops.maximum(ops.cast(scales, "float32"), SCALE_BOUND)
    values = ops.abs(y)
    inv = 1.0 / (math.sqrt(2.0) * scales)
    upper = 0.5 * (1.0 + ops.erf((0.5 - values) * inv))
    lower = 0.5 * (1.0 + ops.erf((-0.5 - values) * inv))
    return ops.maximum(upper - lower, LIKELIHOOD_BOUND)
