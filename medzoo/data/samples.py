"""The sample chest X-rays shipped inside the package (``medzoo/samples/``).

Eight real pediatric chest X-rays (4 normal, 4 pneumonia; Kermany et al. 2018, CC BY 4.0)
from the test split of ``kermany_pediatric_cxr_128``, 128 x 128 8-bit grey PNGs. They need
no network and no data folder, so the demo, the notebooks and the tests can always run on
real images. ``medzoo/samples/ATTRIBUTION.md`` says where they come from and how they were
chosen; ``manifest.json`` lists label, original file name and sha256 of each.

Example:
    >>> images, labels = medzoo.data.sample_images()   # uint8 (8, 128, 128), int64 (8,)
    >>> x = model.preprocess(images)
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from medzoo.errors import DataError

SAMPLES_DIR = pathlib.Path(__file__).resolve().parent.parent / "samples"
"""The folder of the sample images, their ``manifest.json`` and ``ATTRIBUTION.md``."""


def sample_manifest() -> dict:
    """``medzoo/samples/manifest.json``: source, licence, citation, and per file its label and original name."""
    path = SAMPLES_DIR / "manifest.json"
    if not path.is_file():
        raise DataError(f"the sample images are missing from this installation ({path}); reinstall medzoo")
    return json.loads(path.read_text(encoding="utf-8"))


def sample_files() -> list[pathlib.Path]:
    """Paths of the sample PNGs, in manifest order (normal images first)."""
    files = [SAMPLES_DIR / item["file"] for item in sample_manifest()["images"]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"sample images {missing} are missing from {SAMPLES_DIR}; reinstall medzoo")
    return files


def sample_images() -> tuple[np.ndarray, np.ndarray]:
    """The sample chest X-rays as ``(images, labels)``: uint8 (8, 128, 128) and int64 (8,), 0 normal, 1 pneumonia.

    The images are raw pixels, like ``load_npz`` gives them: pass them through a model's
    preprocessing (``model.preprocess(images)``) before ``encode`` / ``reconstruct``.
    """
    from PIL import Image

    items = sample_manifest()["images"]
    images = []
    for path in sample_files():
        with Image.open(path) as img:
            images.append(np.asarray(img.convert("L"), dtype=np.uint8))
    return np.stack(images), np.asarray([item["label"] for item in items], dtype=np.int64)
