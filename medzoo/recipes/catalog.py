"""The recipes behind every pretrained zoo entry: rerun one with ``medzoo train NAME``."""

from __future__ import annotations

import difflib

from medzoo.errors import ModelNotFoundError
from medzoo.recipes.recipe import CT_SPEC, NATIVE_CXR_SPEC, NATIVE_SPEC, Recipe

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
        # retired from the zoo by dae-chestxray-f4c3 (below); the recipe stays to retrain it
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
        # The shipped 1.4.0 went on from this recipe's 1.0.1 through four native-resolution
        # stages (MSE + 0.001 SSIM, 128 px crops of cxr_hannover_1024 and Kermany): stages/README.md.
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

# Zoo v2: one KL-regularised VAE (8x smaller per side, 4 channels: the latent-diffusion
# shape) and one high-fidelity autoencoder (4x, 3 channels) per modality, and a generalist
# VAE trained on the four modalities in equal shares. All any-size residual networks,
# trained on random crops (several per image and epoch, so an epoch on a GPU amortises its
# validation pass), measured on whole test images at the stored resolution.
MODALITIES = {
    # name: (dataset, crop size, crops per image and epoch, what it holds)
    "chestxray": ("kermany_pediatric_cxr_128", 96, 4, "pediatric chest X-rays (Kermany, 128 px)"),
    "brainmri": ("brain_tumor_figshare_128", 96, 6, "brain MRI T1-CE slices (Figshare, 128 px)"),
    "breastus": ("busbra_256", 128, 8, "breast ultrasound (BUS-BRA, 256 px)"),
    "fetalus": ("hc18_256", 128, 12, "fetal head ultrasound (HC18, 256 px)"),
}
_VAE_F8C4 = {"architecture": "residual", "filters": [64, 96, 128], "depth": 3, "blocks_per_level": 2,
             "attention": True, "latent_channels": 4, "reconstruction_loss": "l1", "beta": 1e-4}
_AE_F4C3 = {"architecture": "residual", "filters": [64, 128], "depth": 2, "blocks_per_level": 2,
            "latent_channels": 3, "reconstruction_loss": "l1"}
_V2_TRAINING = {"spec": dict(NATIVE_SPEC), "learning_rate": 1e-3, "warmup_steps": 500, "batch_size": 32,
                "epochs": 40, "early_stopping_patience": 0, "weights_dtype": "float16"}

for _modality, (_dataset, _crop, _repeats, _what) in MODALITIES.items():
    RECIPES[f"vae-{_modality}-f8c4"] = Recipe(
        name=f"vae-{_modality}-f8c4", family="vae", model=dict(_VAE_F8C4), dataset=_dataset, crop_size=_crop,
        crops_per_image=_repeats, **_V2_TRAINING,
        description=f"Any-size KL-VAE for {_what}: latent 8x smaller per side, 4 channels (16x fewer values), "
                    "for features, generation and latent diffusion")
    RECIPES[f"ae-{_modality}-f4c3"] = Recipe(
        name=f"ae-{_modality}-f4c3", family="autoencoder", model=dict(_AE_F4C3), dataset=_dataset, crop_size=_crop,
        crops_per_image=_repeats, **_V2_TRAINING,
        description=f"Any-size high-fidelity autoencoder for {_what}: latent 4x smaller per side, 3 channels "
                    "(5.3x fewer values)")

# The denoiser of zoo v2: the chest X-ray f4c3 autoencoder, fine-tuned to map noisy inputs
# (Gaussian, sigma 0.1 of the range, as dae-chestxray) to clean images under MSE. Starting
# from the trained autoencoder takes four epochs on two CPU cores instead of a GPU run.
RECIPES["dae-chestxray-f4c3"] = Recipe(
    name="dae-chestxray-f4c3", family="autoencoder",
    model={**_AE_F4C3, "reconstruction_loss": "mse", "noise": "gaussian", "noise_strength": 0.1},
    dataset="kermany_pediatric_cxr_128", crop_size=128, crops_per_image=1, init_from="ae-chestxray-f4c3",
    **{**_V2_TRAINING, "learning_rate": 3e-4, "warmup_steps": 20, "epochs": 4},
    description="Any-size denoising autoencoder for pediatric chest X-rays (Kermany, 128 px), trained on Gaussian "
                "noise (sigma 0.1 of the range) from ae-chestxray-f4c3's weights: latent 4x smaller per side, "
                "3 channels")

# CT in Hounsfield units: zoo v2's two shapes on the native CT slices (512 px), read through
# CT_SPEC (-1024 to 3071 HU mapped linearly to [0, 1] for every slice, so any window can be set
# afterwards). They start from the chest X-ray weights (the same architectures; a grey image's
# edges and textures carry over) and train on 128 px crops at random scales down to 256 px, under
# MSE (PSNR over the stored range is the bar, and the error in HU is reported beside it). Whole
# slices are reconstructed in 128 px tiles, so GroupNorm sees what it saw in training. These are
# the two-CPU-core defaults; the shipped weights came from one H200 under a time budget, the
# autoencoder from the native chest stage 2 (stages/) with 48 crops per slice: their presets
# record the exact run (training.initialized_from, tools/device/launch.sh).
_CT_TRAINING = {**_V2_TRAINING, "spec": dict(CT_SPEC), "dataset": "ct_tcia_512", "crop_size": 128,
                "crops_per_image": 16, "min_side": 256, "learning_rate": 3e-4, "warmup_steps": 100,
                "epochs": 30, "inference_tile": [128, 32]}
RECIPES["ae-ct-f4c3"] = Recipe(
    name="ae-ct-f4c3", family="autoencoder", model={**_AE_F4C3, "reconstruction_loss": "mse", "ssim_weight": 0.001},
    init_from="ae-chestxray-f4c3", **_CT_TRAINING,
    description="Any-size high-fidelity autoencoder for CT slices in Hounsfield units (TCIA, 512 px; -1024 to "
                "3071 HU kept linearly): latent 4x smaller per side, 3 channels")
RECIPES["vae-ct-f8c4"] = Recipe(
    name="vae-ct-f8c4", family="vae", model={**_VAE_F8C4, "reconstruction_loss": "mse", "beta": 5e-6},
    init_from="vae-chestxray-f8c4", **_CT_TRAINING,
    description="Any-size KL-VAE for CT slices in Hounsfield units (TCIA, 512 px; -1024 to 3071 HU kept "
                "linearly): latent 8x smaller per side, 4 channels, for features and latent diffusion")

# The VQ-VAE rate point of zoo v2: vqvae-chestxray's rate (a 16x16 map of 9-bit indices for a
# 128 px image, at most 0.14 bits per pixel) on the any-size residual network. Light enough
# (two blocks per level, no attention) to train to convergence on two CPU cores.
RECIPES["vqvae-chestxray-f8k512"] = Recipe(
    name="vqvae-chestxray-f8k512", family="vqvae",
    model={"architecture": "residual", "filters": [48, 96, 128], "depth": 3, "blocks_per_level": 2,
           "num_embeddings": 512, "embedding_dim": 32, "reconstruction_loss": "l1"},
    dataset="kermany_pediatric_cxr_128", crop_size=64, crops_per_image=4, **_V2_TRAINING,
    description="Any-size residual VQ-VAE for pediatric chest X-rays (Kermany, 128 px): code map 8x smaller per "
                "side over a 512-entry codebook (at most 0.14 bits per pixel, vqvae-chestxray's rate)")

# The coarser and finer VQ-VAE rate points of zoo v2, rebuilt like vqvae-chestxray-f8k512:
# vqvae-chestxray-8x8's rate (an 8x8 map for 128 px, at most 0.035 bits per pixel) one level
# deeper, and vqvae-chestxray-32x32's (32x32, at most 0.56) one level shallower. The deeper one
# is narrower at full resolution: the 9 bits per 256 pixels limit it, not its width, and the
# package's weights must stay under PyPI's 100 MB file limit. It trains on whole images: on
# 64 px crops (4x4 code maps, mostly border) its validation L1 on whole images stalled at 0.081
# while the crops' fell to 0.048.
RECIPES["vqvae-chestxray-f16k512"] = Recipe(
    name="vqvae-chestxray-f16k512", family="vqvae",
    model={"architecture": "residual", "filters": [32, 64, 96, 128], "depth": 4, "blocks_per_level": 2,
           "num_embeddings": 512, "embedding_dim": 32, "reconstruction_loss": "l1"},
    dataset="kermany_pediatric_cxr_128", crop_size=128, crops_per_image=1,
    **{**_V2_TRAINING, "batch_size": 16, "warmup_steps": 200},
    description="Any-size residual VQ-VAE for pediatric chest X-rays (Kermany, 128 px): code map 16x smaller per "
                "side over a 512-entry codebook (at most 0.035 bits per pixel, vqvae-chestxray-8x8's rate)")
RECIPES["vqvae-chestxray-f4k512"] = Recipe(
    name="vqvae-chestxray-f4k512", family="vqvae",
    model={"architecture": "residual", "filters": [64, 128], "depth": 2, "blocks_per_level": 2,
           "num_embeddings": 512, "embedding_dim": 32, "reconstruction_loss": "l1"},
    dataset="kermany_pediatric_cxr_128", crop_size=64, crops_per_image=4, **_V2_TRAINING,
    description="Any-size residual VQ-VAE for pediatric chest X-rays (Kermany, 128 px): code map 4x smaller per "
                "side over a 512-entry codebook (at most 0.56 bits per pixel, vqvae-chestxray-32x32's rate)")

# The generalist: the f8c4 VAE on the four modalities in equal shares. This recipe from scratch
# (111 s on an H100) missed the 1 dB bar against the specialists on brain MRI and fetal
# ultrasound; the shipped weights start from vae-fetalus-f8c4 and went through four stages on two
# CPU cores (each init_from the last, crops_per_image=2): 1,779 + 593 steps of L1 (learning rates
# 4e-4, 3e-4), then 2 x 1,186 steps of MSE at 2e-4 with beta 5e-6 (L1's balance of reconstruction
# against KL under a squared error). 1.6.0 added one native CPU stage with the adult radiographs
# (cxr_hannover_1024 at 46% of the crops, scales down to 512 px, 128 px crops). docs/results.md
# has the commands and figures.
RECIPES["vae-generalist-f8c4"] = Recipe(
    name="vae-generalist-f8c4", family="vae", model=dict(_VAE_F8C4),
    dataset=[d for d, *_ in MODALITIES.values()], crop_size=96, crops_per_image=3, **_V2_TRAINING,
    description="Any-size KL-VAE trained on chest X-ray (adult radiographs at native resolution and pediatric "
                "thumbnails), brain MRI, breast and fetal ultrasound: a starting point for modalities the zoo "
                "lacks (latent 8x smaller per side, 4 channels)")

# Segmentation from the zoo encoders: each modality's f8c4 VAE encoder, fine-tuned under a
# light U-Net decoder on that dataset's masks. encoder=None (with label_fraction) is the
# same network from random weights: benchmarks/segmentation.py's comparison.
SEGMENTATION = {
    # name: (dataset, zoo encoder, crop size, crops per image, what is segmented)
    "seg-breastus-lesion": ("busbra_256", "vae-breastus-f8c4", 128, 4, "breast lesions in ultrasound (BUS-BRA)"),
    "seg-brainmri-tumour": ("brain_tumor_figshare_128", "vae-brainmri-f8c4", 96, 4,
                            "brain tumours in T1-CE MRI slices (Figshare)"),
    "seg-fetalus-head": ("hc18_256", "vae-fetalus-f8c4", 128, 4, "the fetal head in ultrasound (HC18)"),
}
_SEG_MODEL = {"classes": 1, "frozen_levels": 0, **{k: _VAE_F8C4[k] for k in ("architecture", "filters", "depth",
                                                                                "blocks_per_level")}}
for _name, (_dataset, _encoder, _crop, _repeats, _what) in SEGMENTATION.items():
    RECIPES[_name] = Recipe(
        name=_name, family="segmenter", model=dict(_SEG_MODEL), dataset=_dataset, encoder=_encoder, crop_size=_crop,
        crops_per_image=_repeats, spec=dict(NATIVE_SPEC), learning_rate=5e-4, warmup_steps=200, batch_size=16,
        epochs=40, early_stopping_patience=0, weights_dtype="float16",
        description=f"Segments {_what}: the {_encoder} encoder under a U-Net decoder, Dice + cross-entropy")

# Codec v2: a scale-hyperprior codec with eight quality levels in one network (gain units),
# trained for rate + lambda * distortion; medzoo.codec turns it into streams. About a GPU-day
# to train from scratch: kept for a GPU machine, not the zoo's codec design.
_HYPERPRIOR = {"n": 128, "m": 160}
_HYPERPRIOR_TRAINING = {"spec": dict(NATIVE_SPEC), "learning_rate": 2e-4, "warmup_steps": 500, "batch_size": 16,
                        "epochs": 40, "early_stopping_patience": 0, "crop_size": 128}
RECIPES["hyperprior-chestxray"] = Recipe(
    name="hyperprior-chestxray", family="codec", model=dict(_HYPERPRIOR), dataset="kermany_pediatric_cxr_128",
    crops_per_image=4, **_HYPERPRIOR_TRAINING,
    description="Learned image codec for chest X-rays: scale hyperprior, eight rates from about 0.1 to 2 bits "
                "per pixel in one network")
RECIPES["hyperprior-generalist"] = Recipe(
    name="hyperprior-generalist", family="codec", model=dict(_HYPERPRIOR),
    dataset=[d for d, *_ in MODALITIES.values()], crops_per_image=3, **_HYPERPRIOR_TRAINING,
    description="Learned image codec trained on chest X-ray, brain MRI, breast and fetal ultrasound: scale "
                "hyperprior, eight rates in one network")

# Codec v3 (issue 36): a design that trains on two CPU cores. The transform is the native
# chest X-ray autoencoder, its latent widened from 3 to 12 channels (the new channels start
# ignored by the decoder, so training starts from ae-chestxray-f4c3's function) to lift the
# ceiling a 3-channel latent sets (39.7 dB at 1024 px); it is fine-tuned for rate at eight latent
# steps a factor sqrt(2) apart (its 14 quality levels: the halved image at seven, the full image
# at seven; ConvAutoencoder.codec_levels), each image at one step, the rate
# priced by a factorized density (ConvAutoencoder's rate_steps). Streams code the rounded latent
# with the causal coder (medzoo.codec.latent), whose prediction adds what a factorized density
# leaves. 128 px crops of the native radiographs at random scales, as the autoencoder saw; the
# native set comes first, so the preset's quality table (info()["codec"]) is measured on it.
CODEC_STEPS = tuple(round(2.0 ** (-k / 2), 4) for k in range(8))  # 1.0 ... 0.0884
RECIPES["codec-chestxray"] = Recipe(
    name="codec-chestxray", family="autoencoder",
    model={**_AE_F4C3, "latent_channels": 12, "reconstruction_loss": "mse", "rate_steps": list(CODEC_STEPS),
           "rate_weight": 1.5e-4},
    dataset=["cxr_hannover_1024", "kermany_pediatric_cxr_128"], dataset_weights=[0.9, 0.1], min_side=512,
    crop_size=128, crops_per_image=4, init_from="ae-chestxray-f4c3", inference_tile=[128, 16],
    spec=dict(NATIVE_SPEC), learning_rate=1e-4, warmup_steps=100, batch_size=16, epochs=40,
    early_stopping_patience=0, weights_dtype="float16",
    description="Learned lossy codec for chest X-rays at native resolution (8- to 16-bit): the native chest "
                "autoencoder with a 12-channel latent, fine-tuned for rate at eight latent steps; streams code "
                "the rounded latent with medzoo's causal coder")


def get_recipe(name) -> Recipe:
    """A recipe by zoo name (a :class:`Recipe` is returned unchanged)."""
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        close = difflib.get_close_matches(str(name), RECIPES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(f"no recipe named {name!r}{hint} Known recipes: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]
