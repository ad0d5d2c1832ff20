"""Differentiable image-similarity terms for training losses, in ``keras.ops``."""

from __future__ import annotations

import numpy as np
from keras import ops

_C1, _C2 = 0.01**2, 0.03**2  # SSIM stabilisers for a data range of 1 (Wang et al., 2004)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
    g /= g.sum()
    return np.outer(g, g).astype(np.float32)


def ssim_per_image(x, y, window: int = 11):
    """Mean SSIM of each image pair (N,) for images in [0, 1]: 11x11 Gaussian window, sigma 1.5.

    Computed channel by channel with a depthwise convolution over the valid region,
    so it is differentiable and runs on any backend. Images smaller than the
    window use a window of their size.
    """
    x = ops.cast(x, "float32")
    y = ops.cast(y, "float32")
    size = min(window, x.shape[1] or window, x.shape[2] or window)
    channels = x.shape[-1]
    kernel = np.tile(_gaussian_window(size)[:, :, None, None], (1, 1, channels, 1))

    def blur(t):
        return ops.depthwise_conv(t, kernel, strides=1, padding="valid")

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    return ops.mean(ssim_map, axis=(1, 2, 3))
