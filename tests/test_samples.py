"""The sample chest X-rays shipped in the package: present, attributed, exactly the npz pixels, and package data."""

import configparser
import fnmatch
import hashlib
import pathlib

import numpy as np

from medzoo.data import SAMPLES_DIR, sample_files, sample_images, sample_manifest

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
    files = sorted(p.relative_to(SAMPLES_DIR.parent).as_posix() for p in SAMPLES_DIR.iterdir() if p.is_file())
    assert {"samples/ATTRIBUTION.md", "samples/manifest.json"} <= set(files) and len(files) == 10
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
