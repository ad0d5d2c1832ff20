"""Preset directories: save/load round trips, float16 weights, the model card, and what is refused."""

import json

import h5py
import keras
import numpy as np
import pytest

import medzoo
from medzoo.data import PreprocessSpec
from medzoo.errors import ConfigError, IntegrityError
from medzoo.models import VAE, VQVAE, ConvAutoencoder
from medzoo.zoo import presets, safety
from medzoo.zoo.integrity import sha256_file

TINY = dict(input_shape=(32, 32, 1), filters=4, depth=2, seed=3)
FAMILIES = {
    "autoencoder": (ConvAutoencoder, dict(latent_channels=4)),
    "vae": (VAE, dict(latent_dim=8)),
    "vqvae": (VQVAE, dict(num_embeddings=16, embedding_dim=4)),
}
SPEC = PreprocessSpec(size=(32, 32), resize="crop", normalize="percentile")
TRAINING = {"recipe": "test", "epochs": 1, "splits": {"train": "train", "metrics": "test"},
            "dataset": {"name": "kermany_pediatric_cxr_64", "licence": "CC-BY-4.0",
                        "citation": "Kermany et al., Cell 2018"}}


def make(family, **over):
    cls, kw = FAMILIES[family]
    return cls(**{**TINY, **kw, **over})


def perturb(model, seed=0):
    """Give every float variable (kernels, BN statistics, codebooks, EMA buffers) a distinct value."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "float" in str(v.dtype):
            x = v.numpy()
            v.assign((x * (1 + 0.1 * rng.normal(size=x.shape)) + 0.02 * rng.normal(size=x.shape)).astype(x.dtype))
    return model


def rewrite_digests(directory):
    """Make a hand-edited preset self-consistent again, as an attacker would."""
    meta = json.loads((directory / "metadata.json").read_text())
    meta["files"] = {name: sha256_file(directory / name) for name in meta["files"]}
    (directory / "metadata.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def ae_preset(tmp_path_factory):
    model = make("autoencoder")
    return presets.save_preset(model, tmp_path_factory.mktemp("p") / "ae", name="tiny_ae", spec=SPEC,
                               description="A tiny test autoencoder.", training=TRAINING,
                               metrics={"test": {"psnr": np.float32(21.5), "ssim": 0.61}})


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_round_trip_gives_identical_reconstructions(family, tiny_cxr, tmp_path):
    model = perturb(make(family))
    path = medzoo.save_preset(model, tmp_path / family, name=f"tiny_{family}", spec=SPEC, training=TRAINING)
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "metadata.json",
                                                      "model.weights.h5"]
    with h5py.File(path / "model.weights.h5") as f:
        assert "optimizer" not in f  # training state is not part of a preset

    loaded = medzoo.load_preset(path)
    assert type(loaded) is type(model) and loaded is not model
    np.testing.assert_array_equal(loaded.reconstruct(tiny_cxr[:6]), model.reconstruct(tiny_cxr[:6]))
    np.testing.assert_array_equal(loaded.encode(tiny_cxr[:6]), model.encode(tiny_cxr[:6]))
    assert loaded.preprocess_spec == SPEC
    assert loaded.compiled
    meta = loaded.zoo_metadata
    assert meta["family"] == family and meta["source"] == "path" and meta["parameters"] == model.count_params()
    assert meta["keras_version"] == keras.__version__ and meta["medzoo_version"] == medzoo.__version__
    assert meta["training"] == TRAINING and meta["input"]["shape"] == [32, 32, 1]


def test_loaded_model_carries_its_input_contract(ae_preset, data_dir):
    model = medzoo.load_preset(ae_preset, compile=False)
    assert not model.compiled
    raw = np.load(data_dir / "pediatric_cxr_kermany" / "kermany_pediatric_cxr_64.npz")["val_images"][:2]
    from medzoo.errors import DataError

    with pytest.raises(DataError):
        model.reconstruct(raw)  # 64x64 uint8 contradicts the 32x32 [0, 1] contract
    out = model.reconstruct(raw, preprocess=True)
    np.testing.assert_array_equal(out, model.reconstruct(np.asarray(SPEC.apply(raw))))


def test_float16_weights_are_half_the_size_and_load_transparently(tiny_cxr, tmp_path):
    model = perturb(make("vae", filters=16))  # enough weights for the HDF5 overhead not to dominate
    full = presets.save_preset(model, tmp_path / "f32", name="v32", spec=SPEC)
    half = presets.save_preset(model, tmp_path / "f16", name="v16", spec=SPEC, weights_dtype="float16")
    size32 = (full / "model.weights.h5").stat().st_size
    size16 = (half / "model.weights.h5").stat().st_size
    with h5py.File(half / "model.weights.h5") as f:
        datasets = []
        f.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        dtypes = {d.dtype for d in datasets}
        floats = sum(d.size for d in datasets if d.dtype.kind == "f")
    assert np.dtype("float16") in dtypes and np.dtype("float32") not in dtypes
    assert size32 - size16 >= 2 * floats * 0.99 and size16 < 0.65 * size32, (size16, size32, floats)

    loaded = presets.load_preset(half)
    assert {v.dtype for v in loaded.weights} == {"float32"}
    assert loaded.zoo_metadata["weights"]["dtype"] == "float16"
    got, want = loaded.reconstruct(tiny_cxr[:8]), model.reconstruct(tiny_cxr[:8])
    assert 0 < np.abs(got - want).max() < 1e-2  # rounded, but close
    # the loaded float16 model is what metrics are measured on; recording them leaves the weights untouched
    before = sha256_file(half / "model.weights.h5")
    meta = presets.update_preset(half, metrics={"test": {"mse": float(np.mean((got - tiny_cxr[:8]) ** 2))}})
    assert sha256_file(half / "model.weights.h5") == before
    assert "test/mse" in (half / "README.md").read_text()
    assert meta["files"]["README.md"] == sha256_file(half / "README.md")
    presets.load_preset(half)  # still consistent


def test_float16_keeps_weights_that_would_overflow(tmp_path):
    model = make("autoencoder")
    big = model.encoder.get_layer("head0").bias
    big.assign(np.full(big.shape, 1e6, "float32"))  # beyond float16's 65504
    path = presets.save_preset(model, tmp_path / "p", name="big", spec=SPEC, weights_dtype="float16")
    kept = json.loads((path / "metadata.json").read_text())["weights"]["kept_float32"]
    assert len(kept) == 1
    loaded = presets.load_preset(path)
    np.testing.assert_array_equal(loaded.encoder.get_layer("head0").bias.numpy(), big.numpy())


def test_model_card_has_hugging_face_front_matter(ae_preset):
    from huggingface_hub import ModelCard

    card = ModelCard.load(ae_preset / "README.md")
    assert card.data.library_name == "keras"
    assert card.data.license == "cc-by-4.0"
    assert {"medical-imaging", "autoencoder", "medzoo"} <= set(card.data.tags)
    assert card.data.datasets == ["kermany_pediatric_cxr_64"]
    assert set(card.data.metrics) == {"psnr", "ssim"}
    text = card.text
    assert "not a medical device" in text and "Research and education only" in text
    assert 'medzoo.load("tiny_ae")' in text and "A tiny test autoencoder." in text
    assert "| test/psnr | 21.5 |" in text  # numpy scalars were converted
    assert "- dataset:\n  - name: kermany_pediatric_cxr_64\n  - licence: CC-BY-4.0" in text


def test_tampered_weights_are_refused_with_both_digests(ae_preset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ae_preset, copy)
    want = sha256_file(copy / "model.weights.h5")
    with open(copy / "model.weights.h5", "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\x00" * 10)
    got = sha256_file(copy / "model.weights.h5")
    with pytest.raises(IntegrityError) as info:
        presets.load_preset(copy)
    assert want in str(info.value) and got in str(info.value) and "model.weights.h5" in str(info.value)


def test_verify_checks_given_digests_before_loading(ae_preset):
    real = sha256_file(ae_preset / "metadata.json")
    model = presets.load_preset(ae_preset, verify={"metadata.json": real}, compile=False)
    assert model.zoo_metadata["name"] == "tiny_ae"
    with pytest.raises(IntegrityError, match=f"sha256 {real}, expected {'0' * 64}"):
        presets.load_preset(ae_preset, verify={"metadata.json": "0" * 64})
    with pytest.raises(ConfigError, match="not part of a preset"):
        presets.load_preset(ae_preset, verify={"model.pkl": "0" * 64})


@pytest.mark.parametrize("intruder", ["model.pkl", "model.keras", "notes.txt"])
def test_unexpected_files_in_a_preset_are_refused(ae_preset, tmp_path, intruder):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ae_preset, copy)
    (copy / intruder).write_bytes(b"anything")
    with pytest.raises(ConfigError, match=f"unexpected files \\['{intruder}'\\]"):
        presets.load_preset(copy)
    with pytest.raises(ConfigError, match="other files"):
        presets.save_preset(make("autoencoder"), copy, name="x", spec=SPEC)


LAMBDA = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
          "config": {"name": "evil", "function": {"class_name": "__lambda__", "config": {"code": "..."}}}}


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: LAMBDA, "medzoo only loads its own model families"),
        (lambda c: {**c, "registered_name": "builtins>eval", "module": "builtins", "class_name": "eval"},
         "medzoo only loads"),
        (lambda c: {**c, "module": "os"}, "do not match the registered medzoo class"),
        (lambda c: {**c, "config": {**c["config"], "dtype": LAMBDA}}, "config.dtype is a 'Lambda'"),
        (lambda c: {**c, "config": {**c["config"], "dtype": {"module": "builtins", "class_name": "exec",
                                                             "config": {}, "registered_name": None}}},
         "only medzoo and Keras classes"),
        (lambda c: {**c, "config": {**c["config"], "activation": {
            "module": "mypkg", "class_name": "Act", "config": {}, "registered_name": "mypkg>Act"}}},
         "config.activation names 'Act'"),
    ],
)
def test_configs_naming_non_medzoo_classes_are_refused_before_deserializing(ae_preset, tmp_path, monkeypatch,
                                                                            edit, match):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ae_preset, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(edit(config)))
    rewrite_digests(copy)  # a self-consistent hostile preset: only the config check can stop it

    def must_not_run(*args, **kwargs):
        raise AssertionError("deserialize_keras_object was reached")

    monkeypatch.setattr(keras.saving, "deserialize_keras_object", must_not_run)
    with pytest.raises(ConfigError, match=match):
        presets.load_preset(copy)


def test_safe_config_check_accepts_every_family():
    for family in FAMILIES:
        safety.check_model_config(keras.saving.serialize_keras_object(make(family)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(spec=PreprocessSpec(size=(64, 64))), "spec makes images of shape"),
        (dict(spec={"size": [32, 32]}), "PreprocessSpec"),
        (dict(name="Tiny AE"), "name must match"),
        (dict(weights_dtype="int8"), "weights_dtype"),
        (dict(version="v1"), "version"),
        (dict(metrics={"psnr": object()}), "JSON-serializable"),
        (dict(metrics={"psnr": float("nan")}), "JSON-serializable"),
    ],
)
def test_save_preset_refuses_bad_arguments(kwargs, match, tmp_path):
    args = {"name": "tiny", "spec": SPEC, **kwargs}
    with pytest.raises(ConfigError, match=match):
        presets.save_preset(make("autoencoder"), tmp_path / "p", **args)
    assert not (tmp_path / "p" / "metadata.json").exists()


def test_only_medzoo_families_are_saved(tmp_path):
    inputs = keras.Input((32, 32, 1))
    plain = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    with pytest.raises(ConfigError, match="only the medzoo model families"):
        presets.save_preset(plain, tmp_path / "p", name="plain", spec=SPEC)
