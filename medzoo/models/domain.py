"""Is an image like the ones a model was trained on? A cheap check on intensity and texture statistics.

A model's reconstruction error does not say when an image comes from another modality: the
brain MRI VAE reconstructs breast ultrasound as well as its own test images. What does tell
them apart is how the pixels are distributed and how fine their texture is: the share of dark
background, the quantiles, the gradient energy, the speckle of ultrasound (its contrast within
small blocks and the short correlation length of its high frequencies). :class:`DomainProfile`
holds the mean and inverse covariance of those statistics over a model's training images and a
threshold on the Mahalanobis distance (the 99.5th percentile of its validation images); a
model with a profile warns when the images it is given lie beyond it.

On the four test splits of the zoo's data, each modality's profile flags 95-100% of the
images of the other three modalities, except that the breast-ultrasound profile flags 86% of
brain MRI slices and 85% of fetal ultrasound (the same modality); it flags 0-3% of its own.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from medzoo.errors import ConfigError

#: the statistics, in the order of :func:`image_statistics`' columns
STATISTICS = ("mean", "std", "dark_share", "bright_share", "log_grad_x", "log_grad_y", "log_laplacian_over_grad",
              "block_contrast", "residual_corr_x1", "residual_corr_x2", "residual_corr_y1", "lit_block_share",
              "q10", "q25", "q50", "q75", "q90")
#: a model warns when more than this share of the images of one call lies beyond the threshold
WARN_SHARE = 0.05
_BLOCK = 8


def image_statistics(images) -> np.ndarray:
    """Images (N, H, W[, C]) -> (N, len(STATISTICS)) float64; each image min-max scaled first (channel mean)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4:
        x = x.mean(axis=-1)
    if x.ndim != 3 or min(x.shape[1:]) < 2 * _BLOCK:
        raise ConfigError(f"expected images (N, H, W[, C]) of at least {2 * _BLOCK} px per side, got {x.shape}")
    low = x.min(axis=(1, 2), keepdims=True)
    x = (x - low) / np.maximum(x.max(axis=(1, 2), keepdims=True) - low, 1e-9)
    n, h, w = x.shape
    grad_x = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2))
    grad_y = np.abs(np.diff(x, axis=1)).mean(axis=(1, 2))
    residual = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    laplacian = np.abs(residual).mean(axis=(1, 2))
    residual = residual - residual.mean(axis=(1, 2), keepdims=True)
    energy = (residual ** 2).mean(axis=(1, 2)) + 1e-12

    def correlation(a, b):
        return (a * b).mean(axis=(1, 2)) / energy

    blocks = x[:, :h // _BLOCK * _BLOCK, :w // _BLOCK * _BLOCK].reshape(n, h // _BLOCK, _BLOCK, w // _BLOCK, _BLOCK)
    block_mean, block_std = blocks.mean(axis=(2, 4)), blocks.std(axis=(2, 4))
    lit = block_mean > 0.15
    contrast = np.array([np.median(s[k] / m[k]) if k.any() else 0.0 for s, m, k in zip(block_std, block_mean, lit)])
    quantiles = np.percentile(x.reshape(n, -1), [10, 25, 50, 75, 90], axis=1)
    return np.column_stack([
        x.mean(axis=(1, 2)), x.std(axis=(1, 2)), (x < 0.05).mean(axis=(1, 2)), (x > 0.95).mean(axis=(1, 2)),
        np.log(grad_x + 1e-6), np.log(grad_y + 1e-6), np.log(laplacian + 1e-6) - np.log(grad_x + grad_y + 1e-6),
        contrast, correlation(residual[:, :, 1:], residual[:, :, :-1]),
        correlation(residual[:, :, 2:], residual[:, :, :-2]), correlation(residual[:, 1:], residual[:, :-1]),
        lit.mean(axis=(1, 2)), *quantiles,
    ])


def _statistics(images) -> np.ndarray:
    if isinstance(images, (list, tuple)):
        return np.concatenate([image_statistics(a) for a in images])
    return image_statistics(images)


@dataclasses.dataclass(frozen=True)
class DomainProfile:
    """Mean and inverse covariance of :data:`STATISTICS` over training images, and a distance threshold."""

    mean: np.ndarray
    inverse_covariance: np.ndarray
    threshold: float
    fitted_on: str = ""

    @classmethod
    def fit(cls, train_images, val_images, *, fitted_on: str = "", percentile: float = 99.5) -> "DomainProfile":
        """Statistics of ``train_images``; the threshold is ``percentile`` of the ``val_images``' distances.

        Either may be a list of arrays (a mixture of datasets whose image sizes differ).
        """
        stats = _statistics(train_images)
        if len(stats) <= 2 * stats.shape[1]:
            raise ConfigError(f"a domain profile needs more than {2 * stats.shape[1]} training images, "
                              f"got {len(stats)}")
        covariance = np.cov(stats.T) + 1e-6 * np.eye(stats.shape[1])
        profile = cls(stats.mean(axis=0), np.linalg.inv(covariance), 0.0, fitted_on)
        threshold = float(np.percentile(profile.distances(val_images), percentile))
        return dataclasses.replace(profile, threshold=threshold)

    def distances(self, images) -> np.ndarray:
        """Mahalanobis distance of each image's statistics from the training images'."""
        d = _statistics(images) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.inverse_covariance, d), 0.0))

    def unfamiliar(self, images) -> np.ndarray:
        """Boolean per image: beyond the threshold."""
        return self.distances(images) > self.threshold

    def to_dict(self) -> dict:
        return {"statistics": list(STATISTICS), "mean": [float(f"{v:.7g}") for v in self.mean],
                "inverse_covariance": [[float(f"{v:.7g}") for v in row] for row in self.inverse_covariance],
                "threshold": round(self.threshold, 4), "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: dict) -> "DomainProfile | None":
        """The profile stored in a preset's metadata; None if it was made with other statistics."""
        if list(data.get("statistics", [])) != list(STATISTICS):
            return None
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["inverse_covariance"], np.float64),
                   float(data["threshold"]), data.get("fitted_on", ""))
