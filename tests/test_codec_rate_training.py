"""An autoencoder trained for rate (``ConvAutoencoder(rate_steps=...)``, recipe ``codec-chestxray``).

Codec v3's design: a zoo autoencoder's latent widened and fine-tuned for rate + distortion at
the latent steps of its quality levels, its streams coded by ``medzoo.codec.latent``. Tiny
residual models on real X-ray crops stand in for the zoo's; the checks are that the rate term
is priced and trained, that the levels are the trained steps, that widening starts from the
source's function exactly, and that a recipe run records real streams per level.
"""

import importlib
import json

import keras
import numpy as np
import pytest

import medzoo
from medzoo.codec import latent
from medzoo.errors import ConfigError
from medzoo.models import ConvAutoencoder
from medzoo.recipes import train

train_module = importlib.import_module("medzoo.recipes.train")  # the package's `train` is the function

RESIDUAL = dict(input_shape=(None, None, 1), architecture="residual", filters=[8, 16], depth=2,
                normalization="layer", seed=1)
STEPS = (0.5, 0.25, 0.125)


def _fit(model, images, epochs=12):
    """A few epochs over the 48 images (32 px) in batches of 16."""
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model.fit(images, epochs=epochs, batch_size=16, shuffle=True, verbose=0).history


@pytest.mark.parametrize("kwargs, message", [
    ({"rate_weight": 1e-3}, "needs rate_steps"),
    ({"rate_steps": [0.5, -1.0], "rate_weight": 1e-3}, "distinct positive"),
    ({"rate_steps": [0.5, 0.5], "rate_weight": 1e-3}, "distinct positive"),
    ({"rate_steps": [0.5], "rate_weight": 0.0}, "rate_weight must be positive"),
])
def test_rate_settings_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ConvAutoencoder(**RESIDUAL, latent_channels=2, **kwargs)
    with pytest.raises(ConfigError, match="spatial latent"):
        ConvAutoencoder(input_shape=(32, 32, 1), filters=4, depth=2, latent_dim=8, rate_steps=[0.5], rate_weight=1)


def test_the_rate_is_priced_and_trained_and_the_levels_are_the_trained_steps(tiny_cxr):
    keras.utils.set_random_seed(0)
    model = ConvAutoencoder(**RESIDUAL, latent_channels=3, rate_steps=STEPS, rate_weight=2e-3)
    assert model.metric_names == ("loss", "reconstruction_loss", "bpp")
    history = _fit(model, tiny_cxr)
    assert history["bpp"][-1] < history["bpp"][0]  # the density and the latent learn to cost less
    # fewest bits first: the halved image at the coarser steps, then the full image at the finer ones
    assert latent.levels_of(model) == ((2, 0.5), (2, 0.25), (1, 0.25), (1, 0.125))
    clone = ConvAutoencoder.from_config(model.get_config())
    assert clone.rate_steps == STEPS and clone.rate_weight == 2e-3 and len(clone.weights) == len(model.weights)

    x = tiny_cxr[:4]
    sizes, errors = [], []
    for q in range(len(latent.levels_of(model))):
        data = medzoo.compress(x, model, quality=q)
        out = medzoo.decompress(data, model)
        sizes.append(len(data))
        errors.append(float(np.mean((out - x) ** 2)))
    assert sizes[0] < sizes[1] < sizes[2] < sizes[3] and errors[0] > errors[2] > errors[3]

    # the estimate a training step reports prices what decoding sees: a coarser step, fewer estimated bits
    t = keras.ops.convert_to_tensor(x[:3])
    terms = model.forward_terms(t, False)  # evaluation: the levels in turn, one per image
    assert keras.ops.convert_to_numpy(terms["step"]).ravel().tolist() == list(STEPS)
    bits = -np.log2(keras.ops.convert_to_numpy(terms["likelihood"])).sum(axis=(1, 2, 3))
    assert bits[0] < bits[1] < bits[2]


def test_the_rate_model_alone_fits_a_trained_latent_first(tiny_cxr):
    """What a fine-tune for rate starts with: its fresh density fitted to the source's latents, nothing else moved."""
    keras.utils.set_random_seed(0)
    model = ConvAutoencoder(**RESIDUAL, latent_channels=3, rate_steps=STEPS, rate_weight=1e-3)
    networks = [np.array(keras.ops.convert_to_numpy(v)) for v in model.encoder.weights + model.decoder.weights]
    before, after = model.fit_latent_density(tiny_cxr)
    assert after < 0.9 * before
    for old, var in zip(networks, model.encoder.weights + model.decoder.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(var))
    with pytest.raises(ConfigError, match="rate-trained"):
        ConvAutoencoder(**RESIDUAL, latent_channels=3).fit_latent_density(tiny_cxr)


def test_a_wider_latent_starts_from_the_source_function_exactly(tiny_cxr, monkeypatch):
    keras.utils.set_random_seed(0)
    source = ConvAutoencoder(**RESIDUAL, latent_channels=2)
    _fit(source, tiny_cxr, epochs=3)
    monkeypatch.setattr(train_module, "_starting_point", lambda name: (source, {"model": name}))

    wide = ConvAutoencoder(**RESIDUAL, latent_channels=5, rate_steps=STEPS, rate_weight=1e-3)
    before = np.array(keras.ops.convert_to_numpy(wide.latent_density.weights[0]))
    train_module._start_from(wide, "tiny-source")
    x = tiny_cxr[:4]
    np.testing.assert_allclose(wide.reconstruct(x), source.reconstruct(x), atol=1e-6)
    z = wide.encode(x)
    np.testing.assert_allclose(z[..., :2], source.encode(x), atol=1e-6)
    assert np.abs(z[..., 2:]).max() > 0  # the new channels exist (initialised), the decoder ignores them at first
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(wide.latent_density.weights[0]), before)

    other_filters = ConvAutoencoder(**dict(RESIDUAL, filters=[8, 24]), latent_channels=5)
    with pytest.raises(ConfigError, match="not the recipe's architecture"):
        train_module._start_from(other_filters, "tiny-source")


def test_a_narrower_latent_starts_from_the_source_latent_s_principal_components(tiny_cxr, monkeypatch, tmp_path):
    keras.utils.set_random_seed(0)
    source = ConvAutoencoder(**RESIDUAL, latent_channels=3)
    _fit(source, tiny_cxr, epochs=6)
    monkeypatch.setattr(train_module, "_starting_point", lambda name: (source, {"model": name}))
    monkeypatch.setattr(train_module, "NARROWING_CROPS", 32)

    narrow = ConvAutoencoder(**RESIDUAL, latent_channels=1)
    train_module._start_from(narrow, "tiny-source")
    assert train_module._narrowing_source(narrow) is source
    narrow.save_weights(tmp_path / "pending.weights.h5")  # the pending source is not saved with the model
    narrow.load_weights(tmp_path / "pending.weights.h5")
    untouched = ConvAutoencoder.from_config(narrow.get_config())
    untouched.set_weights(narrow.get_weights())  # every weight but the latent's two layers copied, not yet those
    batches = [(tiny_cxr[i:i + 16], tiny_cxr[i:i + 16]) for i in range(0, 48, 16)]
    train_module._narrow_latent(narrow, batches, tmp_path)
    for a, b in zip(narrow.weights, source.weights):
        if a.path.split("/")[0] not in (train_module.LATENT_HEAD, train_module.LATENT_INPUT):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    z = source.encode(tiny_cxr[:32], tile_size=None).reshape(-1, 3).astype(np.float64)  # the crops it narrowed on
    variances, directions = np.linalg.eigh(np.cov(z - z.mean(axis=0), rowvar=False))
    record = narrow.initialized_from["latent_narrowed"]
    assert record["from_channels"] == 3 and record["to_channels"] == 1 and record["crops"] == 32
    assert abs(record["variance_kept"] - variances[-1] / variances.sum()) < 1e-3
    assert json.loads((tmp_path / train_module.NARROWING_FILE).read_text()) == record
    assert train_module._narrowing_source(narrow) is None

    # a resumed or finished run rebuilds the model from init_from: the run directory's record goes back in
    resumed = ConvAutoencoder(**RESIDUAL, latent_channels=1)
    train_module._start_from(resumed, "tiny-source")
    train_module._forget_narrowing_source(resumed, tmp_path)
    assert train_module._narrowing_source(resumed) is None and resumed.initialized_from["latent_narrowed"] == record
    resumed.load_weights(tmp_path / "pending.weights.h5")

    # the narrowed latent is the source latent's first principal component, exactly (the head is linear)
    x = tiny_cxr[32:]
    centred = source.encode(x, tile_size=None).reshape(-1, 3) - z.mean(axis=0)
    t = narrow.encode(x, tile_size=None).reshape(-1)
    assert abs(np.corrcoef(t, centred @ directions[:, -1])[0, 1]) > 0.999
    assert np.var(t) >= 0.9 * np.var(centred, axis=0).max()  # it keeps more than any one source channel
    # and it reconstructs far better than the same network with its latent layers at their initial weights
    err_narrow = np.mean((narrow.reconstruct(x, tile_size=None) - x) ** 2)
    err_untouched = np.mean((untouched.reconstruct(x, tile_size=None) - x) ** 2)
    assert err_narrow < 0.5 * err_untouched


def test_a_codec_recipe_records_real_streams_per_latent_step(tmp_path):
    """On a mixture, the streams are coded on its first dataset alone (rates of different sets do not average)."""
    from medzoo.zoo.manifest import add_to_manifest, info

    result = train("codec-chestxray", output_dir=tmp_path / "run", epochs=1, verbose=0, max_images=16,
                          batch_size=8, crop_size=32, crops_per_image=1,
                          dataset=["kermany_pediatric_cxr_64", "brain_tumor_figshare_128"], dataset_weights=[0.5, 0.5],
                          min_side=None, init_from=None, inference_tile=None,
                          model={"filters": [8, 16], "blocks_per_level": 1, "latent_channels": 4,
                                 "rate_steps": [0.5, 0.125]}, weights_dtype="float32")
    manifest = tmp_path / "manifest.json"
    add_to_manifest(result.preset_dir, manifest_path=manifest)
    rows = info("codec-chestxray", manifest_path=manifest)["codec"]["qualities"]
    assert [(r["quality"], r["factor"], r["step"]) for r in rows] == [(0, 2, 0.5), (1, 1, 0.125)]
    assert rows[0]["bpp"] < rows[1]["bpp"]
    per = result.metrics["per_dataset"]
    assert "qualities" in per["kermany_pediatric_cxr_64"] and "qualities" not in per["brain_tumor_figshare_128"]
    assert per["brain_tumor_figshare_128"]["psnr"] > 0
    card = (result.preset_dir / "README.md").read_text()
    assert "| quality | factor | latent step |" in card and f"| 1 | 1 | 0.125 | {rows[1]['bpp']:.3f} |" in card
    assert f"| 0 | 2 | 0.5 | {rows[0]['bpp']:.3f} |" in card
