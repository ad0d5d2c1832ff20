"""Datasets kept as a folder of image files with a ``splits.csv``: native resolution, any size, 16 bit kept.

A folder dataset is what a hospital export looks like: PNG or DICOM files of their own sizes
and bit depths, and one table that says which split each file belongs to::

    my_set/
      splits.csv          file,split[,patient][,labels]   (labels: "key=value;key=value")
      images/0001.png     paths in ``file`` are relative to the folder
      ...
      dataset.json        optional: {"pixel_offset": -32768, "units": "HU"}

:func:`load_dataset` reads one split of such a folder (or, by name, one of the registered
native sets below, found under ``$MEDZOO_DATA_DIR``) into a list of arrays in their stored
integer type, one per file, sizes free. ``pixel_offset`` is added on reading: the CT set
stores HU + 32768 in unsigned 16-bit PNGs, so its images come back as int16 Hounsfield units.
An ``.npz`` name or path goes to :func:`~medzoo.data.load_npz` instead, so recipes read both
kinds through this one function.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib

import numpy as np

from medzoo.data.datasets import DATA_DIR_ENV, load_npz
from medzoo.data.images import read_stored_pixels
from medzoo.data.dicom import is_dicom, read_dicom
from medzoo.errors import DataError

SPLITS_FILE = "splits.csv"
INFO_FILE = "dataset.json"

#: The registered native-resolution sets (``../shared/data/native``): where each lives below
#: ``$MEDZOO_DATA_DIR`` and how its stored pixels map to the values a model reads.
NATIVE_SETS: dict[str, dict] = {
    "cxr_hannover_1024": {"folder": "native/cxr_hannover_1024", "pixel_offset": 0, "units": None},
    "ct_tcia_512": {"folder": "native/ct_tcia_512", "pixel_offset": -32768, "units": "HU"},
}


def is_folder_dataset(name_or_path) -> bool:
    """Whether :func:`load_dataset` reads ``name_or_path`` as a folder with a ``splits.csv`` (not an npz)."""
    if str(name_or_path) in NATIVE_SETS:
        return True
    return (pathlib.Path(name_or_path).expanduser() / SPLITS_FILE).is_file()


def dataset_folder(name_or_path, *, data_dir=None) -> pathlib.Path:
    """The folder holding a folder dataset's ``splits.csv`` (a registered name or a path)."""
    path = pathlib.Path(name_or_path).expanduser()
    if (path / SPLITS_FILE).is_file():
        return path
    entry = NATIVE_SETS.get(str(name_or_path))
    if entry is None:
        raise DataError(f"{name_or_path}: not a folder with a {SPLITS_FILE} and not a registered dataset "
                        f"(registered: {', '.join(sorted(NATIVE_SETS))})")
    roots = [pathlib.Path(d).expanduser() for d in (data_dir, os.environ.get(DATA_DIR_ENV)) if d]
    for root in roots:
        for candidate in (root / entry["folder"], root / pathlib.Path(entry["folder"]).name):
            if (candidate / SPLITS_FILE).is_file():
                return candidate
    searched = ", ".join(str(r) for r in roots) or f"nowhere (${DATA_DIR_ENV} is not set)"
    raise DataError(f"{name_or_path}: no {entry['folder']}/{SPLITS_FILE} in {searched}; point ${DATA_DIR_ENV} at "
                    "the data folder (the native sets' train and val images are rebuilt by "
                    "native/build_native.py, see native/SOURCES.md)")


def dataset_info(name_or_path, *, data_dir=None) -> dict:
    """``{"pixel_offset": int, "units": str | None}`` of a folder dataset (registry, then ``dataset.json``)."""
    entry = NATIVE_SETS.get(str(name_or_path))
    if entry is not None:
        return {"pixel_offset": entry["pixel_offset"], "units": entry["units"]}
    info_file = dataset_folder(name_or_path, data_dir=data_dir) / INFO_FILE
    info = {"pixel_offset": 0, "units": None}
    if info_file.is_file():
        try:
            info.update(json.loads(info_file.read_text()))
        except ValueError as exc:
            raise DataError(f"{info_file}: not valid JSON ({exc})") from exc
    return info


def read_splits(folder: pathlib.Path) -> list[dict]:
    """The rows of ``folder/splits.csv`` (each with at least ``file`` and ``split``)."""
    table = folder / SPLITS_FILE
    try:
        with open(table, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise DataError(f"{table}: cannot read ({exc})") from exc
    if not rows or not {"file", "split"} <= set(rows[0]):
        raise DataError(f"{table}: needs the columns 'file' and 'split' and at least one row")
    return rows


def parse_labels(text: str | None) -> dict:
    """``"modality=CR;sex=m"`` -> ``{"modality": "CR", "sex": "m"}`` (empty for no labels)."""
    labels = {}
    for item in (text or "").split(";"):
        if item.strip():
            key, _, value = item.partition("=")
            labels[key.strip()] = value.strip()
    return labels


def load_dataset(name_or_path, split: str = "train", *, data_dir=None):
    """One split of a dataset: a folder with a ``splits.csv``, a registered native set, or an ``.npz``.

    Args:
        name_or_path: a folder, a name of :data:`NATIVE_SETS` (e.g. ``"ct_tcia_512"``), or
            anything :func:`~medzoo.data.load_npz` reads (then its ``(images, labels)`` come back).
        split: the split column's value, e.g. ``"train"``, ``"val"`` or ``"test"``.
        data_dir: a folder searched before ``$MEDZOO_DATA_DIR``.

    Returns:
        ``(images, rows)`` for a folder: a list of arrays (H, W) or (H, W, C), one per file in
        table order, in their stored integer type plus the dataset's ``pixel_offset`` (CT: int16
        HU), and the table's rows with ``labels`` parsed into a dict.

    Raises:
        DataError: an unknown split (the message lists the folder's splits), a file named in
            the table that is missing or unreadable, images of mixed bit depth in one split.
    """
    if not is_folder_dataset(name_or_path):
        return load_npz(name_or_path, split, data_dir=data_dir)
    folder = dataset_folder(name_or_path, data_dir=data_dir)
    offset = int(dataset_info(name_or_path, data_dir=data_dir).get("pixel_offset") or 0)
    rows = read_splits(folder)
    chosen = [dict(row) for row in rows if row["split"] == split]
    if not chosen:
        raise DataError(f"{folder / SPLITS_FILE}: no split {split!r}; its splits: "
                        f"{sorted({row['split'] for row in rows})}")
    images = []
    for row in chosen:
        path = folder / row["file"]
        if not path.is_file():
            raise DataError(f"{folder / SPLITS_FILE} names {row['file']}, which is not in {folder}")
        pixels = _read(path)
        images.append(_shift(pixels, offset, path))
        row["labels"] = parse_labels(row.get("labels"))
    kinds = {x.dtype for x in images}
    if len(kinds) > 1:
        first = {dtype: next(r["file"] for r, x in zip(chosen, images) if x.dtype == dtype) for dtype in kinds}
        raise DataError(f"{folder}: the {split!r} split mixes bit depths ("
                        + ", ".join(f"{dtype} e.g. {file}" for dtype, file in first.items())
                        + "); one dataset holds one kind of pixel")
    return images, chosen


def stack_if_uniform(images: list):
    """One (N, H, W[, C]) array when the images share a shape, else the list unchanged."""
    return np.stack(images) if len({x.shape for x in images}) == 1 else list(images)


def _read(path: pathlib.Path) -> np.ndarray:
    if is_dicom(path):  # modality units (rescale applied): CT in HU
        pixels = read_dicom(path, voi="none")[0]
        rounded = np.rint(pixels)
        return rounded.astype(np.int16) if np.array_equal(rounded, pixels) and np.abs(pixels).max() < 32768 \
            else pixels
    return read_stored_pixels(path)


def _shift(pixels: np.ndarray, offset: int, path) -> np.ndarray:
    if not offset:
        return pixels
    shifted = pixels.astype(np.int32) + offset
    if shifted.min() < -32768 or shifted.max() > 32767:
        raise DataError(f"{path}: pixel_offset {offset} takes values outside 16-bit signed "
                        f"({shifted.min()}..{shifted.max()})")
    return shifted.astype(np.int16)
