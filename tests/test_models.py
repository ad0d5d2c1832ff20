"""The three model families: training, the encode/decode API, and serialization.

Backend-neutral: CI runs this file under TensorFlow and again under JAX (KERAS_BACKEND=jax).
"""

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import medzoo
from medzoo.callbacks import KLWarmup
from medzoo.errors import ConfigError, DataError
from medzoo.models import VAE, VQVAE, ConvAutoencoder, VectorQuantizer
from medzoo.models.vae import gaussian_kl

TINY = dict(input_shape=(32, 32, 1), filters=4, depth=2, seed=3)
FAMILIES = {
    "ae": (ConvAutoencoder, dict(latent_channels=4)),
    "dae": (ConvAutoencoder, dict(latent_channels=4, noise="gaussian", noise_strength=0.1)),
    "sparse": (ConvAutoencoder, dict(latent_dim=16, sparsity=1e-2)),
    "vae": (VAE, dict(latent_dim=8)),
    "vae_spatial": (VAE, dict(latent_channels=2, reconstruction_loss="mse")),
    "vqvae": (VQVAE, dict(num_embeddings=16, embedding_dim=4)),
    "vqvae_grad": (VQVAE, dict(num_embeddings=16, embedding_dim=4, ema=False)),
}


def numpy(value):
    """A tensor or variable of any backend as a numpy array."""
    return np.asarray(ops.convert_to_numpy(getattr(value, "value", value)))


def gradient(fn, x):
    """d fn(x) / dx for a scalar ``fn``, with the active backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    if backend == "torch":
        import torch

        t = torch.tensor(x, requires_grad=True)
        fn(t).backward()
        return t.grad.numpy()
    import tensorflow as tf

    t = tf.Variable(x)
    with tf.GradientTape() as tape:
        total = fn(t)
    return tape.gradient(total, t).numpy()


def make(key, **over):
    cls, kw = FAMILIES[key]
    return cls(**{**TINY, **kw, **over})


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_fit_with_validation_lowers_the_loss(key, tiny_cxr):
    model = make(key, normalization="none")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    hist = model.fit(tiny_cxr, validation_data=(tiny_cxr[:16],), epochs=6, batch_size=16, verbose=0).history
    assert hist["reconstruction_loss"][-1] < hist["reconstruction_loss"][0]
    assert "val_loss" in hist and np.all(np.isfinite(hist["val_loss"]))
    for name in model.metric_names:
        assert name in hist and f"val_{name}" in hist
    # trackers are reset each epoch: after the last validation pass they hold 16 images, not more
    assert float(ops.convert_to_numpy(model.trackers["reconstruction_loss"].count)) == 16
    # XLA-compiled steps under JAX (op-by-op dispatch is ~100x slower on a GPU), graph mode under TensorFlow
    assert model.jit_compile is (keras.backend.backend() == "jax")


def test_fit_works_without_compile(tiny_cxr):
    model = make("ae")
    assert not model.compiled
    model.fit(tiny_cxr, epochs=1, batch_size=16, verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.Adam)


def test_compile_refuses_a_user_loss():
    with pytest.raises(ConfigError, match="reconstruction_loss"):
        make("ae").compile(loss="mse")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_shape=(30, 32, 1)), "multiple of 2\\*\\*depth"),
        (dict(input_shape=(32, 32, 2)), "1 or 3 channels"),
        (dict(normalization="weird"), "normalization"),
        (dict(filters=[4, 8, 16], depth=2), "levels"),
        (dict(reconstruction_loss="bce", output_activation="linear"), "bce"),
        (dict(noise="salt"), "noise"),
    ],
)
def test_bad_configs_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ConvAutoencoder(**{**TINY, **kwargs})


def test_filters_per_level_and_three_channels():
    model = ConvAutoencoder(input_shape=(16, 24, 3), filters=[4, 6], depth=None, latent_channels=3)
    assert model.filters_per_level == [4, 6] and model.depth == 2
    assert model.encode(np.zeros((2, 16, 24, 3), "float32")).shape == (2, 4, 6, 3)
    assert model.reconstruct(np.zeros((16, 24, 3), "float32")).shape == (1, 16, 24, 3)


def test_encode_rejects_the_wrong_shape():
    with pytest.raises(DataError, match=r"\(N, 32, 32, 1\)"):
        make("ae").encode(np.zeros((2, 64, 64, 1), "float32"))


@pytest.mark.parametrize("key", ["ae", "vae", "vqvae"])
def test_api_shapes_and_consistency(key, tiny_cxr):
    model = make(key)
    x = tiny_cxr[:5]
    z = model.encode(x)
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    np.testing.assert_allclose(model.decode(z), rec, atol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), rec, atol=1e-5)


def test_denoising_noise_only_in_training(tiny_cxr):
    model = make("dae", noise_strength=0.2)
    x = ops.convert_to_tensor(tiny_cxr[:8])
    np.testing.assert_array_equal(numpy(model(x, training=False)), numpy(model(x, training=False)))
    flat = np.full((64, 32, 32, 1), 0.5, "float32")
    noisy = numpy(model.add_noise(flat))
    assert abs(noisy.std() - 0.2) < 0.01  # gaussian std = strength (0.5 +- 0.2 is rarely clipped)
    assert abs(noisy.mean() - 0.5) < 0.01


def test_a_denoisers_evaluation_scores_denoising_with_the_same_noise_every_time(tiny_cxr):
    """val_loss picks a denoiser's best epoch, so it must measure denoising, comparably across epochs."""
    # shallow, unnormalised and linear: an untrained net whose output still follows its input
    model = make("dae", noise_strength=0.2, reconstruction_loss="mse", normalization="none",
                 output_activation="linear", depth=1, filters=8)
    model.compile()
    x = tiny_cxr[:16]
    first = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)["reconstruction_loss"]
    again = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)["reconstruction_loss"]
    assert first == again
    noisy = numpy(model.add_noise(x, seed=model.seed))  # the evaluation's noise: drawn from the model's seed
    denoising = np.mean((model.predict(noisy, verbose=0) - x) ** 2)
    clean = np.mean((model.predict(x, verbose=0) - x) ** 2)
    np.testing.assert_allclose(first, denoising, rtol=1e-4)
    # not the clean reconstruction (what it was before): the evaluation is far closer to the noisy
    # input's loss than to the clean one's (how far the two lie apart depends on the random weights)
    assert abs(first - clean) > 10 * abs(first - denoising)


def test_poisson_noise_is_signal_dependent():
    model = make("ae", noise="poisson", noise_strength=0.01)
    x = np.concatenate([np.full((32, 32, 32, 1), 0.1), np.full((32, 32, 32, 1), 0.6)]).astype("float32")
    noisy = numpy(model.add_noise(x, seed=0))
    dark, bright = (noisy - x)[:32].std(), (noisy - x)[32:].std()
    np.testing.assert_allclose([dark, bright], [np.sqrt(0.001), np.sqrt(0.006)], rtol=0.05)


def test_sparse_loss_is_reconstruction_plus_weighted_l1(tiny_cxr):
    model = make("sparse")
    model.compile()
    out = model.evaluate(tiny_cxr, batch_size=48, verbose=0, return_dict=True)
    code = model.encode(tiny_cxr)
    np.testing.assert_allclose(out["sparsity_loss"], np.abs(code).mean(), rtol=1e-4)
    np.testing.assert_allclose(out["loss"], out["reconstruction_loss"] + 1e-2 * out["sparsity_loss"], rtol=1e-5)


def test_gaussian_kl_closed_form():
    mean = np.array([[0.0, 0.0], [1.0, 2.0]], "float32")
    log_var = np.array([[0.0, 0.0], [0.0, np.log(4.0)]], "float32")
    expected = [0.0, 0.5 * 1 + 0.5 * (4 + 4 - 1 - np.log(4.0))]
    np.testing.assert_allclose(numpy(gaussian_kl(mean, log_var)), expected, rtol=1e-6)


def test_vae_loss_is_reconstruction_plus_beta_kl_and_warmup_moves_beta(tiny_cxr):
    model = make("vae", beta=2.0)
    hist = model.fit(tiny_cxr, epochs=3, batch_size=16, verbose=0, callbacks=[KLWarmup(warmup_epochs=2)]).history
    assert hist["beta"] == [0.0, 1.0, 2.0]
    out = model.evaluate(tiny_cxr, batch_size=48, verbose=0, return_dict=True)
    # test_step samples z, so the relation holds exactly within one batch's values
    np.testing.assert_allclose(out["loss"], out["reconstruction_loss"] + 2.0 * out["kl_loss"], rtol=1e-5)


def test_vae_sampling_is_seeded():
    model = make("vae")
    a, b, c = model.sample(4, seed=7), model.sample(4, seed=7), model.sample(4, seed=8)
    assert a.shape == (4, 32, 32, 1)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    # the configured seed fixes the generator stream used for reparameterisation
    assert numpy(make("vae").seed_generator.state).tolist() == numpy(make("vae").seed_generator.state).tolist()


def test_vae_encode_sample_differs_from_mean(tiny_cxr):
    model = make("vae")
    mean = model.encode(tiny_cxr[:4])
    drawn = model.encode(tiny_cxr[:4], sample=True)
    assert mean.shape == drawn.shape == (4, 8)
    assert np.abs(mean - drawn).mean() > 0.1  # posterior std starts near 1
    posterior_mean, log_var = model.posterior(tiny_cxr[:4], batch_size=3)  # two batches, one compiled function
    np.testing.assert_allclose(posterior_mean, mean, atol=1e-5)
    assert log_var.shape == (4, 8) and np.all(np.isfinite(log_var))


def test_vector_quantizer_straight_through_and_codebook_tracking():
    vq = VectorQuantizer(8, 3, ema=False, seed=0)
    vq.build((None, 3))
    assert vq.codebook in vq.trainable_weights
    z = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    np.testing.assert_allclose(gradient(lambda t: ops.sum(vq(t, training=True)["quantized"]), z),
                               np.ones((5, 3)))  # straight through
    out = vq(z, training=True)
    np.testing.assert_allclose(numpy(out["quantized"]), numpy(vq.codebook)[numpy(out["codes"])], atol=1e-6)
    ema = VectorQuantizer(8, 3, seed=0)
    ema.build((None, 3))
    assert ema.codebook in ema.non_trainable_weights and not ema.trainable_weights


def test_ema_updates_only_in_training_and_restarts_dead_codes():
    vq = VectorQuantizer(16, 2, decay=0.5, dead_code_threshold=1.0, seed=0)
    vq.build((None, 2))
    vq.codebook.assign(np.full((16, 2), 100.0, "float32"))  # every code far from the data
    z = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")
    vq(z, training=False)
    np.testing.assert_array_equal(numpy(vq.codebook), np.full((16, 2), 100.0))
    vq(z, training=True)
    book = numpy(vq.codebook)
    assert np.abs(book).max() < 10  # all codes were dead and restarted on encoder outputs
    dist = np.min(np.linalg.norm(book[:, None, :] - z[None], axis=-1), axis=1)
    assert (dist < 0.05).mean() > 0.9
    out = vq(z, training=False)
    assert float(out["codebook_usage"]) > 0.5 and float(out["perplexity"]) > 4


def test_perplexity_of_uniform_usage_equals_codebook_size():
    vq = VectorQuantizer(4, 1, seed=0)
    vq.build((None, 1))
    vq.codebook.assign(np.array([[0.0], [1.0], [2.0], [3.0]], "float32"))
    out = vq(np.array([[0.0], [1.0], [2.0], [3.0]] * 5, "float32"), training=False)
    np.testing.assert_allclose(float(out["perplexity"]), 4.0, rtol=1e-5)
    assert float(out["codebook_usage"]) == 1.0
    assert numpy(out["codes"]).tolist()[:4] == [0, 1, 2, 3]


def test_vqvae_codes_and_sampling_error(tiny_cxr):
    model = make("vqvae")
    codes = model.encode(tiny_cxr[:3])
    assert codes.shape == (3, 8, 8) and codes.dtype == np.int32
    assert codes.min() >= 0 and codes.max() < 16
    with pytest.raises(NotImplementedError, match="prior over code maps"):
        model.sample(2)
    assert model.encode_continuous(tiny_cxr[:3]).shape == (3, 8, 8, 4)


@pytest.mark.parametrize("key", ["sparse", "vae", "vqvae"])
def test_weights_file_loads_into_a_fresh_instance(key, tiny_cxr, tmp_path):
    model = make(key)
    model.fit(tiny_cxr, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    fresh = type(model).from_config(model.get_config())
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.reconstruct(tiny_cxr[:4]), model.reconstruct(tiny_cxr[:4]))


def test_keras_files_reload_in_safe_mode_in_a_fresh_process(tiny_cxr, tmp_path):
    """A .keras file reloads with safe_mode=True after nothing but `import medzoo`."""
    x = tiny_cxr[:4]
    np.save(tmp_path / "x.npy", x)
    for key in ["dae", "vae", "vqvae"]:
        model = make(key)
        model.fit(tiny_cxr, epochs=1, batch_size=16, verbose=0)
        model.save(tmp_path / f"{key}.keras")
        np.save(tmp_path / f"{key}.npy", model.reconstruct(x))
    script = f"""
import numpy as np, keras, medzoo, pathlib
d = pathlib.Path({str(tmp_path)!r}); x = np.load(d / "x.npy")
for key in ["dae", "vae", "vqvae"]:
    m = keras.saving.load_model(d / f"{{key}}.keras", safe_mode=True)
    assert m.optimizer is not None and keras.ops.convert_to_numpy(m.optimizer.iterations.value) > 0, key
    np.testing.assert_array_equal(m.reconstruct(x), np.load(d / f"{{key}}.npy"))
    print("ok", type(m).__name__)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", "ConvAutoencoder", "ok", "VAE", "ok", "VQVAE"]


def test_models_are_registered_under_the_medzoo_package():
    for cls in (ConvAutoencoder, VAE, VQVAE, VectorQuantizer):
        assert keras.saving.get_registered_name(cls) == f"medzoo>{cls.__name__}"
    assert medzoo.__version__


def test_attached_spec_refuses_raw_input_unless_asked_to_preprocess(data_dir):
    from medzoo.data import PreprocessSpec

    model = make("ae")
    with pytest.raises(ConfigError, match="no preprocessing spec"):
        model.preprocess(np.zeros((32, 32)))
    model.preprocess_spec = PreprocessSpec(size=(32, 32), resize="stretch", normalize="minmax")
    raw = np.load(data_dir / "pediatric_cxr_kermany" / "kermany_pediatric_cxr_64.npz")["val_images"][:3]
    with pytest.raises(DataError, match="PreprocessSpec.apply"):
        model.reconstruct(raw)  # 64x64 uint8: wrong size and range
    with pytest.raises(DataError, match="value_range"):
        model.reconstruct(raw[:, ::2, ::2, None].astype("float32"))  # right size, 0..255 values
    out = model.reconstruct(raw, preprocess=True)
    assert out.shape == (3, 32, 32, 1)
    np.testing.assert_allclose(model.encode(raw, preprocess=True), model.encode(model.preprocess(raw)))
