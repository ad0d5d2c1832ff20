"""Image-quality and likelihood metrics shared by training reports and the evaluation suite.

All functions take float images in [0, 1] with shape (N, H, W, C) and return one
value per image (numpy), so callers can average, bootstrap or plot them.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

LOG2 = math.log(2.0)


def psnr(reference, images, max_val=1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB, per image."""
    return tf.image.psnr(tf.cast(reference, tf.float32), tf.cast(images, tf.float32), max_val=max_val).numpy()


def ssim(reference, images, max_val=1.0) -> np.ndarray:
    """Structural similarity (Gaussian window 11, sigma 1.5, as in Wang et al. 2004), per image."""
    return tf.image.ssim(tf.cast(reference, tf.float32), tf.cast(images, tf.float32), max_val=max_val).numpy()


def mae(reference, images) -> np.ndarray:
    """Mean absolute error, per image."""
    diff = np.abs(np.asarray(reference, np.float32) - np.asarray(images, np.float32))
    return diff.reshape(len(diff), -1).mean(axis=1)


def discretized_gaussian_nll(x, mean, sigma, levels=256) -> tf.Tensor:
    """Negative log-likelihood in nats, per image, of ``levels``-level images under N(mean, sigma^2).

    Each pixel's probability is the Gaussian mass of its quantisation bin, with
    the end bins open to +-infinity, so this is a proper discrete likelihood of
    8-bit images (the quantity behind "bits per dimension").
    """
    x = tf.round(tf.cast(x, tf.float32) * (levels - 1)) / (levels - 1)
    mean = tf.cast(mean, tf.float32)
    half = 0.5 / (levels - 1)
    dist = tf.sqrt(2.0) * sigma
    upper = tf.where(x >= 1.0 - half, tf.ones_like(x), 0.5 * (1.0 + tf.math.erf((x + half - mean) / dist)))
    lower = tf.where(x <= half, tf.zeros_like(x), 0.5 * (1.0 + tf.math.erf((x - half - mean) / dist)))
    log_p = tf.math.log(tf.maximum(upper - lower, 1e-12))
    return -tf.reduce_sum(tf.reshape(log_p, [tf.shape(x)[0], -1]), axis=1)


def vae_negative_elbo_bits(model, images, sigma, batch_size=64, seed=0) -> np.ndarray:
    """Negative ELBO in bits per dimension, per image, with a discretized Gaussian decoder.

    ``-ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z))``, estimated with one posterior
    sample; it upper-bounds ``-log2 p(x)`` of the 8-bit image. The decoder mean is
    the model's reconstruction and ``sigma`` a global scale (see :func:`fit_vae_sigma`).
    """
    from medzoo.models.vae import gaussian_kl  # evaluate sits above models

    images = np.asarray(images, np.float32)
    dims = float(np.prod(images.shape[1:]))
    out = []
    for i in range(0, len(images), batch_size):
        x = tf.constant(images[i:i + batch_size])
        mean, log_var = model.encode_distribution(x)
        eps = tf.random.stateless_normal(tf.shape(mean), seed=[seed, i])
        z = mean + tf.exp(0.5 * log_var) * eps
        nll = discretized_gaussian_nll(x, model.decode_tensor(z), sigma)
        out.append(((nll + gaussian_kl(mean, log_var)) / (dims * LOG2)).numpy())
    return np.concatenate(out)


def fit_vae_sigma(model, images, grid=(0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12)) -> float:
    """The decoder scale from ``grid`` that gives the best (lowest) bound on ``images`` (use validation data)."""
    scores = [float(vae_negative_elbo_bits(model, images, s).mean()) for s in grid]
    return float(grid[int(np.argmin(scores))])
