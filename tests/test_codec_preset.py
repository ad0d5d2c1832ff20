"""The entropy model ships with a VQ-VAE preset: compress/decompress need no data, and the file is verified.

A preset's ``entropy_model.npz`` (``medzoo.codec.entropy.save_to_preset``) is listed
in its metadata and the manifest like every other file, checked by ``medzoo.load``,
and used by ``compress``/``decompress`` instead of fitting one on the training split.
"""

import json
import shutil

import numpy as np
import pytest

import medzoo
from medzoo.data import PreprocessSpec
from medzoo.errors import ConfigError, DataError, IntegrityError
from medzoo.codec import entropy
from medzoo.codec.stream import decompress_codes, read_header
from medzoo.codec.entropy import KINDS, EntropyModel, fit_entropy_model, save_to_preset, weights_fingerprint
from medzoo.models import VQVAE, ConvAutoencoder
from medzoo.zoo import manifest
from medzoo.zoo.integrity import sha256_file
from medzoo.zoo.presets import attach_file

TINY = dict(input_shape=(32, 32, 1), filters=4, depth=2, normalization="none")
SPEC = PreprocessSpec(size=(32, 32), resize="stretch", normalize="minmax")
TRAINING = {"recipe": "test", "epochs": 1, "splits": {"train": "train", "metrics": "test"}, "classes": None,
            "dataset": {"name": "kermany_pediatric_cxr_64", "licence": "CC-BY-4.0", "citation": "Kermany 2018"}}
EM_FILE = "entropy_model.npz"


def _save(model, directory, name):
    return medzoo.save_preset(model, directory / name, name=name, spec=SPEC, training=TRAINING,
                              metrics={"test": {"psnr": 20.0}})


@pytest.fixture(scope="module")
def vq(tiny_cxr):
    model = VQVAE(num_embeddings=16, embedding_dim=4, seed=3, **TINY)
    model.fit(tiny_cxr, epochs=4, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def shipped(vq, tiny_cxr, tmp_path_factory):
    """A preset with its entropy model, and the same preset added (bundled) to a temporary manifest."""
    root = tmp_path_factory.mktemp("shipped")
    preset = _save(vq, root, "tiny-vq")
    em = save_to_preset(preset, train_images=tiny_cxr[:32], val_images=tiny_cxr[32:])
    path = root / "pkg" / "weights_manifest.json"
    manifest.add_to_manifest(preset, manifest_path=path)
    return {"preset": preset, "em": em, "manifest_path": path, "bundled": path.parent / "presets" / "tiny-vq"}


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """No dataset and an empty medzoo cache; fitting an entropy model fails the test."""
    (tmp_path / "no-data").mkdir()
    monkeypatch.setenv("MEDZOO_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("MEDZOO_CACHE", str(tmp_path / "cache"))

    def no_fitting(*args, **kwargs):
        raise AssertionError("an entropy model was fitted")

    monkeypatch.setattr(entropy, "fit_entropy_model", no_fitting)
    monkeypatch.setattr(EntropyModel, "fit", no_fitting)
    return tmp_path / "cache"


def test_the_preset_records_its_entropy_model_like_its_other_files(shipped, vq):
    preset, em = shipped["preset"], shipped["em"]
    metadata = json.loads((preset / "metadata.json").read_text())
    assert metadata["files"][EM_FILE] == sha256_file(preset / EM_FILE)
    summary = metadata["entropy_model"]
    assert summary["digest"] == em.digest and summary["kinds"] == sorted(KINDS)
    assert summary["weights_fingerprint"] == weights_fingerprint(vq) == em.info["weights_fingerprint"]
    assert summary["fitted_on"]["dataset"] == "kermany_pediatric_cxr_64" and summary["fitted_on"]["train_maps"] == 32
    assert "## Compression" in (preset / "README.md").read_text()
    with np.load(preset / EM_FILE, allow_pickle=False) as f:  # plain arrays and a JSON header, no pickles
        header = json.loads(str(f["header"]))
        assert f["position"].dtype == np.uint8 and f["position"].shape == (8 * 8, 16)  # compact counts
    assert header["info"]["weights_fingerprint"] == weights_fingerprint(vq) and set(header["weights"]) == set(KINDS)
    assert (preset / EM_FILE).stat().st_size < 4000

    entry = medzoo.info("tiny-vq", manifest_path=shipped["manifest_path"])
    record = next(f for f in entry["files"] if f["filename"] == EM_FILE)
    assert record == {"filename": EM_FILE, "size": (preset / EM_FILE).stat().st_size,
                      "sha256": sha256_file(preset / EM_FILE)}
    assert (shipped["bundled"] / EM_FILE).read_bytes() == (preset / EM_FILE).read_bytes()
    fetched = medzoo.zoo.fetch("tiny-vq", manifest_path=shipped["manifest_path"])
    assert fetched.files[EM_FILE] == record["sha256"]


def test_a_shipped_entropy_model_compresses_and_decompresses_with_no_data(shipped, tiny_cxr, no_data):
    x = tiny_cxr[:5]
    for source in (str(shipped["preset"]), "tiny-vq"):  # a preset folder, and a zoo name (the bundled copy)
        model = medzoo.load(source, manifest_path=shipped["manifest_path"], compile=False)
        expected = model.decode(model.encode(x))
        for kind in KINDS:
            data = medzoo.compress(x, model=model, kind=kind)
            assert read_header(data).entropy_model_id == shipped["em"].digest[:8]
            header, codes, _ = decompress_codes(data, model=model)
            np.testing.assert_array_equal(codes, model.encode(x))
            np.testing.assert_array_equal(medzoo.decompress(data, model=model), expected)
    assert data == medzoo.compress(x, model=model, entropy_model=shipped["em"])  # the very model that was shipped
    assert not no_data.exists()  # nothing fitted, nothing cached


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_entropy_model_is_refused(shipped, tmp_path, tiny_cxr, no_data):
    root = tmp_path / "copy"
    shutil.copytree(shipped["bundled"].parent.parent, root)  # the manifest and its bundled preset
    opts = dict(manifest_path=root / "weights_manifest.json", cache_dir=tmp_path / "cache")
    bundled = root / "presets" / "tiny-vq"
    want = sha256_file(bundled / EM_FILE)
    model = medzoo.load("tiny-vq", compile=False, **opts)
    _flip_a_byte(bundled / EM_FILE)
    with pytest.raises(IntegrityError) as info:  # load's sha256 check, against the manifest
        medzoo.load("tiny-vq", **opts)
    message = str(info.value)
    assert EM_FILE in message and want in message and sha256_file(bundled / EM_FILE) in message
    with pytest.raises(IntegrityError, match=EM_FILE):  # checked again when used: changed after loading
        medzoo.compress(tiny_cxr[:2], model=model)

    folder = tmp_path / "preset"
    shutil.copytree(shipped["preset"], folder)
    _flip_a_byte(folder / EM_FILE)
    with pytest.raises(IntegrityError, match=f"{EM_FILE} .*metadata.json"):  # a preset folder: its recorded digest
        medzoo.load(str(folder))


def test_an_entropy_model_fitted_for_other_weights_is_refused(shipped, tmp_path, tiny_cxr, no_data):
    other = _save(VQVAE(num_embeddings=16, embedding_dim=4, seed=11, **TINY), tmp_path, "other-vq")
    with pytest.raises(DataError, match="stale"):
        save_to_preset(other, entropy_model=shipped["em"])
    assert not (other / EM_FILE).exists()

    attach_file(other, shipped["preset"] / EM_FILE, EM_FILE)  # the zoo itself does not look inside the file
    model = medzoo.load(str(other), compile=False)  # every digest matches: the file is what the preset says
    with pytest.raises(DataError) as info:
        medzoo.compress(tiny_cxr[:2], model=model)
    message = str(info.value)
    assert "stale" in message and shipped["em"].info["weights_fingerprint"][:12] in message
    assert weights_fingerprint(model)[:12] in message and "save_to_preset" in message

    _save(model, tmp_path, "other-vq")  # saved again (new weights): an entropy model there would be stale, so it goes
    assert not (other / EM_FILE).exists() and EM_FILE not in json.loads((other / "metadata.json").read_text())["files"]


def test_without_an_entropy_model_or_data_the_error_is_one_actionable_sentence(vq, tmp_path, tiny_cxr, no_data):
    preset = _save(vq, tmp_path, "bare-vq")
    with pytest.raises(DataError) as info:
        medzoo.compress(tiny_cxr[:2], model=str(preset))
    message = str(info.value)
    assert "\n" not in message and len(message) < 300 and message.count(". ") == 0
    assert "bare-vq" in message and "kermany_pediatric_cxr_64.npz" in message
    assert "MEDZOO_DATA_DIR" in message and "entropy_model=" in message


def test_only_a_vq_vae_preset_has_an_entropy_model(shipped, tmp_path):
    ae = medzoo.save_preset(ConvAutoencoder(latent_channels=4, seed=0, **TINY), tmp_path / "ae", name="tiny-ae",
                            spec=SPEC, training=TRAINING, metrics={"test": {"psnr": 20.0}})
    with pytest.raises(ConfigError, match="only a VQ-VAE"):
        attach_file(ae, shipped["preset"] / EM_FILE, EM_FILE)
    with pytest.raises(ConfigError, match="VQ-VAE code maps"):
        save_to_preset(ae, entropy_model=shipped["em"])
    with pytest.raises(ConfigError, match="not an optional preset file"):
        attach_file(shipped["preset"], shipped["preset"] / EM_FILE, "model.pkl")
    shutil.copyfile(shipped["preset"] / EM_FILE, ae / EM_FILE)
    with pytest.raises(ConfigError, match="only a VQ-VAE preset"):
        medzoo.load(str(ae))
    (ae / EM_FILE).unlink()
    entry = manifest.add_to_manifest(ae, manifest_path=tmp_path / "m.json", bundle=False, hub={
        "repo_id": "medzoo/tiny-ae", "revision": "0" * 40})
    entry["files"].append({"filename": EM_FILE, "size": 1, "sha256": "0" * 64})
    with pytest.raises(ConfigError, match="files: entropy_model.npz belongs to VQ-VAEs only"):
        manifest.validate_entry(entry)


def test_a_fresh_fit_gives_the_shipped_entropy_model_exactly(shipped, vq, tiny_cxr):
    refit = fit_entropy_model(medzoo.load(str(shipped["preset"]), compile=False), tiny_cxr[:32], tiny_cxr[32:],
                              cache=False)
    assert refit.digest == shipped["em"].digest  # fitting is deterministic: same codes, same counts, same EM
