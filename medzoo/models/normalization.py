"""GroupNorm with a fused kernel on PyTorch and TensorFlow: the same layer, weights and numbers, in fewer passes.

Keras computes ``GroupNormalization`` from generic ops (mean, square, mean, scale,
shift): about five passes over every feature map, a quarter of an any-size model's
time on two CPU cores (``benchmarks/native_speed.py --profile``). This subclass
computes the same function in one fused kernel where the backend has one:

* PyTorch: ``torch.nn.functional.group_norm`` on the channels-last map seen as
  channels-first (a view, no copy: ATen's CPU kernel reads channels-last), in
  training too (its backward is fused as well);
* TensorFlow: the same arithmetic in a function XLA compiles (one fused loop for the
  statistics, one for the output), inside the surrounding graph whose convolutions
  stay TensorFlow's;
* JAX, and anything unusual (another rank or axis, no scale or centre, a layer or input
  that is not float32, as under mixed precision): Keras's own ``call``; XLA fuses it there already.

On TensorFlow, XLA compiles the function once per input shape (a fraction of a second for a
network's layers at a new image or batch size, then cached in the process): a cost the first call at
each size pays, where the fused kernel then saves 15-20% of every call's time at native size.

``MEDZOO_GROUP_NORM=keras`` in the environment runs Keras's own ``call`` on every backend (read when a
call is traced: set it before the process runs a model): the way to rule the fused kernels out when
numbers differ, and the baseline of ``benchmarks/native_speed.py --group-norm keras fused``.

It keeps Keras's class name on purpose: a ``.weights.h5`` file addresses a layer by its
class name (``layers/group_normalization_3/vars/0``), so every shipped preset loads into
it unchanged. Outputs agree with Keras's to about 1e-6 on feature maps whose mean is not far above
their spread; where it is (a group's mean thousands of times its spread), the fused kernels are the more
accurate: Keras takes the variance as E[x^2] - E[x]^2, which cancels there.
"""

from __future__ import annotations

import functools
import os

import keras

from medzoo.errors import ConfigError

#: the environment variable that picks the kernels: "fused" (default) or "keras"
GROUP_NORM_ENV = "MEDZOO_GROUP_NORM"
GROUP_NORM_KERNELS = ("fused", "keras")


@keras.saving.register_keras_serializable(package="medzoo")
class GroupNormalization(keras.layers.GroupNormalization):
    """``keras.layers.GroupNormalization`` (same arguments and weights), fused on PyTorch and TensorFlow."""

    def call(self, inputs):
        fused = _fused_for_backend()
        if (fused is None or len(inputs.shape) != 4 or self.axis not in (-1, 3) or inputs.shape[-1] is None
                or not (self.scale and self.center) or self.compute_dtype != "float32"
                or self.variable_dtype != "float32" or keras.backend.standardize_dtype(inputs.dtype) != "float32"):
            return super().call(inputs)
        return fused(inputs, self.gamma.value, self.beta.value, self.groups, int(inputs.shape[-1]), self.epsilon)


@functools.lru_cache(maxsize=None)
def _fused_for_backend_named(backend: str):
    """``fn(x, gamma, beta, groups, channels, epsilon)`` for a float32 (N, H, W, C) map, or None where Keras's is it."""
    if backend == "torch":
        import torch.nn.functional as F

        def torch_group_norm(x, gamma, beta, groups, channels, epsilon):
            # (N, H, W, C) viewed as (N, C, H, W): channels-last strides, which the CPU kernel handles in place
            return F.group_norm(x.permute(0, 3, 1, 2), groups, gamma, beta, epsilon).permute(0, 2, 3, 1)

        return torch_group_norm
    if backend == "tensorflow":
        import tensorflow as tf

        # one trace per (groups, channels, epsilon), shapes relaxed; XLA compiles once per concrete shape
        @tf.function(jit_compile=True, reduce_retracing=True)
        def tf_group_norm(x, gamma, beta, groups, channels, epsilon):
            shape = tf.shape(x)
            per_group = (1, 1, groups, channels // groups)
            grouped = tf.reshape(x, (shape[0], -1, groups, channels // groups))
            mean, variance = tf.nn.moments(grouped, axes=(1, 3), keepdims=True)
            scale = tf.math.rsqrt(variance + epsilon) * tf.reshape(gamma, per_group)
            shift = tf.reshape(beta, per_group) - mean * scale
            return tf.reshape(grouped * scale + shift, shape)

        return tf_group_norm
    return None


def _fused_for_backend():
    """The fused function of the active backend, or None (JAX, another backend, or ``MEDZOO_GROUP_NORM=keras``)."""
    kernels = os.environ.get(GROUP_NORM_ENV, "fused").strip().lower() or "fused"
    if kernels not in GROUP_NORM_KERNELS:
        raise ConfigError(f"{GROUP_NORM_ENV} must be one of {', '.join(GROUP_NORM_KERNELS)}, got {kernels!r}")
    return _fused_for_backend_named(keras.backend.backend()) if kernels == "fused" else None
