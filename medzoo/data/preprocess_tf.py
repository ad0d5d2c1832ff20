"""The TensorFlow implementation of :class:`~medzoo.data.PreprocessSpec`, for ``tf.data`` graphs.

:meth:`PreprocessSpec.apply` uses it for TensorFlow tensors and inside traced
functions (``tf.data.Dataset.map``, ``tf.function``), where sizes and even channel
counts may be unknown until run time; numpy input goes through the numpy
implementation in :mod:`medzoo.data.preprocess`. Both follow the same steps and agree
to float32 rounding (``tests/test_preprocess.py`` compares them). Only imported
where TensorFlow is installed and used.
"""

from __future__ import annotations

import tensorflow as tf

from medzoo.data.layout import FLAT_SPAN, LUMA, MIN_IMAGE_SIZE, check_image_size, image_layout
from medzoo.errors import DataError


def is_tf_input(images) -> bool:
    """Whether ``images`` must take the TensorFlow path: a TF tensor, or any input while tracing a graph."""
    return isinstance(images, (tf.Tensor, tf.Variable)) or not tf.executing_eagerly()


def apply(spec, images) -> tf.Tensor:
    """:meth:`PreprocessSpec.apply` in TensorFlow ops; the same contract, a float32 tensor out."""
    x = tf.convert_to_tensor(images)
    if not (x.dtype.is_integer or x.dtype.is_floating or x.dtype == tf.bool):
        raise DataError(f"images must be numeric, got dtype {x.dtype.name}")
    if x.shape.rank is None:
        raise DataError("images must have a known rank (2, 3 or 4)")
    batched, _ = image_layout(x.shape.as_list())
    x = tf.cast(x, tf.float32)
    if x.shape.rank == 2:
        x = x[None, ..., None]
    elif x.shape.rank == 3:
        x = x[..., None] if batched else x[None]
    y = _apply_batch(spec, x)
    return y if batched else y[0]


def _apply_batch(spec, x: tf.Tensor) -> tf.Tensor:
    x = _check_min_size(x)
    x = _to_channels(x, spec.channels)
    x = _shrink(spec, x) if spec.size is None else _resize(spec, x)
    if spec.normalize == "minmax":
        low = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
        high = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
    elif spec.normalize == "percentile":
        low, high = _percentiles(x, spec.percentiles)
    else:
        low, high = spec.input_range
    x = rescale(x, low, high, spec.value_range)
    if spec.resize == "pad" and spec.size is not None:
        x = _pad(spec, x)
    return tf.ensure_shape(x, [None, *spec.output_shape])


def rescale(x: tf.Tensor, low, high, value_range) -> tf.Tensor:
    """Clip ``x`` to ``[low, high]`` and map that interval onto ``value_range`` (constant images -> low end)."""
    low = tf.cast(low, tf.float32)
    high = tf.cast(high, tf.float32)
    span = high - low
    flat = span <= FLAT_SPAN * tf.maximum(tf.abs(low), tf.abs(high))
    unit = (tf.clip_by_value(x, low, high) - low) / tf.where(flat, tf.ones_like(span), span)
    unit = tf.where(flat, tf.zeros_like(unit), unit)
    out_low, out_high = (float(v) for v in value_range)
    return out_low + unit * (out_high - out_low)


def _percentiles(x: tf.Tensor, qs) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-image percentiles of a batch (N, H, W, C), with numpy's default linear interpolation."""
    flat = tf.sort(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)
    last = tf.cast(tf.shape(flat)[1] - 1, tf.float32)
    values = []
    for q in qs:
        position = q / 100.0 * last
        below = tf.floor(position)
        frac = position - below
        below = tf.cast(below, tf.int32)
        above = tf.minimum(below + 1, tf.cast(last, tf.int32))
        value = tf.gather(flat, below, axis=1) * (1.0 - frac) + tf.gather(flat, above, axis=1) * frac
        values.append(tf.reshape(value, [-1, 1, 1, 1]))
    return values[0], values[1]


def _to_channels(x: tf.Tensor, channels: int) -> tf.Tensor:
    """Convert a batch (N, H, W, 1|3|4) to ``channels`` channels; works with an unknown channel count."""

    def from_grey():
        return x if channels == 1 else tf.tile(x, [1, 1, 1, 3])

    def from_colour():
        rgb = x[..., :3]
        if channels == 3:
            return rgb
        return LUMA[0] * rgb[..., 0:1] + LUMA[1] * rgb[..., 1:2] + LUMA[2] * rgb[..., 2:3]

    if x.shape[-1] is not None:
        return from_grey() if x.shape[-1] == 1 else from_colour()
    out = tf.cond(tf.equal(tf.shape(x)[-1], 1), from_grey, from_colour)
    return tf.ensure_shape(out, [None, None, None, channels])


def _shrink(spec, x: tf.Tensor) -> tf.Tensor:
    """Native-size geometry: unchanged, or shrunk so the longer side is ``max_side``."""
    if spec.max_side is None:
        return x
    h = tf.cast(tf.shape(x)[1], tf.float32)
    w = tf.cast(tf.shape(x)[2], tf.float32)
    scale = tf.minimum(1.0, spec.max_side / tf.maximum(h, w))
    size = tf.cast(tf.maximum(tf.round(tf.stack([h, w]) * scale), 1.0), tf.int32)
    return tf.cond(scale < 1.0, lambda: tf.image.resize(x, size, antialias=True), lambda: x)


def _resize(spec, x: tf.Tensor) -> tf.Tensor:
    """Geometry step: the final size for crop/stretch, the fitted size (before padding) for pad."""
    height, width = spec.size
    if spec.resize == "stretch":
        return tf.image.resize(x, (height, width), antialias=True)
    h = tf.cast(tf.shape(x)[1], tf.float32)
    w = tf.cast(tf.shape(x)[2], tf.float32)
    if spec.resize == "crop":
        scale = tf.maximum(height / h, width / w)
        crop_h = tf.cast(tf.minimum(h, tf.round(height / scale)), tf.int32)
        crop_w = tf.cast(tf.minimum(w, tf.round(width / scale)), tf.int32)
        top = (tf.shape(x)[1] - crop_h) // 2
        left = (tf.shape(x)[2] - crop_w) // 2
        x = x[:, top : top + crop_h, left : left + crop_w, :]
        return tf.image.resize(x, (height, width), antialias=True)
    scale = tf.minimum(height / h, width / w)
    fit_h = tf.cast(tf.clip_by_value(tf.round(h * scale), 1.0, float(height)), tf.int32)
    fit_w = tf.cast(tf.clip_by_value(tf.round(w * scale), 1.0, float(width)), tf.int32)
    return tf.image.resize(x, tf.stack([fit_h, fit_w]), antialias=True)


def _pad(spec, x: tf.Tensor) -> tf.Tensor:
    """Centre ``x`` on a ``size`` canvas filled with ``value_range[0]``."""
    height, width = spec.size
    extra_h = height - tf.shape(x)[1]
    extra_w = width - tf.shape(x)[2]
    paddings = [[0, 0], [extra_h // 2, extra_h - extra_h // 2], [extra_w // 2, extra_w - extra_w // 2], [0, 0]]
    return tf.pad(x, paddings, constant_values=spec.value_range[0])


def _check_min_size(x: tf.Tensor) -> tf.Tensor:
    """Check H, W >= MIN_IMAGE_SIZE: in Python when the size is static, else with a runtime assertion."""
    height, width = x.shape[1], x.shape[2]
    if height is not None and width is not None:
        check_image_size(height, width)
        return x
    assertion = tf.debugging.assert_greater_equal(
        tf.shape(x)[1:3],
        MIN_IMAGE_SIZE,
        message=f"images must be at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels",
    )
    with tf.control_dependencies([assertion]):
        return tf.identity(x)
