"""Arithmetic that gives the same bits on every machine: the decoder's side of a learned codec.

A range decoder needs exactly the probabilities the encoder used; one ulp of
difference in one table entry can derail the rest of a stream. Neural networks on
different processors, backends or batch sizes do not give identical floats, and
neither do the platform's ``exp``, ``log`` and ``erf``. So everything a decoder
recomputes is built here from operations that IEEE 754 rounds correctly, and
therefore identically, everywhere: ``+ - * /``, ``sqrt``, ``floor``, ``frexp`` and
``ldexp``, applied elementwise by numpy in float64 (no ``np.sum`` or ``np.dot`` of
non-integers, whose summation order depends on the build).

* :func:`exp`, :func:`log`, :func:`softplus`, :func:`sigmoid`, :func:`tanh`,
  :func:`gaussian_cdf` - transcendental functions from basic operations (range
  reduction and polynomials); accurate to about 1e-15 (``gaussian_cdf`` 1.2e-7), and
  above all reproducible.
* :class:`IntegerNetwork` - a Keras stack of ``Conv2D`` / ``Conv2DTranspose`` (ReLU or
  linear) and inverse GDN layers run in fixed point: weights rounded to integers,
  activations to integers, every convolution a float64 matrix product of integers
  whose sums stay below 2^53 - exact whatever order BLAS adds them in; IGDN's square
  root is IEEE's correctly rounded ``sqrt`` of an integer, floored.
"""

from __future__ import annotations

import numpy as np

from medzoo.errors import ConfigError

_LN2 = 0.6931471805599453
_SQRT1_2 = 0.7071067811865476
#: Taylor coefficients 1/k! of exp on |r| <= ln2 / 2, highest first (Horner)
_EXP_COEFFS = tuple(1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(17, -1, -1))


def exp(x) -> np.ndarray:
    """``e**x`` elementwise, the same bits on every IEEE machine (inputs clipped to [-745, 709])."""
    x = np.clip(np.asarray(x, dtype=np.float64), -745.0, 709.0)
    k = np.floor(x / _LN2 + 0.5)
    r = x - k * _LN2
    p = np.full_like(r, _EXP_COEFFS[0])
    for c in _EXP_COEFFS[1:]:
        p = p * r + c
    return np.ldexp(p, k.astype(np.int64))


def log(x) -> np.ndarray:
    """Natural logarithm of positive ``x`` elementwise (``frexp`` + the atanh series)."""
    x = np.asarray(x, dtype=np.float64)
    if np.any(~(x > 0)):
        raise ConfigError("exact.log needs positive finite inputs")
    m, e = np.frexp(x)  # x = m 2^e, m in [0.5, 1)
    small = m < _SQRT1_2
    m = np.where(small, m * 2.0, m)  # m in [0.707, 1.414)
    e = np.where(small, e - 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)  # |s| < 0.172
    s2 = s * s
    p = np.full_like(s, 1.0 / 41.0)
    for k in range(39, 0, -2):
        p = p * s2 + 1.0 / k
    return 2.0 * s * p + e * _LN2


def softplus(x) -> np.ndarray:
    """``log(1 + e**x)`` elementwise."""
    x = np.asarray(x, dtype=np.float64)
    return np.maximum(x, 0.0) + log(1.0 + exp(-np.abs(x)))


def sigmoid(x) -> np.ndarray:
    """``1 / (1 + e**-x)`` elementwise."""
    return 1.0 / (1.0 + exp(-np.asarray(x, dtype=np.float64)))


def tanh(x) -> np.ndarray:
    """Hyperbolic tangent elementwise (``2 sigmoid(2x) - 1``)."""
    return 2.0 * sigmoid(2.0 * np.asarray(x, dtype=np.float64)) - 1.0


#: Chebyshev fit of erfc (Numerical Recipes' ``erfcc``, fractional error < 1.2e-7), highest first
_ERFC_COEFFS = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418,
                0.37409196, 1.00002368, -1.26551223)


def gaussian_cdf(x) -> np.ndarray:
    """The standard normal distribution function elementwise (relative error < 1.2e-7 in the tails)."""
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x) * _SQRT1_2
    t = 1.0 / (1.0 + 0.5 * z)
    p = np.full_like(t, _ERFC_COEFFS[0])
    for c in _ERFC_COEFFS[1:]:
        p = p * t + c
    erfc = t * exp(-z * z + p)
    return np.where(x >= 0, 1.0 - 0.5 * erfc, 0.5 * erfc)


# ------------------------------------------------------------ fixed point
#: fractional bits of the activations between layers
ACTIVATION_BITS = 12
#: activations are clipped to +-2^ACTIVATION_LIMIT_BITS (in fixed point: +-1024 in real units)
ACTIVATION_LIMIT_BITS = 22
#: weights are rounded to integers below 2^WEIGHT_BITS in magnitude
WEIGHT_BITS = 15
_EXACT_LIMIT = 2.0 ** 53


def _weight_shift(values: np.ndarray) -> int:
    """Fractional bits that put the largest weight just below 2^WEIGHT_BITS (frexp: exact)."""
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    if peak == 0.0:
        return 0
    return WEIGHT_BITS - int(np.frexp(peak)[1])


class _IntegerLayer:
    """One convolution in fixed point; ``kernel`` (kh, kw, cin, cout) of integers, as a correlation."""

    def __init__(self, kernel, bias, shift, stride, transposed, relu, input_bits, name):
        self.kernel, self.bias, self.shift = kernel, bias, shift
        self.stride, self.transposed, self.relu, self.input_bits, self.name = stride, transposed, relu, input_bits, name
        fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
        input_limit = 2.0 ** (ACTIVATION_LIMIT_BITS if input_bits else 16)
        if fan_in * input_limit * 2.0 ** WEIGHT_BITS + float(np.max(np.abs(bias), initial=0)) >= _EXACT_LIMIT:
            raise ConfigError(f"layer {name} is too wide to run exactly in float64 (fan-in {fan_in})")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        kh, kw = self.kernel.shape[:2]
        s = self.stride
        n, h, w, c = x.shape
        if self.transposed:  # zero insertion, then a correlation with the flipped kernel
            up = np.zeros((n, h * s, w * s, c), dtype=np.float64)
            up[:, ::s, ::s] = x
            # TF's "same" transposed convolution is the gradient of a "same" convolution that pads
            # max(k - s, 0) // 2 before: the correlation pads k - 1 - that before and that after
            fwd_h, fwd_w = max(kh - s, 0) // 2, max(kw - s, 0) // 2
            x = np.pad(up, ((0, 0), (kh - 1 - fwd_h, fwd_h), (kw - 1 - fwd_w, fwd_w), (0, 0)))
            stride = 1
            out_h, out_w = h * s, w * s
        else:  # "same" padding as TensorFlow: the extra pixel goes after
            out_h, out_w = -(-h // s), -(-w // s)
            pad_h = max((out_h - 1) * s + kh - h, 0)
            pad_w = max((out_w - 1) * s + kw - w, 0)
            x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
            stride = s
        out = np.empty((n, out_h, out_w, self.kernel.shape[-1]), dtype=np.float64)
        rows = max(1, (1 << 22) // max(1, out_w * kh * kw * c))  # bounded memory per chunk of output rows
        for r0 in range(0, out_h, rows):
            r1 = min(out_h, r0 + rows)
            patch = x[:, r0 * stride:(r1 - 1) * stride + kh]
            windows = np.lib.stride_tricks.sliding_window_view(patch, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
            windows = windows[:, :r1 - r0, :out_w]  # (n, rows, out_w, c, kh, kw)
            out[:, r0:r1] = np.tensordot(windows, self.kernel, axes=([4, 5, 3], [0, 1, 2]))
        out += self.bias
        # back to ACTIVATION_BITS fractional bits: an exact division by a power of two, then floor
        out = np.floor(np.ldexp(out, -self.shift))
        if self.relu:
            out = np.maximum(out, 0.0)
        limit = 2.0 ** ACTIVATION_LIMIT_BITS
        return np.clip(out, -limit, limit)


class _IntegerIGDN:
    """Inverse GDN, ``x * sqrt(beta + gamma^T x^2)``, in fixed point.

    ``x`` (ACTIVATION_BITS fractional bits) is cut to 6 fractional bits and clipped to
    +-2^15 before squaring, so ``gamma^T x^2`` (gamma at ``2^g``, below 2^15) sums at most
    C * 2^45 - exact for up to 128 channels.
    """

    SQUARE_BITS = 6
    LIMIT = 2.0 ** 15

    def __init__(self, layer):
        beta = softplus(np.asarray(layer.beta_raw.numpy(), dtype=np.float64)) + 1e-6
        gamma = softplus(np.asarray(layer.gamma_raw.numpy(), dtype=np.float64))
        channels = gamma.shape[0]
        if channels * self.LIMIT ** 2 * 2.0 ** WEIGHT_BITS >= _EXACT_LIMIT:
            raise ConfigError(f"layer {layer.name}: {channels} channels are too many to run IGDN exactly")
        self.g = _weight_shift(gamma)
        self.g -= (self.g + 2 * self.SQUARE_BITS) % 2  # the norm's scale 2^(2s + g) must have an even exponent
        self.gamma = np.round(np.ldexp(gamma, self.g))
        self.beta = np.round(np.ldexp(beta, self.g + 2 * self.SQUARE_BITS))
        self.root_bits = (self.g + 2 * self.SQUARE_BITS) // 2
        self.name = layer.name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        small = np.clip(np.floor(np.ldexp(x, self.SQUARE_BITS - ACTIVATION_BITS)), -self.LIMIT, self.LIMIT)
        norm = np.tensordot(small * small, self.gamma, axes=([3], [0])) + self.beta
        root = np.floor(np.sqrt(norm))  # correctly rounded sqrt of an exact integer: the same everywhere
        out = np.floor(np.ldexp(x * root, -self.root_bits))
        limit = 2.0 ** ACTIVATION_LIMIT_BITS
        return np.clip(out, -limit, limit)


class IntegerNetwork:
    """A Keras model of ``Conv2D`` / ``Conv2DTranspose`` (ReLU or no activation) and inverse GDN, in fixed point.

    The input is integers (a quantised latent); the output has :data:`ACTIVATION_BITS`
    fractional bits: ``net(z) / 2**ACTIVATION_BITS`` approximates ``model(z * input_scale)``
    to about 1e-3, and is the same integer array on every machine, backend and batch size.

    Args:
        model: the Keras model (layers in sequence).
        input_scale: optional per-channel factors applied to the input (folded into the
            first layer's kernel; e.g. a codec's inverse gains).
    """

    def __init__(self, model, input_scale=None):
        import keras

        self.layers = []
        input_bits = 0
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if getattr(layer, "inverse", None) is True and hasattr(layer, "gamma_raw"):
                if not self.layers:
                    raise ConfigError("IntegerNetwork needs a convolution before an IGDN layer")
                self.layers.append(_IntegerIGDN(layer))
                continue
            transposed = isinstance(layer, keras.layers.Conv2DTranspose)
            if not isinstance(layer, keras.layers.Conv2D) and not transposed:
                raise ConfigError(f"IntegerNetwork runs convolutions and inverse GDN only, not {type(layer).__name__}")
            activation = getattr(layer.activation, "__name__", str(layer.activation))
            if activation not in ("relu", "linear"):
                raise ConfigError(f"IntegerNetwork supports relu or linear activations, not {activation}")
            if layer.padding != "same" or layer.strides[0] != layer.strides[1] or layer.dilation_rate != (1, 1):
                raise ConfigError(f"layer {layer.name}: only 'same' padding with square strides is supported")
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
            if transposed:  # (kh, kw, out, in) -> the equivalent correlation's (kh, kw, in, out), flipped
                kernel = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
            if input_scale is not None and not self.layers:
                kernel = kernel * np.asarray(input_scale, dtype=np.float64).reshape(1, 1, -1, 1)
            shift = _weight_shift(kernel)
            bias = layer.bias.numpy() if layer.use_bias else np.zeros(kernel.shape[-1])
            # integers: the kernel at 2^shift, the bias at the accumulator's scale 2^(input_bits + shift)
            kernel_int = np.round(np.ldexp(kernel, shift))
            bias_int = np.round(np.ldexp(np.asarray(bias, dtype=np.float64), input_bits + shift))
            self.layers.append(_IntegerLayer(kernel_int, bias_int, input_bits + shift - ACTIVATION_BITS,
                                             int(layer.strides[0]), transposed, activation == "relu",
                                             input_bits, layer.name))
            input_bits = ACTIVATION_BITS

    def arrays(self):
        """Every integer array and shift of the network, in order (for digests)."""
        for layer in self.layers:
            if isinstance(layer, _IntegerIGDN):
                yield from (layer.gamma, layer.beta, np.array([layer.g, layer.root_bits], dtype=np.float64))
            else:
                yield from (layer.kernel, layer.bias, np.array([layer.shift, layer.stride], dtype=np.float64))

    def __call__(self, z) -> np.ndarray:
        """Integers (N, h, w, C) -> fixed-point output (float64 holding integers)."""
        x = np.asarray(z, dtype=np.float64)
        if np.any(np.abs(x) > 2.0 ** 16) or np.any(x != np.floor(x)):
            raise ConfigError("IntegerNetwork takes integers below 2^16 in magnitude")
        for layer in self.layers:
            x = layer(x)
        return x
