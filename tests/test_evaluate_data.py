"""``medzoo evaluate --data DIR``: a folder of image files with class subfolders, named as the folders are."""

import json
import re
import shutil

import pytest

import medzoo
from medzoo.cli import main
from medzoo.data import sample_files


@pytest.fixture
def folder(tmp_path):
    """The 8 sample X-rays sorted into class folders that are not called normal / pneumonia (3 and 5 images)."""
    root = tmp_path / "xrays"
    for i, path in enumerate(sample_files()):
        target = root / ("effusion" if i < 3 else "clear")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)
    return root


def test_per_class_results_are_named_after_the_folders(folder, tmp_path, capsys):
    result = medzoo.evaluate("ae-chestxray", "reconstruction", data=str(folder))
    by_class = result.by_class()
    assert list(by_class) == ["clear", "effusion"]  # label 0, 1: the subfolders in sorted order
    assert (by_class["clear"]["n"], by_class["effusion"]["n"]) == (5, 3)
    assert result.to_dict()["class_names"] == ["clear", "effusion"]
    assert "effusion" in result.table() and "pneumonia" not in result.table()

    assert main(["evaluate", "ae-chestxray", "--data", str(folder), "--output", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(saved["by_class"]) == {"clear", "effusion"} and "classes clear, effusion" in saved["data"]
    assert re.search(r"^effusion\s+3\s", capsys.readouterr().out, re.M)  # the printed per-class table


def test_the_samples_keep_the_chest_x_ray_class_names():
    result = medzoo.evaluate("ae-chestxray", "reconstruction", data="samples")
    assert list(result.by_class()) == ["normal", "pneumonia"] and "class_names" not in result.to_dict()
