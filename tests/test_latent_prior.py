"""The latent prior: flow matching learns a toy latent distribution, sampling is seeded, presets round-trip,
backends agree, and bad requests get one-line errors that list what is allowed."""

import json
import subprocess
import sys

import numpy as np
import pytest

import medzoo
from medzoo.errors import ConfigError
from medzoo.models import VAE, LatentPrior
from medzoo.zoo.presets import load_preset, save_preset
from tests.test_backends import run_backend

#: two classes of 4x4x2 latents: every value near +2 (label 0) or near -2 (label 1)
MODES = {0: 2.0, 1: -2.0}


def toy_latents(n=512, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int32)
    centres = np.where(labels == 0, MODES[0], MODES[1]).astype(np.float32)
    return centres[:, None, None, None] + 0.1 * rng.standard_normal((n, 4, 4, 2)).astype(np.float32), labels


def tiny_prior(**kwargs):
    options = dict(latent_channels=2, labels=["up", "down"], latent_size=(4, 4), channels=(16, 16), blocks=1,
                   attention_levels=(1,), embed_dim=32, dropout=0.0)
    prior = LatentPrior(**{**options, **kwargs})
    prior.build()
    return prior


@pytest.fixture(scope="module")
def trained():
    """A tiny prior trained on the toy latents (a few hundred steps), with its losses per epoch."""
    import keras

    keras.utils.set_random_seed(0)
    z, y = toy_latents()
    prior = tiny_prior(label_dropout=0.3)  # the null label often enough for the unconditional model to learn too
    prior.adapt(z)
    prior.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = prior.fit({"latents": z, "labels": y}, batch_size=64, epochs=40, verbose=0)
    return prior, history.history["loss"]


def test_flow_matching_loss_falls_and_samples_recover_the_modes(trained):
    prior, losses = trained
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:2]), losses
    for label, centre in MODES.items():
        z = prior.sample_latents(64, label=label, seed=1, steps=20, guidance=1.0)
        assert abs(z.mean() - centre) < 0.3, (label, z.mean())
        assert np.mean(np.sign(z.mean(axis=(1, 2, 3))) == np.sign(centre)) > 0.95
    # the null label samples both modes, in about equal shares
    z = prior.sample_latents(128, label=None, seed=2, steps=20)
    share_up = np.mean(z.mean(axis=(1, 2, 3)) > 0)
    assert 0.2 < share_up < 0.8, share_up
    assert np.mean(np.abs(np.abs(z.mean(axis=(1, 2, 3))) - 2.0) < 0.5) > 0.9


def test_generate_is_seeded_and_returns_the_autoencoders_images(trained):
    prior, _ = trained
    vae = VAE(input_shape=(16, 16, 1), filters=4, depth=2, latent_channels=2)
    vae.build()
    prior.attach(vae)
    a = prior.generate(3, label="UP", seed=5, steps=4)
    b = prior.generate(3, label=0, seed=5, steps=4)
    c = prior.generate(3, label="up", seed=6, steps=4)
    assert a.shape == (3, 16, 16, 1) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4
    mixed = prior.generate(2, label=["up", "down"], seed=5, steps=4)
    assert mixed.shape == (2, 16, 16, 1)
    varied = prior.vary(a, strength=0.5, seed=1, steps=4)
    assert varied.shape == a.shape and np.abs(varied - a).max() > 0
    assert prior.vary(a[0], strength=0.5, seed=1, steps=4).shape == (1, 16, 16, 1)


def test_a_preset_may_give_a_label_its_own_guidance(trained):
    """``training.sampling.guidance_per_label`` sets a label's default scale: its samples equal those drawn with that
    scale given, other labels keep the preset's, an explicit scale overrides both; an unknown label is refused."""
    prior, _ = trained
    saved = getattr(prior, "zoo_metadata", None)
    try:
        prior.zoo_metadata = {"training": {"sampling": {"steps": 4, "guidance": 2.0,
                                                        "guidance_per_label": {"UP": 0.5}}}}
        assert prior.guidance_per_label == {"up": 0.5}
        own = prior.sample_latents(3, label=["up", "down", "up"], seed=2)
        np.testing.assert_allclose(own[[0, 2]], prior.sample_latents(3, label="up", seed=2, guidance=0.5)[[0, 2]],
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(own[1], prior.sample_latents(3, label="down", seed=2, guidance=2.0)[1],
                                   rtol=1e-5, atol=1e-5)
        assert np.abs(own[0] - prior.sample_latents(1, label="up", seed=2, guidance=2.0)[0]).max() > 1e-3
        prior.zoo_metadata = {"training": {"sampling": {"guidance_per_label": {"sideways": 1.0}}}}
        with pytest.raises(ConfigError, match="labels: up, down"):
            prior.sample_latents(1, label="up", steps=2)
    finally:
        prior.zoo_metadata = saved


def test_bad_requests_fail_with_what_is_allowed(trained):
    prior, _ = trained
    with pytest.raises(ConfigError, match="labels: up, down"):
        prior.sample_latents(2, label="sideways")
    with pytest.raises(ConfigError, match="n must be"):
        prior.sample_latents(0)
    with pytest.raises(ConfigError, match="steps must be"):
        prior.sample_latents(2, steps=0)
    with pytest.raises(ConfigError, match="strength"):
        tiny_prior().attach(VAE(input_shape=(16, 16, 1), filters=4, depth=2, latent_channels=2)).vary(
            np.zeros((1, 16, 16, 1), np.float32), strength=0.0)
    with pytest.raises(ConfigError, match="no autoencoder attached"):
        tiny_prior().generate(1)
    with pytest.raises(ConfigError, match="latents with 2 channels"):
        tiny_prior().attach(VAE(input_shape=(16, 16, 1), filters=4, depth=2, latent_channels=3))
    with pytest.raises(ConfigError, match="distinct"):
        LatentPrior(labels=["a", "a"])


def _save(prior, folder, autoencoder="vae-chestxray-f8c4"):
    prior.autoencoder_name = autoencoder
    training = {"recipe": "toy", "dataset": {"name": "toy", "licence": "CC0-1.0", "citation": "none"},
                "splits": {"train": "train"}, "epochs": 1, "sampling": {"steps": 3, "guidance": 1.5},
                "autoencoder": {"name": autoencoder, "version": "1.1.0"}}
    return save_preset(prior, folder, name="prior-toy", spec=medzoo.PreprocessSpec(size=None), training=training,
                       metrics={"toy": {"loss": 1.0}})


def test_a_preset_round_trips_and_loads_its_autoencoder(tmp_path):
    prior = tiny_prior(latent_channels=4, latent_size=(4, 4))
    prior.adapt(np.random.default_rng(0).normal(1.0, 2.0, (64, 4, 4, 4)))
    folder = _save(prior, tmp_path / "prior")
    again = load_preset(folder, compile=False)
    assert isinstance(again, LatentPrior) and again.labels == ["up", "down"]
    np.testing.assert_allclose(prior.sample_latents(2, "down", seed=3, steps=3),
                               again.sample_latents(2, "down", seed=3, steps=3), atol=1e-5)
    loaded = medzoo.load(str(folder))  # through the zoo: the autoencoder it names comes with it
    assert loaded.autoencoder is not None and loaded.autoencoder.zoo_metadata["name"] == "vae-chestxray-f8c4"
    images = loaded.generate(2, label="up", seed=0, steps=2)
    assert images.shape == (2, 32, 32, 1)
    reused = medzoo.load(str(folder), autoencoder=loaded.autoencoder)
    assert reused.autoencoder is loaded.autoencoder


def test_a_prior_whose_autoencoder_is_missing_says_so(tmp_path):
    folder = _save(tiny_prior(latent_channels=4, latent_size=(4, 4)), tmp_path / "prior", autoencoder="vae-nowhere")
    with pytest.raises(ConfigError, match="decodes with the autoencoder 'vae-nowhere'"):
        medzoo.load(str(folder))


_SAMPLE_UNDER = """
import sys, numpy as np, medzoo
from medzoo.zoo.presets import load_preset
prior = load_preset(sys.argv[1], compile=False)
np.save(sys.argv[2], prior.sample_latents(4, label=["up", "down", None, "up"], seed=7, steps=5, guidance=2.0))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_draw_the_same_latents_as_tensorflow(tmp_path, backend):
    prior = tiny_prior(latent_channels=4, latent_size=(4, 4))
    prior.adapt(np.random.default_rng(0).normal(0.5, 1.5, (64, 4, 4, 4)))
    folder = _save(prior, tmp_path / "prior")
    ours = load_preset(folder, compile=False).sample_latents(4, label=["up", "down", None, "up"], seed=7, steps=5,
                                                             guidance=2.0)
    run_backend(backend, _SAMPLE_UNDER, folder, tmp_path / "theirs.npy")
    np.testing.assert_allclose(np.load(tmp_path / "theirs.npy"), ours, atol=1e-4)


def test_the_cli_writes_pngs_dicoms_and_a_contact_sheet(tmp_path):
    import pydicom

    folder = _save(tiny_prior(latent_channels=4, latent_size=(4, 4)), tmp_path / "prior")
    cli = [sys.executable, "-m", "medzoo.cli", "generate", str(folder)]
    out = subprocess.run(cli + ["-n", "3", "--label", "down", "--seed", "1", "-o", str(tmp_path / "png")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    pngs = sorted((tmp_path / "png").glob("synthetic_down_seed1_0*.png"))
    assert len(pngs) == 3 and (tmp_path / "png" / "synthetic_down_seed1_sheet.png").is_file()
    out = subprocess.run(cli + ["-n", "2", "--dicom", "-o", str(tmp_path / "dcm")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ds = pydicom.dcmread(sorted((tmp_path / "dcm").glob("*.dcm"))[0])
    assert list(ds.ImageType)[:1] == ["DERIVED"] and ds.ConversionType == "SYN"
    assert "SYNTHETIC" in ds.DerivationDescription and ds.pixel_array.shape == (32, 32)
    for args, message in ((["--label", "sideways"], "labels: up, down"), (["-n", "0"], "n must be"),
                          (["--steps", "0"], "steps must be")):
        out = subprocess.run(cli + args + ["-o", str(tmp_path / "bad")], capture_output=True, text=True)
        assert out.returncode == 1 and message in out.stderr, out.stderr
        error = [line for line in out.stderr.strip().splitlines() if not line.startswith("INFO ")]
        assert len(error) == 1 and message in error[0], out.stderr  # one line, no traceback


def test_a_run_stopped_after_its_last_checkpoint_keeps_its_steps_in_the_stages():
    """A prior's run killed between checkpoints never writes its stage; resuming lists those steps and that
    time as a stage of their own, so the stages add up to the steps the weights saw."""
    from medzoo.recipes.prior import with_interrupted_stage

    done = {"steps": 4321, "wall_time_s": 6380.2, "stages": [{"steps": 4321, "wall_time_s": 6380.2}]}
    assert with_interrupted_stage(done) == done
    killed = {"steps": 6000, "wall_time_s": 8900.0, "stages": [{"steps": 4321, "wall_time_s": 6380.2}]}
    stages = with_interrupted_stage(killed)["stages"]
    assert [s["steps"] for s in stages] == [4321, 1679] and stages[-1]["wall_time_s"] == 2519.8
    assert "resumed" in stages[-1]["note"] and killed["stages"] == [{"steps": 4321, "wall_time_s": 6380.2}]
    # resumed with no time left, only to write the preset: no empty stage, the stopped one gets the machine
    from medzoo.recipes.prior import with_stage

    now = {"steps": 0, "wall_time_s": 0.0, "hardware": "2 CPU cores", "backend": "tensorflow"}
    closed = with_stage(stages, now)
    assert [s["steps"] for s in closed] == [4321, 1679] and closed[-1]["hardware"] == "2 CPU cores"
    assert closed[-1]["wall_time_s"] == 2519.8 and "hardware" not in closed[0]
    assert with_stage(stages, {**now, "steps": 10})[-1]["steps"] == 10 and len(with_stage(stages, now)) == 2


def test_mirrored_datasets_add_their_mirror_images_to_the_cache_with_their_labels(tmp_path, monkeypatch):
    """A generalist's small sets are also seen left-right mirrored, labelled as their originals (an unlabelled
    image's mirror stays unlabelled); chest X-rays never are; a cache made without mirrors is encoded again."""
    import dataclasses

    from medzoo.recipes import prior as recipes

    rng = np.random.default_rng(0)
    images = rng.random((8, 4, 4, 1)).astype(np.float32)
    labels = np.array([1, 2, 1, 2, 4, 5, 4, 0], np.int32)
    modalities = np.array([0, 0, 0, 0, 1, 1, 1, 3])
    monkeypatch.setattr(recipes, "training_images", lambda recipe, split, data_dir=None: (images, labels, modalities))

    class Encoder:  # the "latent" is the image itself, so mirrors can be told apart
        calls = 0

        def encode(self, x, batch_size=64):
            Encoder.calls += 1
            return x

    generalist = dataclasses.replace(recipes.get_prior_recipe("prior-generalist-f8c4"), jittered=())
    assert "kermany_pediatric_cxr_128" not in generalist.mirrored
    plain = dataclasses.replace(generalist, mirrored=())
    z, y, m = recipes.cached_latents(plain, Encoder(), tmp_path)
    assert len(z) == 8 and Encoder.calls == 1
    z, y, m = recipes.cached_latents(generalist, Encoder(), tmp_path, labelled_fraction=0.5)
    assert Encoder.calls == 2  # another mirroring: encoded again
    kept = recipes.keep_labels(labels, 0.5, generalist.seed)
    pick = np.isin(modalities, [1, 3])  # brain MRI (1) and fetal head (3) are mirrored here, chest (0) not
    np.testing.assert_array_equal(z[8:], images[pick][:, :, ::-1])
    np.testing.assert_array_equal(y, np.concatenate([kept, kept[pick]]))
    np.testing.assert_array_equal(m, np.concatenate([modalities, modalities[pick]]))
    again = recipes.cached_latents(generalist, Encoder(), tmp_path)
    assert Encoder.calls == 2 and np.array_equal(again[0], z)  # the same mirroring: the cache is reused
    with pytest.raises(ConfigError, match="not among its datasets"):
        recipes.with_mirrors(dataclasses.replace(generalist, datasets=generalist.datasets[:1]), images, labels, modalities)


def test_jittered_copies_follow_the_mirrors_in_the_cache_labelled_as_their_originals(tmp_path, monkeypatch):
    """Jittered copies of the chosen sets come after the mirrors, copy by copy, with their originals' labels (kept
    or dropped alike); a brain copy may be mirrored, a chest copy never; the metadata's record rebuilds them
    (``seen_images``); another jittering encodes the cache again; a dataset the recipe lacks is refused."""
    import dataclasses

    from medzoo.data.jitter import jittered_copies, name_seed
    from medzoo.recipes import prior as recipes

    rng = np.random.default_rng(1)
    images = rng.random((8, 6, 6, 1)).astype(np.float32)
    labels = np.array([1, 2, 1, 2, 4, 5, 4, 0], np.int32)
    modalities = np.array([0, 0, 0, 0, 1, 1, 1, 3])
    monkeypatch.setattr(recipes, "training_images", lambda recipe, split, data_dir=None: (images, labels, modalities))

    class Encoder:
        calls = 0

        def encode(self, x, batch_size=64):
            Encoder.calls += 1
            return x

    base = recipes.get_prior_recipe("prior-generalist-f8c4")
    chest, brain = base.datasets[0], base.datasets[1]
    recipe = dataclasses.replace(base, jittered=((chest, 1), (brain, 2)))
    z, y, m = recipes.cached_latents(recipe, Encoder(), tmp_path, labelled_fraction=0.5)
    kept = recipes.keep_labels(labels, 0.5, recipe.seed)
    mirrors = int(np.isin(modalities, [1, 3]).sum())
    start = 8 + mirrors
    assert len(z) == start + 4 + 2 * 3
    # in the order of the datasets' names: brain MRI's copies, then the chest X-rays'
    np.testing.assert_array_equal(z[start:start + 6], jittered_copies(images[4:7], 2, name_seed(brain, 0), flip=True))
    np.testing.assert_array_equal(z[start + 6:], jittered_copies(images[:4], 1, name_seed(chest, 0)))
    np.testing.assert_array_equal(y[start:], np.concatenate([np.tile(kept[4:7], 2), kept[:4]]))
    np.testing.assert_array_equal(m[start:], [1] * 6 + [0] * 4)
    # what the benchmark compares samples with: originals, mirrors and the same copies
    record = {"mirrored": list(recipe.mirrored), "jittered": {brain: 2}, "seed": recipe.seed}
    seen = recipes.seen_images(images[4:7], brain, record)
    np.testing.assert_array_equal(seen, np.concatenate([images[4:7], images[4:7, :, ::-1], z[start:start + 6]]))
    assert len(recipes.seen_images(images[:4], chest, record)) == 4  # chest: not jittered in this record
    assert Encoder.calls == 1
    recipes.cached_latents(recipe, Encoder(), tmp_path)
    assert Encoder.calls == 1  # the same jittering: reused
    recipes.cached_latents(dataclasses.replace(recipe, jittered=((brain, 1),)), Encoder(), tmp_path)
    assert Encoder.calls == 2  # another jittering: encoded again
    with pytest.raises(ConfigError, match="jittered datasets"):
        recipes.with_jittered(dataclasses.replace(recipe, jittered=(("nope", 1),)), images, labels, modalities)
