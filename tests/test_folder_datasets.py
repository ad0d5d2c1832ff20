"""Folder datasets (files + splits.csv), the native-resolution sets, crops at random scales and the HU spec."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

import medzoo
from medzoo.data import PreprocessSpec, load_dataset
from medzoo.data.batches import ArrayBatches
from medzoo.errors import ConfigError, DataError
from medzoo.recipes import get_recipe
from medzoo.recipes.recipe import CT_SPEC


def _write_set(root, files, *, info=None):
    """A folder dataset: ``files`` maps relative name -> (array, split)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "splits.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "split", "patient", "labels"])
        for name, (array, split) in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            if array is not None:
                Image.fromarray(array).save(root / name)
            writer.writerow([name, split, name[:3], "view=pa;sex=f"])
    if info is not None:
        (root / "dataset.json").write_text(json.dumps(info))
    return root


def test_the_stored_native_test_splits_read_at_native_size_and_bit_depth():
    cxr, rows = load_dataset("cxr_hannover_1024", "test")
    assert len(cxr) == 10 and {x.shape for x in cxr} == {(1024, 1024)} and cxr[0].dtype == np.uint8
    assert rows[0]["labels"]["modality"] in ("CR", "DX") and rows[0]["split"] == "test"
    ct, _ = load_dataset("ct_tcia_512", "test")
    assert len(ct) == 22 and ct[0].dtype == np.int16 and ct[0].shape == (512, 512)
    lowest = min(int(x.min()) for x in ct)
    assert -3100 <= lowest <= -1000 and max(int(x.max()) for x in ct) > 300  # air and bone: Hounsfield units
    assert medzoo.load_dataset is load_dataset  # the public face


def test_images_of_several_sizes_come_back_as_a_list_and_16_bit_stays_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    root = _write_set(tmp_path / "mine", {
        "a/1.png": (rng.integers(0, 4096, (40, 56), dtype=np.uint16), "train"),
        "a/2.png": (rng.integers(0, 4096, (64, 32), dtype=np.uint16), "train"),
        "b/3.png": (rng.integers(0, 4096, (48, 48), dtype=np.uint16), "test"),
    })
    images, rows = load_dataset(root, "train")
    assert [x.shape for x in images] == [(40, 56), (64, 32)] and images[0].dtype == np.uint16
    assert rows[1]["file"] == "a/2.png" and rows[1]["labels"] == {"view": "pa", "sex": "f"}
    np.testing.assert_array_equal(images[0], np.asarray(Image.open(root / "a/1.png")))


def test_a_stored_offset_turns_unsigned_pngs_into_hounsfield_units(tmp_path):
    hu = np.full((32, 32), -1000, np.int32)
    hu[8:24, 8:24] = 40
    root = _write_set(tmp_path / "ct", {"s.png": ((hu + 32768).astype(np.uint16), "val")},
                      info={"pixel_offset": -32768, "units": "HU"})
    (image,), _ = load_dataset(root, "val")
    assert image.dtype == np.int16
    np.testing.assert_array_equal(image, hu)


@pytest.mark.parametrize("problem, match", [
    ("split", r"no split 'tset'; its splits: \['test', 'train'\]"),
    ("missing", r"names a/gone.png, which is not in"),
    ("depth", r"mixes bit depths \(.*uint8.*uint16|mixes bit depths \(.*uint16.*uint8"),
])
def test_bad_folder_datasets_name_the_file(tmp_path, problem, match):
    files = {"a/1.png": (np.zeros((16, 16), np.uint8), "train"), "a/2.png": (np.ones((16, 16), np.uint8), "test")}
    if problem == "missing":
        files["a/gone.png"] = (None, "train")
    if problem == "depth":
        files["a/3.png"] = (np.ones((16, 16), np.uint16), "train")
    root = _write_set(tmp_path / problem, files)
    with pytest.raises(DataError, match=match):
        load_dataset(root, "tset" if problem == "split" else "train")


def test_a_native_split_that_was_not_rebuilt_says_which_file_is_missing(tmp_path, monkeypatch):
    """The shared folder stores only the test splits: a train split names its first absent file, and a data folder
    without the set says where the set is expected and how to rebuild it."""
    import shutil

    from medzoo.data.folder_sets import dataset_folder

    source = dataset_folder("cxr_hannover_1024")
    copy = tmp_path / "native" / "cxr_hannover_1024"
    (copy / "images").mkdir(parents=True)
    shutil.copy(source / "splits.csv", copy)
    rows = list(csv.DictReader(open(copy / "splits.csv")))
    for row in rows[:3]:
        if row["split"] == "test":
            shutil.copy(source / row["file"], copy / row["file"])
    first_train = next(r["file"] for r in rows if r["split"] == "train")
    with pytest.raises(DataError, match="names " + first_train):
        load_dataset(copy, "train")
    monkeypatch.setenv("MEDZOO_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="no native/cxr_hannover_1024/splits.csv in .*build_native.py"):
        load_dataset("cxr_hannover_1024", "test")


def _ramp(side=512):
    return np.tile(np.linspace(0.0, 1.0, side, dtype=np.float32), (side, 1))[None]


def test_crops_at_random_scales_span_native_size_to_the_smallest_side():
    """On a horizontal ramp a crop's value span is proportional to the region it was cut from: native crops all
    span 31/511, scaled ones up to (512 / 64) times as much, area-averaged into the same 32 px."""
    spec = PreprocessSpec(size=None, normalize="fixed", input_range=(0, 1))
    native = ArrayBatches(_ramp(), spec, batch_size=64, crop_size=32, repeats=64, shuffle=True, seed=0)
    scaled = ArrayBatches(_ramp(), spec, batch_size=64, crop_size=32, repeats=64, shuffle=True, seed=0, min_side=64)
    spans = {}
    for name, batches in (("native", native), ("scaled", scaled)):
        crops = np.concatenate([batches[i] for i in range(len(batches))])
        assert crops.shape[1:] == (32, 32, 1) and crops.min() >= 0 and crops.max() <= 1
        spans[name] = crops[:, 16, -1, 0] - crops[:, 16, 0, 0]
    np.testing.assert_allclose(spans["native"], 31 / 511, rtol=1e-4)
    assert spans["scaled"].min() < 2 * 31 / 511 and spans["scaled"].max() > 5 * 31 / 511
    assert spans["scaled"].max() <= 8 * 32 / 511 + 1e-3
    with pytest.raises(ConfigError, match="min_side"):
        ArrayBatches(_ramp(), spec, batch_size=4, crop_size=32, min_side=16)


def test_a_mixture_of_native_and_thumbnail_sets_is_a_recipe_with_shares():
    recipe = get_recipe("ae-chestxray-f4c3").with_overrides(
        dataset=["kermany_pediatric_cxr_128", "cxr_hannover_1024"], dataset_weights=[0.4, 0.6], min_side=128)
    assert "shares 0.40 / 0.60" in recipe.provenance["description"]
    assert recipe.provenance["components"][1]["licence"] == "CC-BY-3.0"
    with pytest.raises(ConfigError, match="dataset_weights"):
        recipe.with_overrides(dataset_weights=[1.0])
    with pytest.raises(ConfigError, match="min_side"):
        recipe.with_overrides(min_side=64)


def test_the_ct_spec_maps_hounsfield_units_linearly_and_refuses_what_cannot_be_hu():
    spec = PreprocessSpec.from_config(CT_SPEC)
    assert PreprocessSpec.from_config(spec.to_config()) == spec and spec.to_config()["units"] == "HU"
    ct, _ = load_dataset("ct_tcia_512", "test")
    x = spec.apply(np.stack(ct[:2]))
    np.testing.assert_allclose(x[0, ..., 0], np.clip((ct[0] + 1024.0) / 4095.0, 0, 1), atol=1e-6)
    with pytest.raises(DataError, match=r"dtype uint8\) have no value below -100: not CT in Hounsfield units"):
        spec.apply(np.full((2, 64, 64), 120, np.uint8))
    with pytest.raises(ConfigError, match="units"):
        PreprocessSpec(size=None, units="HU")
    assert "units" not in PreprocessSpec(size=None).to_config()  # old configs unchanged


def test_whole_image_batches_are_capped_by_pixels_and_sizes_that_differ_go_one_at_a_time():
    spec = PreprocessSpec(size=None)
    rng = np.random.default_rng(0)
    big, small = rng.random((3, 64, 64)), rng.random((40, 16, 16))
    batches = ArrayBatches([big, small], spec, batch_size=32, max_batch_pixels=64 * 64 * 2)
    sizes = sorted({(b.shape[0], b.shape[1]) for b in (batches[i] for i in range(len(batches)))})
    assert sizes == [(1, 64), (2, 64), (8, 16), (32, 16)] and sum(len(batches[i]) for i in range(len(batches))) == 43
    mixed = ArrayBatches([[rng.random((24, 40)), rng.random((32, 16))]], spec, batch_size=8)
    assert [mixed[i].shape for i in range(len(mixed))] == [(1, 24, 40, 1), (1, 32, 16, 1)]


def test_the_ct_recipe_trains_on_a_folder_in_hounsfield_units_and_reports_the_error_in_hu(tmp_path):
    """ae-ct-f4c3's recipe (CT_SPEC, crops at random scales) on a folder made of the stored CT test slices:
    a preset whose input is HU and whose test metrics give the error in HU."""
    import shutil

    from medzoo.data.folder_sets import dataset_folder
    from medzoo.recipes import train

    source = dataset_folder("ct_tcia_512")
    with open(source / "splits.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"][:6]
    root = tmp_path / "ct"
    for i, row in enumerate(rows):  # four slices to train on, one to validate, one to test
        (root / row["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / row["file"], root / row["file"])
        row["split"] = "train" if i < 4 else ("val" if i == 4 else "test")
    with open(root / "splits.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "dataset.json").write_text(json.dumps({"pixel_offset": -32768, "units": "HU"}))

    result = train("ae-ct-f4c3", output_dir=tmp_path / "run", epochs=1, verbose=0, dataset=str(root),
                   init_from=None, crops_per_image=2, crop_size=64, batch_size=4, warmup_steps=0,
                   model={"architecture": "residual", "filters": [4, 8], "depth": 2, "blocks_per_level": 1,
                          "latent_channels": 2, "reconstruction_loss": "mse"})
    m = result.metrics
    assert m["test_images"] == 1 and m["mae_hu"] == pytest.approx(m["mae"] * 4095.0, rel=1e-3)
    assert m["rmse_hu"] >= m["mae_hu"] > 0
    loaded = medzoo.load(result.preset_dir)
    assert loaded.preprocess_spec.units == "HU" and loaded.preprocess_spec.input_range == (-1024.0, 3071.0)
    assert loaded.training_resolution["scales"] == {"min_side": 256, "crop_size": 64}  # the scale range, recorded
    assert "random scale between native size and its image shrunk to 256 px" in \
        json.loads((result.preset_dir / "metadata.json").read_text())["training"]["trained_on"]
    hu = load_dataset(root, "test")[0][0]
    assert hu.dtype == np.int16 and hu.min() < -900
    x = loaded.preprocess(hu[None])
    assert x.shape == (1, 512, 512, 1) and 0.0 <= x.min() and x.max() <= 1.0
    # finished again with the tiles its 64 px crops call for: measured and shipped with them
    from medzoo.recipes.train import finish

    assert loaded.default_tile == (128, 32)  # the recipe's tiles, recorded and applied on loading
    tiled = medzoo.load(finish(tmp_path / "run", weights="final", inference_tile=[64, 16]))
    assert tiled.default_tile == (64, 16)
    assert json.loads((result.preset_dir / "metadata.json").read_text())["training"]["tiling"] == \
        {"tile": 64, "overlap": 16}
    with pytest.raises(DataError, match="not CT in Hounsfield units"):
        loaded.preprocess(((hu[None].astype(np.int32) + 1024) // 16).clip(0, 255).astype(np.uint8))  # an 8-bit export


def test_a_mixture_validates_on_every_image_once_whatever_its_training_shares():
    """Training shares oversample a small native set; validation must not (it repeated 26 radiographs 14 times)."""
    from medzoo.recipes.train import _pipeline

    recipe = get_recipe("ae-chestxray-f4c3").with_overrides(
        dataset=["kermany_pediatric_cxr_128", "cxr_hannover_1024"], dataset_weights=[0.1, 0.9], crop_size=64)
    rng = np.random.default_rng(0)
    thumbs, natives = rng.integers(0, 255, (40, 128, 128), np.uint8), rng.integers(0, 255, (3, 512, 512), np.uint8)
    spec = PreprocessSpec.from_config(recipe.spec)
    val, _ = _pipeline([thumbs, natives], spec, 8, recipe, training=False, deterministic=True, backend="numpy")
    sizes = [val[i].shape for i in range(len(val))]
    assert sum(s[0] for s in sizes if s[1] == 128) == 40 and sum(s[0] for s in sizes if s[1] == 512) == 3
    train, _ = _pipeline([thumbs, natives], spec, 8, recipe, training=True, deterministic=True, backend="numpy")
    assert train.samples_per_epoch == 43 * recipe.crops_per_image  # the shares pick which images, not how many


def test_validation_sees_the_tiles_inference_uses_normalised_as_whole_images():
    """With an inference tile, val_loss is measured on tiles of each whole-normalised image (as the shipped
    model reconstructs it), so the best checkpoint is chosen under the statistics it will be used with."""
    from medzoo.recipes.train import validation_tiles

    recipe = get_recipe("ae-chestxray-f4c3").with_overrides(dataset=["kermany_pediatric_cxr_64", "cxr_hannover_1024"],
                                                            crop_size=32, inference_tile=[32, 8])
    spec = PreprocessSpec.from_config(recipe.spec)
    rng = np.random.default_rng(0)
    small, large = rng.integers(0, 255, (5, 60, 60), np.uint8), rng.integers(10, 200, (2, 80, 72), np.uint8)
    (thumbs, tiles), passthrough = validation_tiles(recipe, spec, [small, large])
    assert thumbs.shape == (5, 60, 60, 1)  # four tiles' pixels or fewer: whole, as inference takes them
    assert tiles.shape == (2 * 3 * 3, 32, 32, 1)  # rows at 0, 32, 48 and columns at 0, 32, 40 of each
    whole = np.asarray(spec.apply(large[1:2]))[0]
    np.testing.assert_array_equal(tiles[9 + 4], whole[32:64, 32:64])  # normalised over the whole image
    np.testing.assert_array_equal(tiles[9 + 8], whole[48:80, 40:72])  # the last tile flush with the border
    np.testing.assert_array_equal(np.asarray(passthrough.apply(tiles[:2])), tiles[:2])
    unchanged = get_recipe("ae-chestxray-f4c3")
    assert validation_tiles(unchanged, spec, small) == (small, spec)
