"""The sample images shipped inside the package (``medzoo/samples/``).

Two sets of real images, each from a test split and under CC BY 4.0. They need no network and
no data folder, so the demo, the notebooks and the tests can always run on real images:

* ``"chestxray"``: eight pediatric chest X-rays (4 normal, 4 pneumonia; Kermany et al. 2018)
  from ``kermany_pediatric_cxr_128``, 128 x 128 8-bit grey PNGs;
* ``"fetal-head"`` (``samples/fetal_head/``): four HC18 fetal head ultrasound images (van den
  Heuvel et al. 2018) from ``hc18_256``, 256 x 256, with their reference head masks, pixel
  sizes and reference head circumferences, for the segmentation models.

``medzoo/samples/ATTRIBUTION.md`` says where they come from and how they were chosen; each
set's ``manifest.json`` lists original file name and sha256 of each file.

Example:
    >>> images, labels = medzoo.data.sample_images()   # uint8 (8, 128, 128), int64 (8,)
    >>> x = model.preprocess(images)
    >>> heads = medzoo.data.fetal_head_samples()       # images, masks, pixel_spacing_mm, head_circumference_mm
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from medzoo.errors import DataError

SAMPLES_DIR = pathlib.Path(__file__).resolve().parent.parent / "samples"
"""The folder of the sample images, their ``manifest.json`` and ``ATTRIBUTION.md``."""

#: each sample set's folder
SAMPLE_SETS = {"chestxray": SAMPLES_DIR, "fetal-head": SAMPLES_DIR / "fetal_head"}


def _folder(kind: str) -> pathlib.Path:
    if kind not in SAMPLE_SETS:
        raise DataError(f"no sample set {kind!r}; known: {', '.join(SAMPLE_SETS)}")
    return SAMPLE_SETS[kind]


def sample_manifest(kind: str = "chestxray") -> dict:
    """A sample set's ``manifest.json``: source, licence, citation, and per file its original name and sha256."""
    path = _folder(kind) / "manifest.json"
    if not path.is_file():
        raise DataError(f"the sample images are missing from this installation ({path}); reinstall medzoo")
    return json.loads(path.read_text(encoding="utf-8"))


def sample_files(kind: str = "chestxray") -> list[pathlib.Path]:
    """Paths of a sample set's image PNGs, in manifest order (chest X-rays: normal images first)."""
    return _present([_folder(kind) / item["file"] for item in sample_manifest(kind)["images"]], "images")


def _present(paths: list[pathlib.Path], what: str) -> list[pathlib.Path]:
    """``paths``, after checking that an installed package still has every one of them."""
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"sample {what} {missing} are missing from {paths[0].parent}; reinstall medzoo")
    return paths


def _read_grey(path: pathlib.Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("L"), dtype=np.uint8)


def sample_images() -> tuple[np.ndarray, np.ndarray]:
    """The sample chest X-rays as ``(images, labels)``: uint8 (8, 128, 128) and int64 (8,), 0 normal, 1 pneumonia.

    The images are raw pixels, like ``load_npz`` gives them: pass them through a model's
    preprocessing (``model.preprocess(images)``) before ``encode`` / ``reconstruct``.
    """
    items = sample_manifest()["images"]
    images = np.stack([_read_grey(path) for path in sample_files()])
    return images, np.asarray([item["label"] for item in items], dtype=np.int64)


def fetal_head_samples() -> dict:
    """The four HC18 sample images with what a segmentation needs to be checked against.

    Returns:
        ``images`` uint8 (4, 256, 256) raw pixels; ``masks`` uint8 (4, 256, 256), 1 inside the
        reference head outline; ``pixel_spacing_mm`` float64 (4,), mm per pixel of these
        256 px images; ``head_circumference_mm`` float64 (4,), HC18's reference circumference;
        ``files``, the image paths.
    """
    items = sample_manifest("fetal-head")["images"]
    files = sample_files("fetal-head")
    masks = _present([_folder("fetal-head") / item["mask"] for item in items], "masks")
    return {"images": np.stack([_read_grey(f) for f in files]),
            "masks": np.stack([(_read_grey(m) > 0).astype(np.uint8) for m in masks]),
            "pixel_spacing_mm": np.asarray([item["pixel_spacing_mm"] for item in items], dtype=np.float64),
            "head_circumference_mm": np.asarray([item["head_circumference_mm"] for item in items], dtype=np.float64),
            "files": files}
