"""The recipes behind every pretrained zoo entry: rerun one with ``medzoo train NAME``."""

from __future__ import annotations

import difflib

from medzoo.errors import ModelNotFoundError
from medzoo.recipes.recipe import NATIVE_CXR_SPEC, Recipe

# One architecture for the chest X-ray family: four levels of (16, 32, 64, 128)
# filters take 128x128 images to 8x8 (about 0.5-2 M parameters), fast enough to
# train to convergence on two CPU cores. Batch normalisation, ReLU. The input
# shape comes from the recipe's preprocessing spec.
_CXR_ARCH = {"filters": 16, "depth": 4, "normalization": "batch"}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            name="ae-chestxray",
            family="autoencoder",
            description="Convolutional autoencoder, 128x128 grey chest X-rays, 8x8x16 spatial code (16x fewer values)",
            model={**_CXR_ARCH, "latent_channels": 16},
            augment={"translate": 0.03},
        ),
        Recipe(
            name="dae-chestxray",
            family="autoencoder",
            description="Denoising autoencoder for chest X-rays (trained on Gaussian noise, sigma 0.1 of the range)",
            model={**_CXR_ARCH, "depth": 3, "latent_channels": 32, "noise": "gaussian", "noise_strength": 0.1},
            augment={"translate": 0.03},
        ),
        Recipe(
            name="vae-chestxray",
            family="vae",
            description="Variational autoencoder, 128-d latent, for sampling, interpolation and likelihood scores",
            # no KL warm-up: with beta = 0 the 128-d posterior means drift to KL ~ 1e5 nats
            # within an epoch, and recovering costs more epochs than warm-up saves
            model={**_CXR_ARCH, "latent_dim": 128, "reconstruction_loss": "bce"},
            augment={"translate": 0.03},
        ),
        Recipe(
            name="vqvae-chestxray",
            family="vqvae",
            description="VQ-VAE, 16x16 code map over a 512-entry codebook (at most 0.14 bits per pixel)",
            model={**_CXR_ARCH, "depth": 3, "num_embeddings": 512, "embedding_dim": 32},
            augment={"translate": 0.03},
        ),
        # Anomaly detection: trained and selected on normal images only, so pneumonia
        # images (never seen) reconstruct worse; scored on the full test split.
        Recipe(
            name="ae-chestxray-normal",
            family="autoencoder",
            description="Autoencoder trained on normal chest X-rays only, for anomaly detection by reconstruction error",
            model={**_CXR_ARCH, "latent_channels": 16},
            classes=[0],
            epochs=40,
            early_stopping_patience=8,
            augment={"translate": 0.03},
        ),
        Recipe(
            name="vae-chestxray-normal",
            family="vae",
            description="VAE trained on normal chest X-rays only, for anomaly detection by negative ELBO",
            model={**_CXR_ARCH, "latent_dim": 128, "reconstruction_loss": "bce"},
            classes=[0],
            epochs=40,
            early_stopping_patience=8,
            augment={"translate": 0.03},
            weights_dtype="float16",  # 3.8 M parameters: halves the 15 MB the package would carry
        ),
        # More rate points for the compression curve: the same VQ-VAE with a coarser
        # (8x8) and a finer (32x32) code map.
        Recipe(
            name="vqvae-chestxray-8x8",
            family="vqvae",
            description="VQ-VAE, 8x8 code map over a 512-entry codebook (at most 0.035 bits per pixel)",
            model={**_CXR_ARCH, "depth": 4, "num_embeddings": 512, "embedding_dim": 32},
            augment={"translate": 0.03},
        ),
        Recipe(
            name="vqvae-chestxray-32x32",
            family="vqvae",
            description="VQ-VAE, 32x32 code map over a 512-entry codebook (at most 0.56 bits per pixel)",
            model={**_CXR_ARCH, "depth": 2, "num_embeddings": 512, "embedding_dim": 32},
            augment={"translate": 0.03},
        ),
        # Models v2: the any-size residual architecture, trained on 64 px crops and
        # measured on whole images. f4c1 keeps as many numbers as ae-chestxray's code
        # (1,024 at 128 x 128), so the two architectures compare at equal latent size.
        Recipe(
            name="ae-chestxray-f4c1",
            family="autoencoder",
            description="Any-size residual autoencoder for chest X-rays: latent 4x smaller per side, 1 channel "
                        "(16x fewer values); runs on DICOMs at native resolution, tiled when large",
            model={"architecture": "residual", "filters": [48, 96], "depth": 2, "blocks_per_level": 2,
                   "latent_channels": 1, "reconstruction_loss": "l1"},
            spec=dict(NATIVE_CXR_SPEC),
            crop_size=64,
            learning_rate=1e-3,
            epochs=40,
            early_stopping_patience=0,
        ),
    ]
}


def get_recipe(name) -> Recipe:
    """A recipe by zoo name (a :class:`Recipe` is returned unchanged)."""
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        close = difflib.get_close_matches(str(name), RECIPES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(f"no recipe named {name!r}{hint} Known recipes: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]
