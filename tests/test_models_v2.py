"""Models v2: the any-size residual architecture, padding, tiled inference, patch training, bad input."""

import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import medzoo
from medzoo.data import PreprocessSpec, from_arrays
from medzoo.errors import ConfigError, DataError
from medzoo.models import VAE, VQVAE, ConvAutoencoder
from medzoo.models.losses import ssim_per_image
from medzoo.models.residual import DepthToSpace, SpaceToDepth
from medzoo.models.tiling import tile_starts

RESIDUAL = dict(input_shape=(None, None, 1), architecture="residual", filters=[8, 16], depth=2, seed=1)
FAMILIES = {
    "ae": (ConvAutoencoder, dict(latent_channels=2)),
    "dae": (ConvAutoencoder, dict(latent_channels=2, noise="gaussian")),
    "sparse": (ConvAutoencoder, dict(latent_channels=2, sparsity=1e-3)),
    "vae": (VAE, dict(latent_channels=2, reconstruction_loss="l1")),
    "vqvae": (VQVAE, dict(num_embeddings=16, embedding_dim=2)),
}


def make(key, **over):
    cls, kw = FAMILIES[key]
    return cls(**{**RESIDUAL, **kw, **over})


@pytest.fixture(scope="module")
def trained(tiny_cxr):
    """A tiny residual autoencoder trained for a few seconds on 16 px crops of real X-rays (LayerNorm)."""
    keras.utils.set_random_seed(0)  # the crops too: the tolerances below hold for this model
    model = ConvAutoencoder(**{**RESIDUAL, "filters": [8, 16]}, latent_channels=2, normalization="layer",
                            reconstruction_loss="l1")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    ds = from_arrays(tiny_cxr, PreprocessSpec(size=None), batch_size=16, shuffle=True, seed=0, crop_size=16,
                     repeat=True)
    model.fit(ds, epochs=1, steps_per_epoch=60, verbose=0)
    return model


def _upscaled(tiny_cxr, n=2, factor=3):
    """Real X-rays at 96 x 96 (smooth, so a 32 px-trained model still reconstructs them)."""
    import tensorflow as tf

    return tf.image.resize(tiny_cxr[:n], (32 * factor, 32 * factor), method="bilinear").numpy()


# ---------------------------------------------------------------- any size
@pytest.mark.parametrize("key", sorted(FAMILIES))
@pytest.mark.parametrize("size", [(16, 16), (21, 37), (40, 24)])
def test_every_family_takes_any_size(key, size):
    model = make(key)
    assert model.encoder.input_shape == (None, None, None, 1) and model.any_size
    x = np.random.default_rng(0).random((2, *size, 1), dtype=np.float32)
    z = model.encode(x)
    h, w = -(-size[0] // 4), -(-size[1] // 4)
    assert z.shape[:3] == (2, h, w) and model.latent_size(*size) == (h, w)
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and np.all(np.isfinite(rec))
    if key == "vqvae":
        assert np.issubdtype(z.dtype, np.integer)
    else:
        assert z.shape[-1] == 2
    assert model.decode(z, output_size=size).shape == x.shape


@pytest.mark.parametrize("key", [*sorted(FAMILIES), "segmenter"])
def test_one_model_takes_image_after_image_of_other_sizes(key):
    """Any size holds for every call, not just the first: 256, 128 then 200 px through one model in one process
    (Keras' bilinear UpSampling2D failed on the second size under TensorFlow)."""
    from medzoo.models import Segmenter

    model = Segmenter(**{**RESIDUAL, "seed": 1}) if key == "segmenter" else make(key)
    for side in (256, 128, 200):
        x = np.random.default_rng(side).random((1, side, side, 1), dtype=np.float32)
        if key == "segmenter":
            assert model.segment(x).shape == (1, side, side)
            continue
        assert model.encode(x).shape[1:3] == (side // 4, side // 4)
        assert model.reconstruct(x).shape == x.shape


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_downsampling_factors(depth):
    model = ConvAutoencoder(**{**RESIDUAL, "filters": [4] * depth, "depth": depth}, latent_channels=3)
    assert model.downsample_factor == 2**depth
    assert model.encode(np.zeros((1, 50, 33, 1), np.float32)).shape == (1, -(-50 // 2**depth), -(-33 // 2**depth), 3)


def test_padding_is_reflection_at_the_bottom_and_right():
    model = make("ae")
    x = np.arange(5 * 7, dtype=np.float32).reshape(1, 5, 7, 1)
    padded = np.asarray(model.pad_to_stride(x))
    np.testing.assert_array_equal(padded, np.pad(x, ((0, 0), (0, 3), (0, 1), (0, 0)), mode="reflect"))
    assert np.asarray(model.crop_like(padded, x)).shape == x.shape


def test_space_to_depth_and_back_are_exact_inverses():
    x = np.random.default_rng(1).random((2, 6, 10, 3)).astype(np.float32)
    folded = np.asarray(SpaceToDepth(2)(x))
    assert folded.shape == (2, 3, 5, 12)
    np.testing.assert_array_equal(folded[0, 1, 2, :3], x[0, 2, 4])  # (dy, dx, c) order: first the top-left pixel
    np.testing.assert_array_equal(np.asarray(DepthToSpace(2)(folded)), x)


def test_fit_on_crops_validates_on_whole_images(tiny_cxr):
    model = make("vae")
    ds = from_arrays(tiny_cxr, PreprocessSpec(size=None), batch_size=16, shuffle=True, seed=0, crop_size=16)
    assert next(iter(ds)).shape == (16, 16, 16, 1)
    hist = model.fit(ds, validation_data=(tiny_cxr[:8],), epochs=3, verbose=0).history
    assert hist["reconstruction_loss"][-1] < hist["reconstruction_loss"][0]
    assert {"val_loss", "val_kl_loss", "val_reconstruction_loss"} <= set(hist)


def test_vae_samples_at_a_requested_size():
    vae = make("vae")
    assert vae.sample(2, seed=0, size=(20, 28)).shape == (2, 20, 28, 1)
    with pytest.raises(ConfigError, match="size"):
        vae.sample(2)
    assert vae.encode(np.zeros((1, 24, 24, 1), np.float32), sample=True).shape == (1, 6, 6, 2)


def test_ssim_term_is_one_for_identical_images_and_counts_in_the_loss(tiny_cxr):
    x = tiny_cxr[:4]
    assert np.allclose(np.asarray(ssim_per_image(x, x)), 1.0, atol=1e-5)
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    ours = np.asarray(ssim_per_image(x, noisy))
    reference = medzoo.metrics.ssim(x, noisy)  # the evaluation's SSIM (scikit-image conventions)
    np.testing.assert_allclose(ours, reference, atol=0.03)
    plain, weighted = make("ae"), make("ae", ssim_weight=0.5)
    weighted.set_weights(plain.get_weights())
    base = float(plain.compute_losses(x, x, training=False)["loss"])
    extra = float(weighted.compute_losses(x, x, training=False)["loss"])
    ssim_rec = float(np.mean(ssim_per_image(x, plain.reconstruct(x))))
    assert extra == pytest.approx(base + 0.5 * (1 - ssim_rec), rel=1e-4)


# ------------------------------------------------------------------ tiling
def test_tile_starts_cover_the_image_with_the_overlap():
    assert tile_starts(100, 128, 16) == [0]
    starts = tile_starts(300, 128, 32)
    assert starts == [0, 96, 172]
    assert all(b - a <= 128 - 32 for a, b in zip(starts, starts[1:])) and starts[-1] + 128 == 300


def test_tiled_equals_whole_image_output(trained, tiny_cxr):
    """Tolerance on [0, 1] images: |tiled - whole| <= 0.01 on average, <= 0.05 at the 99th percentile, < 0.1 anywhere.

    Tiles cannot be exactly equal: a pixel near a tile's edge has less context than in
    the whole image. With per-position LayerNorm that is the only difference, and the
    cross-fade takes such pixels mostly from the neighbouring tile. (Measured: 0.0044,
    0.040 and 0.051 for 64 px tiles overlapping by 32 on 96 px images, against a
    reconstruction error of 0.094 of this tiny model. GroupNorm adds the difference
    between a tile's and the whole image's statistics.)
    """
    x = _upscaled(tiny_cxr)
    whole = trained.reconstruct(x, tile_size=None)
    # the tiles as the network gives them: matched to the input's means they are nearer x than whole is
    tiled = trained.reconstruct(x, tile_size=64, overlap=32, match_tile_means=False)
    assert tiled.shape == whole.shape == x.shape
    diff = np.abs(tiled - whole)
    assert diff.mean() <= 0.01 and np.percentile(diff, 99) <= 0.05 and diff.max() < 0.1, (
        diff.mean(), np.percentile(diff, 99), diff.max())
    z_whole, z_tiled = trained.encode(x, tile_size=None), trained.encode(x, tile_size=64, overlap=32)
    assert z_tiled.shape == z_whole.shape
    assert np.abs(z_tiled - z_whole).mean() <= 0.05 * np.abs(z_whole).mean()
    decoded = trained.decode(z_whole, tile_size=64, overlap=32)
    assert np.abs(decoded - trained.decode(z_whole, tile_size=None)).mean() <= 0.01


def test_no_seams_along_tile_borders(trained, tiny_cxr):
    """The reconstruction error in bands along the tile borders is no larger than in the whole-image output there."""
    x = _upscaled(tiny_cxr)
    tile, overlap = 48, 16
    tiled = trained.reconstruct(x, tile_size=tile, overlap=overlap)
    whole = trained.reconstruct(x, tile_size=None)
    band = np.zeros(x.shape[1], bool)
    for start in tile_starts(x.shape[1], tile, overlap)[1:]:
        band[start:start + overlap] = True
    seams = band[:, None] | band[None, :]
    err_tiled, err_whole = np.abs(tiled - x)[:, seams], np.abs(whole - x)[:, seams]
    assert err_tiled.mean() <= 1.05 * err_whole.mean(), (err_tiled.mean(), err_whole.mean())
    assert np.abs(tiled - x)[:, seams].mean() <= 1.1 * np.abs(tiled - x)[:, ~seams].mean() + 0.01


def test_tiles_normalised_apart_come_back_with_their_inputs_means():
    """GroupNorm takes each tile's level away, and the decoder guesses it back: an untrained model's tiles come
    back at levels of their own. ``reconstruct`` shifts each tile to its input's mean before the cross-fade, so
    no block is brighter than its neighbour; ``match_tile_means=False`` gives the tiles as they were."""
    keras.utils.set_random_seed(3)
    model = ConvAutoencoder(**RESIDUAL, latent_channels=2, output_activation="linear")  # GroupNorm, untrained; no clip
    i, j = np.mgrid[:96, :96] / 96.0
    x = (0.2 + 0.3 * i * j + 0.1 * np.sin(9 * i) * np.cos(7 * j)).astype(np.float32)[None, ..., None]
    starts = tile_starts(96, 48, 0)

    def tile_mean_errors(out):
        return np.array([(out - x)[0, a:a + 48, b:b + 48].mean() for a in starts for b in starts])

    raw = model.reconstruct(x, tile_size=48, overlap=0, match_tile_means=False)
    matched = model.reconstruct(x, tile_size=48, overlap=0)
    assert np.abs(tile_mean_errors(matched)).max() < 1e-5
    assert np.ptp(tile_mean_errors(raw)) > 0.01  # the offsets the matching took out
    np.testing.assert_allclose(matched - raw, np.kron(-tile_mean_errors(raw).reshape(2, 2), np.ones((48, 48)))[
        None, ..., None], atol=1e-5)  # a constant per tile: the texture inside is the network's
    blended = model.reconstruct(x, tile_size=48, overlap=16)  # cross-faded tiles keep the means they overlap with
    assert np.abs(tile_mean_errors(blended)).max() < 0.5 * np.abs(tile_mean_errors(raw)).max()


def test_tiles_go_through_the_model_in_groups_with_the_same_result_as_one_by_one(trained, tiny_cxr, monkeypatch):
    """Batching many tiles per model call (fewer, larger calls: the speed at native size) changes no output."""
    x = np.concatenate([np.tile(tiny_cxr[:2], (1, 3, 3, 1))[:, :88, :80]] * 2)  # 4 images, 4 x 3 tile positions
    calls = []
    original = trained._batched

    def counting(key, fn, t, batch_size):
        calls.append(len(t))
        return original(key, fn, t, batch_size)

    monkeypatch.setattr(trained, "_batched", counting)
    grouped = trained.reconstruct(x, tile_size=32, overlap=8)
    assert len(calls) == 1 and calls[0] == 4 * 12  # every tile of every image in one call
    monkeypatch.setattr(medzoo.models.tiling, "TILE_GROUP_PIXELS", 1)  # one tile position a call, as before
    calls.clear()
    one_by_one = trained.reconstruct(x, tile_size=32, overlap=8)
    assert len(calls) == 12 and set(calls) == {4}
    np.testing.assert_allclose(grouped, one_by_one, atol=1e-5)


def test_large_images_are_tiled_automatically(trained, monkeypatch):
    calls = []
    original = medzoo.models.tiling.tiled_apply

    def spy(*args, **kwargs):
        calls.append(kwargs["tile"])
        return original(*args, **kwargs)

    monkeypatch.setattr(medzoo.models.tiling, "tiled_apply", spy)
    monkeypatch.setattr(type(trained), "auto_tile_pixels", 64 * 64)
    monkeypatch.setattr(type(trained), "default_tile", (32, 8))
    x = np.random.default_rng(0).random((1, 70, 90, 1), dtype=np.float32)
    assert trained.reconstruct(x).shape == x.shape and calls == [32]
    trained.reconstruct(x[:, :60, :60])
    assert calls == [32]  # 3,600 pixels: one pass


def test_vqvae_tiles_blend_features_then_quantise():
    model = make("vqvae")
    x = np.random.default_rng(0).random((1, 64, 64, 1), dtype=np.float32)
    codes = model.encode(x, tile_size=32, overlap=8)
    assert codes.shape == (1, 16, 16) and np.issubdtype(codes.dtype, np.integer)
    assert model.decode(codes, tile_size=32, overlap=8).shape == x.shape


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize("images, match", [
    (np.zeros((1, 3, 40, 1), np.float32), "smaller than the model's downsampling factor 4"),
    (np.full((1, 16, 16, 1), np.nan, np.float32), "NaN or infinite"),
    (np.full((1, 16, 16, 1), np.inf, np.float32), "NaN or infinite"),
    (np.zeros((1, 16, 16, 3), np.float32), r"\(N, H, W, 1\)"),
])
def test_bad_images_are_refused(images, match):
    with pytest.raises(DataError, match=match):
        make("ae").reconstruct(images)


@pytest.mark.parametrize("tile, overlap, match", [
    (30, 8, "multiple of the model's downsampling factor 4"),
    (4, 0, "at least 8"),
    (32, 6, "overlap must be a multiple of 4"),
    (32, 20, "half the tile size"),
    ("big", 8, "integer"),
])
def test_tile_sizes_that_do_not_fit_the_model(tile, overlap, match):
    with pytest.raises(ConfigError, match=match):
        make("ae").reconstruct(np.zeros((1, 64, 64, 1), np.float32), tile_size=tile, overlap=overlap)


@pytest.mark.parametrize("kwargs, match", [
    (dict(normalization="batch"), "batch"),
    (dict(depth=5, filters=[4] * 5), r"f = 2\*\*depth"),
    (dict(input_shape=(64, 64, 1)), r"input_shape=\(None, None, 1\)"),
    (dict(input_shape=(None, None, 2)), "1 or 3 channels"),
    (dict(architecture="transformer"), "architecture must be one of"),
])
def test_bad_residual_configs(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make("ae", **kwargs)


def test_flat_latents_and_tiles_need_the_right_architecture():
    with pytest.raises(ConfigError, match="latent_channels, not latent_dim"):
        VAE(**RESIDUAL, latent_dim=8)
    conv = ConvAutoencoder(input_shape=(32, 32, 1), filters=4, depth=2)
    with pytest.raises(ConfigError, match="needs an any-size model"):
        conv.reconstruct(np.zeros((1, 32, 32, 1), np.float32), tile_size=16)
    with pytest.raises(ConfigError, match="residual"):
        ConvAutoencoder(input_shape=(32, 32, 1), filters=4, depth=2, attention=True)


# ------------------------------------------------------------ serialization
def test_keras_file_round_trip_in_a_fresh_process(tmp_path):
    model = make("vae", attention=True, blocks_per_level=2, ssim_weight=0.1)
    x = np.random.default_rng(2).random((1, 23, 30, 1), dtype=np.float32)
    path = tmp_path / "v2.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.reconstruct(x))
    code = (
        "import numpy as np, keras, medzoo\n"
        f"m = keras.saving.load_model(r'{path}', safe_mode=True)\n"
        f"x = np.load(r'{tmp_path / 'x.npy'}')\n"
        "assert m.architecture == 'residual' and m.attention and m.blocks_per_level == 2 and m.ssim_weight == 0.1\n"
        f"np.testing.assert_array_equal(m.reconstruct(x), np.load(r'{tmp_path / 'expected.npy'}'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_preset_of_an_any_size_model_records_null_sizes_and_warns_far_from_training(tmp_path):
    from medzoo.zoo.manifest import _validate_input

    model = make("ae")
    spec = PreprocessSpec(size=None)
    preset = medzoo.save_preset(model, tmp_path / "p", name="ae-any", spec=spec, description="test",
                                training={"resolution": {"image_side": [32, 64], "pixel_spacing_mm": None}})
    loaded = medzoo.load(preset)
    meta = loaded.zoo_metadata
    assert meta["input"]["shape"] == [None, None, 1] and meta["input"]["preprocess"]["size"] is None
    _validate_input(meta["input"], medzoo.zoo.presets.read_json(preset / "config.json"), "input")  # no error
    x = np.random.default_rng(0).random((1, 300, 40, 1), dtype=np.float32)
    np.testing.assert_array_equal(loaded.reconstruct(x[:, :40]), model.reconstruct(x[:, :40]))
    with pytest.warns(UserWarning, match="sides of 32-64 pixels.*300x40.*domain shift"):
        loaded.reconstruct(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded.reconstruct(x[:, :100])  # within 4x of the training sizes: no warning


def test_crops_at_random_scales_widen_the_sizes_a_model_takes_without_a_warning():
    """A model trained on 1024 px images cropped at scales down to 128 px knows 128 px anatomy (issue 38)."""
    model = ConvAutoencoder(input_shape=(None, None, 1), architecture="residual", filters=[4, 8], depth=2,
                            latent_channels=1, seed=0)
    x = np.random.default_rng(0).random((1, 128, 128, 1), dtype=np.float32)
    model.training_resolution = {"image_side": [1024, 1024], "pixel_spacing_mm": None}
    with pytest.warns(medzoo.DomainShiftWarning, match="sides of 1024-1024 pixels; these are 128x128"):
        model.reconstruct(x)
    model.training_resolution = {**model.training_resolution, "scales": {"min_side": 128, "crop_size": 96}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.reconstruct(x)  # seen at this scale: no warning
    with pytest.warns(medzoo.DomainShiftWarning, match=r"sides of 128-1024 pixels \(and crops of them at random"):
        model.reconstruct(x[:, :24, :24])


def test_a_preset_trained_on_crops_reconstructs_large_images_in_the_tiles_it_records(tmp_path):
    """training.tiling (Recipe.inference_tile): tile_size="auto" uses those tiles above four tiles' pixels,
    so GroupNorm sees the statistics of crops like those it was trained on, not of the whole image."""
    from medzoo.recipes import get_recipe

    model = make("ae")
    preset = medzoo.save_preset(model, tmp_path / "p", name="ae-tiled", spec=PreprocessSpec(size=None),
                                description="test", training={"tiling": {"tile": 32, "overlap": 8}})
    loaded = medzoo.load(preset)
    assert loaded.default_tile == (32, 8) and loaded.auto_tile_pixels == 4 * 32 * 32
    assert type(loaded).default_tile == (512, 64)  # the class keeps its default: only this instance changed
    x = np.random.default_rng(1).random((1, 80, 72, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.reconstruct(x), loaded.reconstruct(x, tile_size=32, overlap=8), atol=1e-6)
    assert np.abs(loaded.reconstruct(x) - loaded.reconstruct(x, tile_size=None)).max() > 1e-4  # tiles differ
    small = x[:, :64, :64]  # four tiles' pixels: one pass
    np.testing.assert_allclose(loaded.reconstruct(small), loaded.reconstruct(small, tile_size=None), atol=1e-6)
    with pytest.raises(ConfigError, match="inference_tile"):
        get_recipe("ae-chestxray-f4c3").with_overrides(inference_tile=[128, 128])


def test_a_tiled_vae_s_likelihood_is_the_mean_over_the_tiles_it_reconstructs_in():
    from medzoo.metrics import vae_negative_elbo_bits
    from medzoo.models.tiling import set_inference_tile

    model = make("vae")
    images = np.random.default_rng(0).random((2, 64, 48, 1)).astype(np.float32)
    whole = vae_negative_elbo_bits(model, images, 0.05)  # below four tiles' pixels: one pass
    assert whole.shape == (2,) and np.all(whole > 0)
    set_inference_tile(model, [16, 4])  # now 64 x 48 is tiled: 4 x 3 tiles of 16 px
    tiled = vae_negative_elbo_bits(model, images, [0.05, 0.1])
    pieces = [vae_negative_elbo_bits(model, images[:, t:t + 16, l:l + 16], [0.05, 0.1])
              for t in range(0, 64, 16) for l in range(0, 48, 16)]
    assert tiled.shape == (2, 2)
    np.testing.assert_allclose(tiled, np.mean(pieces, axis=0), rtol=1e-6)
