"""The sample images shipped in the package (chest X-rays, fetal heads): present, attributed, exactly the npz pixels,
and package data."""

import configparser
import fnmatch
import hashlib
import pathlib

import numpy as np

import pytest

from medzoo.data import SAMPLES_DIR, fetal_head_samples, load_pixel_spacing, sample_files, sample_images, sample_manifest
from medzoo.errors import DataError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_samples_are_four_normal_and_four_pneumonia_with_checksums():
    manifest = sample_manifest()
    assert manifest["licence"] == "CC-BY-4.0" and "10.17632/rscbjbr9sj.2" in manifest["dataset"]
    assert "10.1016/j.cell.2018.02.010" in manifest["citation"]
    files = sample_files()
    assert [f.name for f in files] == [item["file"] for item in manifest["images"]]
    for path, item in zip(files, manifest["images"]):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == item["sha256"], path.name
        assert 1000 < path.stat().st_size < 20_000
    images, labels = sample_images()
    assert images.shape == (8, 128, 128) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert images.std(axis=(1, 2)).min() > 20  # real X-rays, not blank images


def test_attribution_names_source_licence_and_every_file():
    text = (SAMPLES_DIR / "ATTRIBUTION.md").read_text()
    for needle in ("CC BY 4.0", "10.17632/rscbjbr9sj.2", "10.1016/j.cell.2018.02.010", "np.linspace"):
        assert needle in text
    for item in sample_manifest()["images"]:
        assert item["file"] in text and item["original_filename"] in text


def test_samples_are_the_npz_pixels_they_claim_to_be(cxr128_path):
    manifest = sample_manifest()
    images, labels = sample_images()
    with np.load(cxr128_path) as f:
        idx = manifest["derived_from"]["indices"]
        assert np.array_equal(images, f["test_images"][idx])
        assert np.array_equal(labels, f["test_labels"][idx, 0])
        assert [str(n) for n in f["test_filenames"][idx]] == [i["original_filename"] for i in manifest["images"]]


def test_samples_are_package_data():
    """setup.cfg's package_data patterns cover every file in medzoo/samples (so a wheel ships them)."""
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["medzoo"].splitlines() if p.strip()]
    files = sorted(p.relative_to(SAMPLES_DIR.parent).as_posix() for p in SAMPLES_DIR.rglob("*") if p.is_file())
    assert {"samples/ATTRIBUTION.md", "samples/manifest.json", "samples/fetal_head/manifest.json"} <= set(files)
    assert len(files) == 10 + 9  # 8 X-rays and 4 fetal heads with 4 masks, besides the text files
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_fetal_head_samples_are_four_hc18_test_images_with_masks_spacing_and_circumference():
    manifest = sample_manifest("fetal-head")
    assert manifest["licence"] == "CC-BY-4.0" and "10.5281/zenodo.1322001" in manifest["dataset"]
    heads = fetal_head_samples()
    for path, item in zip(heads["files"], manifest["images"]):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == item["sha256"], path.name
        assert hashlib.sha256((path.parent / item["mask"]).read_bytes()).hexdigest() == item["mask_sha256"]
    assert heads["images"].shape == heads["masks"].shape == (4, 256, 256)
    assert set(np.unique(heads["masks"])) == {0, 1} and heads["images"].std(axis=(1, 2)).min() > 20
    assert heads["pixel_spacing_mm"].shape == heads["head_circumference_mm"].shape == (4,)
    text = (SAMPLES_DIR / "ATTRIBUTION.md").read_text()
    for needle in ("10.5281/zenodo.1322001", "10.1371/journal.pone.0200412", "np.linspace(0, 102, 4)"):
        assert needle in text
    for item in manifest["images"]:
        assert item["file"] in text and item["original_filename"] in text
    with pytest.raises(DataError, match="no sample set 'knee'"):
        sample_files("knee")


def test_fetal_head_samples_are_the_npz_pixels_masks_and_measures_they_claim_to_be(data_dir):
    manifest = sample_manifest("fetal-head")
    heads = fetal_head_samples()
    idx = manifest["derived_from"]["indices"]
    with np.load(data_dir / "hc18" / "hc18_256.npz") as f:
        assert np.array_equal(heads["images"], f["test_images"][idx])
        assert np.array_equal(heads["masks"], (f["test_masks"][idx] > 0).astype(np.uint8))
        assert [str(n) for n in f["test_names"][idx]] == [i["original_filename"] for i in manifest["images"]]
    spacing, circumference = load_pixel_spacing("hc18_256", "test", side=256)
    np.testing.assert_allclose(heads["pixel_spacing_mm"], spacing[idx], rtol=1e-6)
    np.testing.assert_allclose(heads["head_circumference_mm"], circumference[idx], atol=0.01)
