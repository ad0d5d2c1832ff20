"""Antialiased bilinear resizing in numpy, the same arithmetic as ``tf.image.resize(..., antialias=True)``.

Resizing is a matrix product per axis: output sample ``i`` sits at input position
``(i + 0.5) / scale - 0.5`` (half-pixel centres) and takes a triangle-weighted average
of the input samples around it. When shrinking, the triangle is widened by ``1 / scale``
so every input pixel contributes (antialiasing); when enlarging it is plain bilinear
interpolation. Samples outside the image are dropped and the weights renormalised, as
in TensorFlow's and JAX's ``scale_and_translate``, so the two implementations agree to
float rounding and a preprocessing spec gives the same model inputs with or without
TensorFlow.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=64)
def resize_weights(size_in: int, size_out: int) -> np.ndarray:
    """The (size_out, size_in) matrix that resizes one axis (rows sum to 1)."""
    scale = size_out / size_in
    support = 1.0 / scale if scale < 1.0 else 1.0  # kernel radius in input pixels
    centres = (np.arange(size_out, dtype=np.float64) + 0.5) / scale - 0.5
    inputs = np.arange(size_in, dtype=np.float64)
    weights = np.maximum(0.0, 1.0 - np.abs(inputs[None, :] - centres[:, None]) / support)
    totals = weights.sum(axis=1, keepdims=True)
    return weights / np.where(totals > 0, totals, 1.0)


def resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a float batch (N, H, W, C) to (N, height, width, C), antialiased when shrinking."""
    _, h, w, _ = images.shape
    out = images
    if (h, w) == (height, width):
        return images.astype(np.float32, copy=False)
    if h != height:
        out = np.einsum("oh,nhwc->nowc", resize_weights(h, height), out, optimize=True)
    if w != width:
        out = np.einsum("ow,nhwc->nhoc", resize_weights(w, width), out, optimize=True)
    return out.astype(np.float32)
