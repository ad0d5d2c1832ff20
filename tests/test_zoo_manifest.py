"""weights_manifest.json: the schema, add_to_manifest, bundling, and the list/info views."""

import configparser
import copy
import json
import pathlib

import pytest

import medzoo
from medzoo.data import PreprocessSpec
from medzoo.errors import ConfigError, IntegrityError, ModelNotFoundError
from medzoo.models import VQVAE, ConvAutoencoder
from medzoo.zoo import manifest
from medzoo.zoo.integrity import sha256_file
from medzoo.zoo.presets import save_preset

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SPEC = PreprocessSpec(size=(32, 32), resize="stretch")
TRAINING = {"recipe": "test", "epochs": 3, "splits": {"train": "train", "metrics": "test"},
            "dataset": {"name": "kermany_pediatric_cxr_64", "licence": "CC-BY-4.0",
                        "citation": "Kermany et al., Cell 2018"}, "wall_time_s": 12.5}


def make_preset(directory, name, model=None, **kwargs):
    model = model or ConvAutoencoder(input_shape=(32, 32, 1), filters=4, depth=2, latent_channels=4, seed=0)
    args = dict(name=name, spec=SPEC, description=f"{name} for tests", training=TRAINING,
                metrics={"test": {"psnr": 20.0, "ssim": 0.5}})
    return save_preset(model, directory / name, **{**args, **kwargs})


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A temporary manifest with two entries: 'tiny_vq' (bundled + hub) and 'tiny_ae' (bundled)."""
    root = tmp_path_factory.mktemp("zoo")
    path = root / "pkg" / "weights_manifest.json"
    ae = make_preset(root, "tiny_ae")
    vq = make_preset(root, "tiny_vq", VQVAE(input_shape=(32, 32, 1), filters=4, depth=2, num_embeddings=8,
                                            embedding_dim=2, seed=0), weights_dtype="float16")
    manifest.add_to_manifest(vq, manifest_path=path, hub={"repo_id": "medzoo/tiny-vq", "revision": COMMIT})
    manifest.add_to_manifest(ae, manifest_path=path)
    return {"path": path, "ae": ae, "vq": vq}


def test_add_to_manifest_builds_a_valid_sorted_entry_and_bundles(zoo):
    data = json.loads(zoo["path"].read_text())
    manifest.validate_manifest(data)
    assert [e["name"] for e in data["models"]] == ["tiny_ae", "tiny_vq"]  # sorted, whatever the order of adding
    entry = data["models"][1]
    assert list(entry) == ["name", "family", "description", "version", "licence", "parameters", "weights_dtype",
                           "config", "input", "training", "metrics", "files", "sources"]
    assert entry["family"] == "vqvae" and entry["weights_dtype"] == "float16"
    assert entry["config"] == json.loads((zoo["vq"] / "config.json").read_text())
    assert entry["input"] == {"shape": [32, 32, 1], "channels": 1, "value_range": [0.0, 1.0],
                              "preprocess": SPEC.to_config()}
    assert entry["training"] == TRAINING
    assert entry["sources"] == {"bundled": "presets/tiny_vq",
                                "hub": {"repo_id": "medzoo/tiny-vq", "revision": COMMIT,
                                        "filename": "model.weights.h5"}}
    bundled = zoo["path"].parent / "presets" / "tiny_vq"
    assert sorted(p.name for p in bundled.iterdir()) == sorted(f["filename"] for f in entry["files"])
    for record in entry["files"]:
        path = bundled / record["filename"]
        assert record["sha256"] == sha256_file(path) == sha256_file(zoo["vq"] / record["filename"])
        assert record["size"] == path.stat().st_size
    assert data["models"][0]["sources"]["hub"] is None


def test_manifest_formatting_is_stable(zoo, tmp_path):
    text = zoo["path"].read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "format_version": 1,\n  "models": [')
    again = tmp_path / "weights_manifest.json"
    manifest.add_to_manifest(zoo["ae"], manifest_path=again, bundle=False, hub=f"hf://medzoo/tiny-ae@{COMMIT}")
    manifest.add_to_manifest(zoo["ae"], manifest_path=again, bundle=False, hub=f"hf://medzoo/tiny-ae@{COMMIT}")
    first = again.read_text()
    manifest.add_to_manifest(zoo["ae"], manifest_path=again, bundle=False, hub=f"hf://medzoo/tiny-ae@{COMMIT}")
    assert again.read_text() == first  # replacing an entry by itself changes nothing
    assert len(json.loads(first)["models"]) == 1
    assert not (tmp_path / "presets").exists()  # bundle=False copies nothing


def test_replacing_an_entry_replaces_its_bundled_copy(tmp_path):
    path = tmp_path / "pkg" / "weights_manifest.json"
    first = make_preset(tmp_path / "a", "tiny")
    manifest.add_to_manifest(first, manifest_path=path)
    second = make_preset(tmp_path / "b", "tiny", version="1.1.0", metrics={"test": {"psnr": 25.0}})
    entry = manifest.add_to_manifest(second, manifest_path=path)
    assert entry["version"] == "1.1.0"
    data = manifest.read_manifest(path)
    assert [e["version"] for e in data["models"]] == ["1.1.0"]
    bundled = path.parent / "presets" / "tiny"
    assert json.loads((bundled / "metadata.json").read_text())["version"] == "1.1.0"
    assert [p.name for p in bundled.parent.iterdir()] == ["tiny"]  # no staging folders left behind


def test_refreshing_an_entry_keeps_why_it_stays_and_a_hub_pin_of_the_same_files(tmp_path):
    """kept_because and the Hub pin live in the manifest, not the preset: re-adding the preset after a metadata
    change (a domain profile, a re-rendered card) must not drop the first, nor keep the second for other files."""
    path = tmp_path / "pkg" / "weights_manifest.json"
    first = make_preset(tmp_path / "a", "tiny")
    manifest.add_to_manifest(first, manifest_path=path, bundle=False,
                             hub={"repo_id": "org/tiny", "revision": "a" * 40})
    data = manifest.read_manifest(path)
    data["models"][0]["kept_because"] = "the smallest files at its rate"
    path.write_text(json.dumps(data))
    again = manifest.add_to_manifest(first, manifest_path=path, bundle=False)
    assert again["kept_because"] == "the smallest files at its rate" and again["sources"]["hub"]["repo_id"] == "org/tiny"
    changed = make_preset(tmp_path / "b", "tiny", version="1.1.0", metrics={"test": {"psnr": 25.0}})
    newer = manifest.add_to_manifest(changed, manifest_path=path, bundle=False)
    assert newer["kept_because"] == "the smallest files at its rate" and newer["sources"]["hub"] is None


def test_a_retired_name_loads_its_replacement_with_a_warning(tmp_path):
    from medzoo.zoo.table import markdown_table

    path = tmp_path / "pkg" / "weights_manifest.json"
    manifest.add_to_manifest(make_preset(tmp_path, "old_ae"), manifest_path=path)
    manifest.add_to_manifest(make_preset(tmp_path, "new_ae", version="2.0.0"), manifest_path=path)
    with pytest.raises(ModelNotFoundError):
        manifest.retire("old_ae", "no_such_model", "better.", manifest_path=path)
    record = manifest.retire("old_ae", "new_ae", "it beats it on every measure.", manifest_path=path)
    assert record == {"name": "old_ae", "replaced_by": "new_ae", "last_version": "1.0.0",
                      "note": "it beats it on every measure."}
    assert not (path.parent / "presets" / "old_ae").exists()  # its weights leave the package
    assert (path.parent / "presets" / "new_ae").is_dir()
    table = medzoo.list_models(manifest_path=path)
    assert [m["name"] for m in table] == ["new_ae"] and "old_ae -> new_ae" in str(table)
    assert "`old_ae` (last version 1.0.0) → `new_ae`" in markdown_table(path)
    with pytest.warns(FutureWarning, match=r"'old_ae' \(last version 1.0.0\) is retired; it now gives 'new_ae'"):
        model = medzoo.load("old_ae", manifest_path=path)
    assert model.zoo_metadata["name"] == "new_ae" and model.zoo_metadata["version"] == "2.0.0"
    with pytest.warns(FutureWarning):
        assert medzoo.info("old_ae", manifest_path=path)["name"] == "new_ae"
    with pytest.raises(ConfigError, match="already retired"), pytest.warns(FutureWarning):
        manifest.retire("old_ae", "new_ae", "again.", manifest_path=path)
    # adding a model under a retired name, or an alias to nothing, is refused
    with pytest.raises(ConfigError, match=r"retired\[0\]\.name: 'old_ae' is retired but still an entry"):
        manifest.add_to_manifest(make_preset(tmp_path / "again", "old_ae"), manifest_path=path)
    data = json.loads(path.read_text())
    data["retired"][0]["replaced_by"] = "gone"
    with pytest.raises(ConfigError, match=r"retired\[0\]\.replaced_by: 'gone' is not an entry"):
        manifest.validate_manifest(data)
    manifest.add_to_manifest(make_preset(tmp_path, "third"), manifest_path=path)  # the record survives updates
    assert manifest.read_manifest(path)["retired"] == [record]


def test_incomplete_provenance_is_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "pkg" / "weights_manifest.json"
    preset = make_preset(tmp_path, "anon", training={"recipe": "x"})
    with pytest.raises(ConfigError, match=r"anon\.training\.dataset: missing"):
        manifest.add_to_manifest(preset, manifest_path=path)
    unknown = {**TRAINING, "dataset": {"name": "mine", "licence": "unknown", "citation": ""}}
    preset = make_preset(tmp_path, "unlicensed", training=unknown)
    with pytest.raises(ConfigError, match=r"unlicensed\.training\.dataset\.licence: expected a non-empty, known"):
        manifest.add_to_manifest(preset, manifest_path=path)
    preset = make_preset(tmp_path, "nometrics", metrics={})
    with pytest.raises(ConfigError, match=r"nometrics\.metrics: empty"):
        manifest.add_to_manifest(preset, manifest_path=path)
    with pytest.raises(ConfigError, match=r"sources\.hub\.revision: expected a pinned 40-hex commit"):
        manifest.add_to_manifest(make_preset(tmp_path, "ok"), manifest_path=path,
                                 hub={"repo_id": "medzoo/ok", "revision": "main"})
    assert not path.parent.exists()


def test_a_tampered_preset_is_not_added(tmp_path):
    preset = make_preset(tmp_path, "tiny")
    (preset / "config.json").write_text((preset / "config.json").read_text().replace('"seed": 0', '"seed": 1'))
    with pytest.raises(IntegrityError, match="config.json"):
        manifest.add_to_manifest(preset, manifest_path=tmp_path / "m.json")


def _break(path, value):
    """Return a function that sets (or, with value=DELETE, deletes) a field given as a path of keys."""

    def edit(data):
        *parents, last = path
        target = data
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value(target[last]) if callable(value) else value
        return data

    return edit


DELETE = object()
LAMBDA = {"module": "keras.layers", "class_name": "Lambda", "config": {}, "registered_name": None}


@pytest.mark.parametrize(
    "edit, where",
    [
        (_break(["format_version"], 2), "format_version"),
        (_break(["models", 0, "name"], "Tiny AE"), "models[0].name"),
        (_break(["models", 0, "family"], "gan"), "models[0].family"),
        (_break(["models", 0, "version"], "1.0"), "models[0].version"),
        (_break(["models", 0, "licence"], ""), "models[0].licence"),
        (_break(["models", 0, "homepage"], "x"), "models[0].homepage: unknown field"),
        (_break(["models", 0, "description"], DELETE), "models[0].description: missing"),
        (_break(["models", 0, "config"], LAMBDA), "models[0].config"),
        (_break(["models", 0, "config", "class_name"], "VQVAE"), "models[0].config"),
        (_break(["models", 0, "input", "shape"], [64, 64, 1]), "models[0].input.preprocess"),
        (_break(["models", 0, "input", "channels"], 3), "models[0].input.channels"),
        (_break(["models", 0, "input", "value_range"], [-1.0, 1.0]), "models[0].input.value_range"),
        (_break(["models", 0, "input", "preprocess", "resize"], "zoom"), "models[0].input.preprocess"),
        (_break(["models", 0, "training", "dataset", "citation"], DELETE), "models[0].training.dataset.citation"),
        (_break(["models", 0, "training", "splits"], DELETE), "models[0].training.splits: missing"),
        (_break(["models", 0, "training", "epochs"], 0), "models[0].training.epochs"),
        (_break(["models", 0, "metrics", "test", "psnr"], "high"), "models[0].metrics.test.psnr"),
        (_break(["models", 0, "files", 1, "sha256"], "abc"), "models[0].files[1].sha256"),
        (_break(["models", 0, "files", 1, "size"], -1), "models[0].files[1].size"),
        (_break(["models", 0, "files", 1, "filename"], "model.pkl"), "models[0].files[1].filename"),
        (_break(["models", 0, "files"], lambda files: files[:1]), "models[0].files: model.weights.h5 is missing"),
        (_break(["models", 0, "sources", "bundled"], "../../etc"), "models[0].sources.bundled"),
        (_break(["models", 1, "sources", "hub", "repo_id"], "no-slash"), "models[1].sources.hub"),
        (_break(["models", 1, "sources", "hub", "filename"], "weights.pkl"), "models[1].sources.hub.filename"),
        (_break(["models", 0, "kept_because"], " "), "models[0].kept_because"),
        (lambda data: {**data, "models": data["models"] + data["models"][:1]},
         "models[2].name: 'tiny_ae' appears twice"),
    ],
)
def test_schema_rejects_broken_manifests_naming_the_field(zoo, edit, where):
    data = json.loads(zoo["path"].read_text())
    manifest.validate_manifest(copy.deepcopy(data))  # the unbroken one passes
    with pytest.raises(ConfigError) as info:
        manifest.validate_manifest(edit(data))
    assert str(info.value).startswith(where), str(info.value)


def test_read_manifest_reports_the_file_and_field(zoo, tmp_path):
    data = json.loads(zoo["path"].read_text())
    data["models"][0]["files"][0]["sha256"] = "nope"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"bad\.json is invalid: models\[0\]\.files\[0\]\.sha256"):
        manifest.read_manifest(bad)


def test_list_models_and_info(zoo):
    table = medzoo.list_models(manifest_path=zoo["path"])
    assert [m["name"] for m in table] == ["tiny_ae", "tiny_vq"]
    vq = table[1]
    assert vq["family"] == "vqvae" and vq["input_shape"] == (32, 32, 1) and vq["sources"] == ["bundled", "hub"]
    assert vq["size_bytes"] == sum(p.stat().st_size for p in zoo["vq"].iterdir())
    text = str(table)
    lines = text.splitlines()
    assert lines[0].split() == ["name", "family", "input", "params", "size", "licence", "sources", "description"]
    assert lines[3].startswith("tiny_vq") and "bundled+hub" in lines[3] and "32x32x1" in lines[3]
    assert repr(table) == text and "<td>tiny_vq</td>" in table._repr_html_()
    entry = medzoo.info("tiny_vq", manifest_path=zoo["path"])
    assert entry["sources"]["hub"]["revision"] == COMMIT and entry["metrics"] == {"test": {"psnr": 20.0, "ssim": 0.5}}
    entry["metrics"].clear()  # a copy: the manifest is not changed through it
    assert medzoo.info("tiny_vq", manifest_path=zoo["path"])["metrics"]


def test_unknown_names_suggest_close_matches(zoo):
    with pytest.raises(ModelNotFoundError, match=r"; did you mean 'tiny_vq'") as info:
        medzoo.info("tiny_vqe", manifest_path=zoo["path"])
    assert isinstance(info.value, KeyError) and "tiny_ae, tiny_vq" in str(info.value)
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'resnet50'\. Known models"):
        medzoo.load("resnet50", manifest_path=zoo["path"])


def test_the_shipped_manifest_is_valid_and_is_the_one_in_the_package():
    package_file = pathlib.Path(medzoo.__file__).parent / "weights_manifest.json"
    assert package_file.is_file() and not package_file.is_symlink()
    root_file = REPO_ROOT / "weights_manifest.json"
    assert root_file.is_symlink() and root_file.resolve() == package_file.resolve()
    data = manifest.read_manifest()
    assert data["format_version"] == 1
    for entry in data["models"]:  # every bundled entry's files are really there
        folder = manifest.bundled_dir(entry)
        if folder is not None:
            for record in entry["files"]:
                assert sha256_file(folder / record["filename"]) == record["sha256"]
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    shipped = cfg["options.package_data"]["medzoo"].split()
    assert "weights_manifest.json" in shipped and "presets/*/*" in shipped


def test_the_repository_presets_folder_is_a_mirror_of_every_entry(monkeypatch):
    """presets/<name>/ holds every entry's files with the manifest's digests (what `medzoo push` publishes), and
    with MEDZOO_MIRROR pointing at it every entry loads from it alone."""
    presets = REPO_ROOT / "presets"
    entries = manifest.read_manifest()["models"]
    assert sorted(p.name for p in presets.iterdir()) == sorted(e["name"] for e in entries)
    monkeypatch.setenv("MEDZOO_MIRROR", str(presets))
    for entry in entries:
        assert {p.name for p in (presets / entry["name"]).iterdir()} == {r["filename"] for r in entry["files"]}
        model = medzoo.load(entry["name"], compile=False)
        assert model.zoo_metadata["source"] == "mirror" and model.zoo_metadata["version"] == entry["version"]


def test_an_empty_zoo_says_so(tmp_path):
    path = tmp_path / "weights_manifest.json"
    path.write_text('{"format_version": 1, "models": []}')
    table = medzoo.list_models(manifest_path=path)
    assert table == [] and str(table) == "no pretrained models in the zoo yet"
    with pytest.raises(ModelNotFoundError, match="no pretrained models yet"):
        medzoo.info("anything", manifest_path=path)


def test_every_zoo_model_that_takes_images_carries_a_domain_profile():
    """A model without a profile warns about nothing, a brain MRI given to a chest model included
    (benchmarks/domain.py measures what each profile flags; tools/fit_domain_profiles.py fits missing ones)."""
    from medzoo.models.domain import DomainProfile

    for entry in manifest.read_manifest()["models"]:
        if entry["family"] == "prior":  # takes labels, not images
            continue
        domain = entry["training"].get("domain")
        assert domain and DomainProfile.from_dict(domain) is not None, entry["name"]
