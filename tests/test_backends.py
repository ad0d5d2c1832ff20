"""Every Keras backend: the model tests under JAX, zoo presets across backends, saving under one and loading under another.

This process runs TensorFlow (the default backend); each test starts a JAX or PyTorch
process (``KERAS_BACKEND=jax`` / ``torch``) and compares. Tolerances: outputs of the same
weights on two backends agree to 1e-4 (float32 convolutions summed in a different order).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import medzoo

JAX_ENV = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
TOLERANCE = 1e-4
OTHER_BACKENDS = ["jax", "torch"]


def run_backend(backend: str, code: str, *args, timeout=1800) -> subprocess.CompletedProcess:
    env = {**JAX_ENV, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def run_jax(code: str, *args, timeout=1800) -> subprocess.CompletedProcess:
    return run_backend("jax", code, *args, timeout=timeout)


@pytest.mark.timeout(3900)  # above the subprocess's own limit: a slow machine gets its error, not a kill
def test_the_model_tests_pass_under_jax():
    """The model, save/load and training tests, second pytest process, JAX backend.

    The two tests that reload a .keras file in a third process are left out: saving under
    one backend and loading under another is what the tests below check.
    """
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_models.py",
                          "tests/test_models_v2.py", "-k", "not fresh_process"], capture_output=True, text=True,
                         timeout=3600, env=JAX_ENV,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    summary = out.stdout.strip().splitlines()[-1]
    assert out.returncode == 0 and " passed" in summary and "failed" not in summary, out.stdout[-4000:]


_PRESETS_UNDER_ANOTHER_BACKEND = """
import os, sys, numpy as np, keras, medzoo
assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
x = np.load(sys.argv[1])
out = {}
for name in sys.argv[2].split(","):
    model = medzoo.load(name, compile=False)
    if medzoo.info(name)["family"] == "prior":  # a latent prior makes images: seeded samples, and their latents
        out[name] = model.generate(2, label=model.labels[-1], seed=0, steps=4)
        out[name + "/encode"] = model.sample_latents(2, label=None, seed=1, steps=4)
    else:
        out[name] = model.reconstruct(x)
        out[name + "/encode"] = model.encode(x)
np.savez(sys.argv[3], **out)
"""


def one_preset_per_architecture() -> list[str]:
    """The first zoo preset of each model class and layer layout (its config bar sizes, names and seeds).

    Presets that differ only in widths, depths or latent sizes run the same ops on another
    backend, so one of each covers every code path at half the cost of all of them (each
    preset is compiled afresh under JAX); every preset's weights are verified under
    TensorFlow by the manifest tests.
    """
    chosen = {}
    for entry in medzoo.list_models():
        config = medzoo.info(entry["name"])["config"]
        layout = tuple(sorted((key, json.dumps(value, sort_keys=True)) for key, value in config["config"].items()
                              if key not in {"name", "seed", "dtype", "trainable"} and not _is_size(value)))
        chosen.setdefault((config["class_name"], layout), entry["name"])
    return list(chosen.values())


def _is_size(value) -> bool:
    return isinstance(value, (int, float, list)) and not isinstance(value, bool)


def test_one_preset_of_each_architecture_covers_every_family():
    names = set(one_preset_per_architecture())
    assert {medzoo.info(n)["family"] for n in names} == {m["family"] for m in medzoo.list_models()}
    # the plain v1 layouts and the residual v2 ones are both there ...
    assert {"ae-chestxray", "vae-chestxray"} <= names
    # ... but models that differ only in sizes (and data) stand for each other; the loss is part of
    # the layout (another code path to compare), so the L1 VAEs and the MSE ones are two groups
    for same_layout in ({"vae-brainmri-f8c4", "vae-breastus-f8c4", "vae-fetalus-f8c4"},
                        {"vae-chestxray-f8c4", "vae-generalist-f8c4"},
                        {"vqvae-chestxray", "vqvae-chestxray-8x8", "vqvae-chestxray-32x32"}):
        assert len(same_layout & names) == 1, same_layout


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_each_zoo_architecture_loads_under_another_backend_with_the_same_outputs(tmp_path, backend):
    images, _ = medzoo.load_npz("kermany_pediatric_cxr_128", "test")
    names = one_preset_per_architecture()
    x = medzoo.load(names[0]).preprocess(images[::64][:4])
    np.save(tmp_path / "x.npy", x)
    run_backend(backend, _PRESETS_UNDER_ANOTHER_BACKEND, tmp_path / "x.npy", ",".join(names), tmp_path / "out.npz")
    other = np.load(tmp_path / "out.npz")
    for name in names:
        model = medzoo.load(name, compile=False)
        if medzoo.info(name)["family"] == "prior":
            np.testing.assert_allclose(other[name], model.generate(2, label=model.labels[-1], seed=0, steps=4),
                                       atol=TOLERANCE, err_msg=f"{name} {backend}")
            np.testing.assert_allclose(other[name + "/encode"], model.sample_latents(2, label=None, seed=1, steps=4),
                                       atol=TOLERANCE, err_msg=f"{name} {backend}")
            continue
        np.testing.assert_allclose(other[name], model.reconstruct(x), atol=TOLERANCE, err_msg=f"{name} {backend}")
        codes = model.encode(x)
        if np.issubdtype(codes.dtype, np.integer):  # VQ-VAE code maps: the same codes, bar float ties
            assert (other[name + "/encode"] == codes).mean() > 0.999, name
        else:
            np.testing.assert_allclose(other[name + "/encode"], codes, atol=TOLERANCE, err_msg=f"{name} {backend}")


_TRAIN_AND_SAVE_UNDER_ANOTHER_BACKEND = """
import json, os, sys, numpy as np, keras, medzoo
backend = keras.backend.backend()
assert backend == os.environ["KERAS_BACKEND"]
x = np.load(sys.argv[1])
model = medzoo.VQVAE(input_shape=(None, None, 1), architecture="residual", filters=[8, 16], depth=2,
                     num_embeddings=16, embedding_dim=2, seed=0)
before = keras.ops.convert_to_numpy(model.quantizer.codebook.value).copy()
history = model.fit(x, validation_data=(x[:4],), epochs=2, batch_size=8, verbose=0).history
after = keras.ops.convert_to_numpy(model.quantizer.codebook.value)
medzoo.save_preset(model, sys.argv[2], name="vq-" + backend, spec=medzoo.PreprocessSpec(size=None), description=backend)
np.save(sys.argv[3], model.reconstruct(x[:4]))
print(json.dumps({"history": sorted(history), "codebook_moved": float(np.abs(after - before).max()),
                  "loss": history["loss"]}))
"""


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_a_preset_trained_and_saved_under_another_backend_reloads_under_tensorflow(tmp_path, tiny_cxr, backend):
    np.save(tmp_path / "x.npy", tiny_cxr[:16])
    out = run_backend(backend, _TRAIN_AND_SAVE_UNDER_ANOTHER_BACKEND, tmp_path / "x.npy", tmp_path / "preset",
                      tmp_path / "out.npy")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    names = {"loss", "reconstruction_loss", "vq_loss", "perplexity", "codebook_usage"}
    assert set(report["history"]) == names | {f"val_{n}" for n in names}  # the same metric names as under TF
    assert report["codebook_moved"] > 1e-3  # the EMA update ran on that backend
    assert all(np.isfinite(report["loss"]))
    model = medzoo.load(tmp_path / "preset")
    assert model.zoo_metadata["backend"] == backend
    np.testing.assert_allclose(model.reconstruct(tiny_cxr[:4]), np.load(tmp_path / "out.npy"), atol=TOLERANCE)


def test_a_keras_file_saved_under_tensorflow_loads_under_jax(tmp_path, tiny_cxr):
    """A trained any-size VAE with attention (every family's fixed-size weights are covered by the presets test)."""
    model = medzoo.VAE(input_shape=(None, None, 1), architecture="residual", filters=[8, 16], depth=2, seed=0,
                       latent_channels=2, reconstruction_loss="l1", attention=True)
    model.fit(tiny_cxr[:16], epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", tiny_cxr[:4])
    code = ("import sys, numpy as np, keras, medzoo\n"
            "m = keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
            "np.save(sys.argv[3], m.reconstruct(np.load(sys.argv[2])))\n")
    run_jax(code, tmp_path / "m.keras", tmp_path / "x.npy", tmp_path / "jax.npy")
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), model.reconstruct(tiny_cxr[:4]), atol=TOLERANCE)


def _environment_without_tensorflow(root):
    """A virtual environment holding this one's packages but TensorFlow (and TensorBoard): links, no download."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next((root / "lib").glob("python3*/site-packages"))
    for entry in os.scandir(sysconfig.get_paths()["purelib"]):
        if entry.name.lower().startswith(("tensorflow", "tensorboard", "tf_keras", "__pycache__")):
            continue
        os.symlink(entry.path, site / entry.name)
    return root / "bin" / "python"


def test_medzoo_trains_under_jax_where_tensorflow_is_not_installed(tmp_path, data_dir):
    """The promise of the GPU recipe: ``KERAS_BACKEND=jax medzoo train`` with no TensorFlow, and TF reads the result."""
    python = _environment_without_tensorflow(tmp_path / "venv")
    env = {**JAX_ENV, "MEDZOO_DATA_DIR": str(data_dir)}
    probe = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "No module named 'tensorflow'" in probe.stderr
    overrides = {"dataset": "kermany_pediatric_cxr_64", "max_images": 64, "crop_size": 32, "crops_per_image": 2,
                 "batch_size": 16, "epochs": 2, "warmup_steps": 2,
                 "model": {"filters": [4, 8], "blocks_per_level": 1, "latent_channels": 2}}
    out = subprocess.run([str(python), "-m", "medzoo.cli", "--log-level", "WARNING", "train", "ae-chestxray-f4c3",
                          "--output", str(tmp_path / "run"), *[f"--set={k}={json.dumps(v)}" for k, v in overrides.items()]],
                         capture_output=True, text=True, env=env, timeout=1800)
    assert out.returncode == 0, out.stderr[-4000:]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["backend"] == "jax" and run["epochs"] == 2
    # the preset trained without TensorFlow loads here, under TensorFlow, and reconstructs any size
    model = medzoo.load(tmp_path / "run" / "preset")
    assert model.zoo_metadata["backend"] == "jax"
    images, _ = medzoo.load_npz("kermany_pediatric_cxr_64", "test")
    x = model.preprocess(images[:2])
    assert model.reconstruct(x).shape == x.shape == (2, 64, 64, 1)
