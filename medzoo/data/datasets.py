"""Datasets: MedMNIST-layout ``.npz`` files, in-memory arrays and folders of image files.

* :func:`load_npz` finds an ``.npz`` file by path or name (searching ``data_dir``
  and ``$MEDZOO_DATA_DIR``), or downloads a known public MedMNIST file with its
  official MD5, and returns one split as numpy arrays.
* :func:`from_arrays` turns arrays into batches of preprocessed images for ``fit``:
  a ``tf.data.Dataset`` under the TensorFlow backend, a numpy
  :class:`~medzoo.data.batches.ArrayBatches` (a ``keras.utils.PyDataset``) under JAX
  and PyTorch, which need no TensorFlow. Preprocessing runs once, then the images
  are (re)shuffled every epoch.
* :func:`from_directory` does the same for a folder tree of DICOM / PNG / JPEG /
  NPY files with ``tf.data`` (TensorFlow required). Every file's header is validated
  when the dataset is built, so bad files surface before training starts; decoding
  then runs in parallel inside the pipeline.

Both can train on patches: ``crop_size=S`` yields one random ``S x S`` crop of every
preprocessed image per epoch (a new crop each epoch), so the cost of a training step
is set by the crop, not by the image, and any-size models learn from native
resolution.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import threading

import numpy as np

from medzoo.backend import keras_backend, require_tensorflow
from medzoo.data.dicom import parse_voi
from medzoo.data.images import ImageInfo, image_kind, probe_image, read_image, spec_voi
from medzoo.data.preprocess import PreprocessSpec, check_image_size, shrunk_size
from medzoo.errors import ConfigError, DataError, IntegrityError, MedzooError

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "MEDZOO_DATA_DIR"
"""Environment variable naming a folder that :func:`load_npz` searches for ``.npz`` files by name."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """A downloadable file and the MD5 its publisher gives for it."""

    url: str
    md5: str


_MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{filename}?download=1"
# Official MD5s of the 2D MedMNIST+ files (28, 64, 128, 224 px), from medmnist/info.py of
# MedMNIST v3.0.2 (github.com/MedMNIST/MedMNIST). All CC BY 4.0 (Yang et al., Sci. Data 2023,
# plus each source dataset); DermaMNIST is left out because it is CC BY-NC 4.0.
_MEDMNIST_MD5 = {
    "pathmnist": ("a8b06965200029087d5bd730944a56c1", "55aa9c1e0525abe5a6b9d8343a507616",
                  "ac42d08fb904d92c244187169d1fd1d9", "2c51a510bcdc9cf8ddb2af93af1eadec"),
    "chestmnist": ("02c8a6516a18b556561a56cbdd36c4a8", "9de6cd0b934ebb5b7426cfba5efbae16",
                   "db107e5590b27930b62dbaf558aebee3", "45bd33e6f06c3e8cdb481c74a89152aa"),
    "octmnist": ("c68d92d5b585d8d81f7112f81e2d0842", "e229e9440236b774d9f0dfef9d07bdaf",
                 "0a97e76651ace45c5d943ee3f65b63ae", "abc493b6d529d5de7569faaef2773ba3"),
    "pneumoniamnist": ("28209eda62fecd6e6a2d98b1501bb15f", "8f4eceb4ccffa70c672198ea285246c6",
                       "05b46931834c231683c68f40c47b2971", "d6a3c71de1b945ea11211b03746c1fe1"),
    "retinamnist": ("bd4c0672f1bba3e3a89f0e4e876791e4", "afda852cc34dcda56f86ad2b2457dbcc",
                    "e48e916a24454daf90583d4e6efb1a18", "eae7e3b6f3fcbda4ae613ebdcbe35348"),
    "breastmnist": ("750601b1f35ba3300ea97c75c52ff8f6", "742edef2a1fd1524b2efff4bd7ba9364",
                    "363e4b3f8d712e9b5de15470a2aaadf1", "b56378a6eefa9fed602bb16d192d4c8b"),
    "bloodmnist": ("7053d0359d879ad8a5505303e11de1dc", "2b94928a2ae4916078ca51e05b6b800b",
                   "adace1e0ed228fccda1f39692059dd4c", "b718ff6835fcbdb22ba9eacccd7b2601"),
    "tissuemnist": ("ebe78ee8b05294063de985d821c1c34b", "123ece2eba09d0aa5d698fda57103344",
                    "61b955355d7425a89687b06cca3ce0c2", "b077128c4a949f0a4eb01517f9037b9c"),
    "organamnist": ("68e3f8846a6bd62f0c9bf841c0d9eacc", "2dcccc29b88e6da5a01161ef20cda288",
                    "eeae80d0a227a8d099027e1b3cfd3b60", "50747347e05c87dd3aaf92c49f9f3170"),
    "organcmnist": ("b9ceb9546e10131b32923c5bbeaea2b1", "3ce34a8724ea6f548e6db4744d03b6a9",
                    "773c1f009daa3fe5d9a2a201b2a7ed94", "050f5e875dc056f6768abf94ec9995d1"),
    "organsmnist": ("9ab87b696fb54e2a387ebe992d6ed5f1", "53a6d115339d874c25e309a994ff46d3",
                    "ded0c5fa01a95dc4978b956f613e9b8e", "b354719e553fbbb2513d5533f52a4cb1"),
}

KNOWN_FILES: dict[str, RemoteFile] = {
    f"{dataset}{suffix}": RemoteFile(_MEDMNIST_URL.format(filename=f"{dataset}{suffix}.npz"), md5)
    for dataset, md5s in _MEDMNIST_MD5.items()
    for suffix, md5 in zip(("", "_64", "_128", "_224"), md5s)
}
"""Names :func:`load_npz` can download (e.g. ``pneumoniamnist``, ``pneumoniamnist_128``)."""

_PREPROCESS_CHUNK = 256  # images preprocessed per map call in from_arrays


def load_npz(path_or_name, split: str = "train", *, data_dir=None, cache_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a MedMNIST-layout ``.npz`` file (keys ``{split}_images``, ``{split}_labels``).

    The file is found in this order: an existing path; a file ``<name>.npz`` (or
    ``<name>``) in ``data_dir`` or ``$MEDZOO_DATA_DIR``, subfolders included (a bare
    name matches anywhere below, the first in sorted order wins); a known public
    MedMNIST file (:data:`KNOWN_FILES`), downloaded once with its official MD5
    into the Keras cache (``cache_dir``, default ``~/.keras``, subfolder ``medmnist``).

    Args:
        path_or_name: a path, or a name such as ``"kermany_pediatric_cxr_128"`` or ``"pneumoniamnist_64"``.
        split: ``"train"``, ``"val"`` or ``"test"`` (any split the file holds).
        data_dir: a folder searched before ``$MEDZOO_DATA_DIR``.
        cache_dir: where downloads are cached (``keras.utils.get_file``'s ``cache_dir``).

    Returns:
        ``(images, labels)``: images as stored (uint8 (N, H, W) or (N, H, W, C) for
        MedMNIST), labels as int64 (N,) (a (N, 1) column is squeezed; multi-label
        files such as ChestMNIST keep (N, K)), or None for a split without labels
        (HC18's masks-only and unlabelled splits). Only the two arrays of the split are read.

    Raises:
        DataError: unknown name (the message lists known names and the folders
            searched), unreadable file, missing split or inconsistent arrays, failed download.
        IntegrityError: a download does not have the official MD5.
    """
    if not isinstance(split, str):
        raise DataError(f"split must be a string such as 'train', got {split!r}")
    path = resolve_npz(path_or_name, data_dir=data_dir, cache_dir=cache_dir)
    image_key, label_key = f"{split}_images", f"{split}_labels"
    try:
        with np.load(path, allow_pickle=False) as npz:
            if image_key not in npz.files:
                splits = sorted(k[: -len("_images")] for k in npz.files if k.endswith("_images"))
                raise DataError(
                    f"{path}: no split {split!r} (needs the key {image_key!r}, and {label_key!r} for labels); "
                    f"splits in the file: {splits}"
                )
            images = npz[image_key]
            labels = npz[label_key] if label_key in npz.files else None
    except MedzooError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    if images.ndim not in (3, 4):
        raise DataError(f"{path}: {image_key} has shape {images.shape}; expected (N, H, W) or (N, H, W, C)")
    if labels is None:
        return images, None
    if labels.ndim == 0 or len(labels) != len(images):
        raise DataError(f"{path}: {label_key} has shape {labels.shape} but there are {len(images)} images")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    return images, labels.astype(np.int64)


def load_masks(path_or_name, split: str = "train", *, data_dir=None) -> np.ndarray:
    """The segmentation masks (N, H, W) of one split: the key ``{split}_masks`` of the file :func:`load_npz` reads."""
    path = resolve_npz(path_or_name, data_dir=data_dir)
    key = f"{split}_masks"
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise DataError(f"{path}: no key {key!r} (segmentation masks of the {split!r} split; ${DATA_DIR_ENV}="
                                f"{os.environ.get(DATA_DIR_ENV, '(not set)')}); mask keys in the file: "
                                f"{sorted(k for k in npz.files if k.endswith('_masks'))}")
            return npz[key]
    except MedzooError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc


def load_pixel_spacing(path_or_name, split: str = "test", *, side: int,
                       data_dir=None) -> tuple[np.ndarray, np.ndarray] | None:
    """Each image's mm per pixel on the stored ``side`` px grid, and its reference head circumference (mm).

    For files in HC18's layout (``{split}_pixel_size_mm_and_hc_mm`` and ``{split}_original_hw``):
    each source image was padded to a square of side max(h, w) and resized to ``side``, so
    one stored pixel spans ``pixel_size * max(h, w) / side`` mm. None for a file without them.
    """
    path = resolve_npz(path_or_name, data_dir=data_dir)
    with np.load(path, allow_pickle=False) as npz:
        key = f"{split}_pixel_size_mm_and_hc_mm"
        if key not in npz.files:
            return None
        sizes, hw = npz[key], npz[f"{split}_original_hw"]
    return sizes[:, 0].astype(np.float64) * hw.max(axis=1) / side, sizes[:, 1].astype(np.float64)


def resolve_npz(path_or_name, *, data_dir=None, cache_dir=None) -> pathlib.Path:
    """The local path :func:`load_npz` would read (downloading a known file if needed)."""
    candidate = pathlib.Path(path_or_name).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.is_absolute():
        raise DataError(f"{candidate}: no such file")
    name = str(path_or_name)
    stem = name[: -len(".npz")] if name.endswith(".npz") else name
    filenames = list(dict.fromkeys((f"{stem}.npz", name)))
    roots = [pathlib.Path(d).expanduser() for d in (data_dir, os.environ.get(DATA_DIR_ENV)) if d]
    for root in roots:
        for filename in filenames:
            if (root / filename).is_file():
                return root / filename
        if len(candidate.parts) == 1 and root.is_dir():
            matches = sorted(p for filename in filenames for p in root.rglob(filename) if p.is_file())
            if matches:
                return matches[0]
    if stem in KNOWN_FILES:
        return _download(stem, KNOWN_FILES[stem], cache_dir)
    places = ([f"data_dir={data_dir}"] if data_dir else []) + (
        [f"${DATA_DIR_ENV}={os.environ[DATA_DIR_ENV]}"] if os.environ.get(DATA_DIR_ENV) else [])
    searched = ", ".join(places) or f"nowhere (no data_dir, and ${DATA_DIR_ENV} is not set)"
    raise DataError(
        f"{name!r}: no file {filenames[0]} in {searched} (subfolders included), and not a known downloadable "
        f"name; point ${DATA_DIR_ENV} at the folder that holds it. Downloadable: {', '.join(sorted(KNOWN_FILES))}"
    )


def _download(name: str, remote: RemoteFile, cache_dir) -> pathlib.Path:
    """Download (or reuse the cached copy of) a known file, verified against its MD5."""
    if cache_dir is not None:
        # get_file silently falls back to /tmp/.keras when cache_dir does not exist yet
        pathlib.Path(cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
    import keras

    try:
        path = keras.utils.get_file(
            fname=f"{name}.npz",
            origin=remote.url,
            file_hash=remote.md5,
            hash_algorithm="md5",
            cache_dir=None if cache_dir is None else str(cache_dir),
            cache_subdir="medmnist",
        )
    except ValueError as exc:  # keras.utils.get_file's verdict on a checksum mismatch
        raise IntegrityError(
            f"{name}: the file downloaded from {remote.url} does not have the official MD5 {remote.md5} "
            f"(corrupted or changed upstream): {exc}"
        ) from exc
    except Exception as exc:
        raise DataError(
            f"{name}: downloading {remote.url} failed ({exc}). Without network access, place {name}.npz "
            f"in data_dir or ${DATA_DIR_ENV}"
        ) from exc
    return pathlib.Path(path)


PIPELINES = ("auto", "tf", "numpy")


def from_arrays(
    images,
    spec: PreprocessSpec,
    *,
    labels=None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    cache: bool = True,
    drop_remainder: bool = False,
    repeat: bool = False,
    crop_size: int | None = None,
    repeats: int = 1,
    weights=None,
    min_side: int | None = None,
    max_batch_pixels: int | None = None,
    pipeline: str = "auto",
    workers: int = 1,
):
    """Batches of preprocessed images (and labels) from arrays, ready for ``fit``.

    Preprocessing (``spec.apply``) runs once, in chunks of images; shuffling covers
    the whole dataset and is redone every epoch.

    Args:
        images: (N, H, W) or (N, H, W, C) of any numeric dtype, e.g. from :func:`load_npz`;
            with ``pipeline="numpy"`` also a list of such arrays (a mixture, see ``weights``).
        spec: the preprocessing.
        labels: optional (N, ...) labels; then the batches are ``(images, labels)``.
            Masks (N, H, W) on the image grid are cropped with their images (numpy pipeline).
        batch_size: images per batch.
        shuffle: shuffle every epoch (``seed`` makes the order reproducible).
        seed: seed of the order and the crops.
        cache: ``tf.data`` only: keep the preprocessed images in memory after the first epoch.
        drop_remainder: drop the last, smaller batch.
        repeat: ``tf.data`` only: repeat forever (then give ``steps_per_epoch`` to ``fit``).
        crop_size: yield a random ``crop_size x crop_size`` crop of each preprocessed
            image (a fresh one every epoch) instead of the whole image.
        repeats: numpy only: crops of each image per epoch.
        weights: numpy only: a mixture's share of each source per epoch (``"balanced"``: equal).
        min_side: numpy only: crops at random scales, from native resolution down to the
            image shrunk to ``min_side`` px (see :class:`~medzoo.data.batches.ArrayBatches`).
        max_batch_pixels: numpy only, whole images: at most this many pixels per batch.
        workers: numpy only: threads that cut batches ahead of the training step (1: in the
            training loop itself); an accelerator can outrun one thread's crops.
        pipeline: ``"tf"`` (a ``tf.data.Dataset``; needs TensorFlow), ``"numpy"`` (an
            :class:`~medzoo.data.batches.ArrayBatches`, any backend) or ``"auto"``: ``tf``
            under the TensorFlow backend, ``numpy`` under the others.

    Raises:
        DataError: wrong shapes, too-small images, labels of another length, or
            images smaller than ``crop_size``.
    """
    _check_common(spec, batch_size)
    _check_crop(crop_size)
    if pipeline not in PIPELINES:
        raise ConfigError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
    if pipeline == "auto":
        pipeline = "tf" if keras_backend() == "tensorflow" else "numpy"
    if pipeline == "numpy":
        from medzoo.data.batches import ArrayBatches

        sources = images if isinstance(images, (list, tuple)) else [images]
        for source in sources:
            if isinstance(source, (list, tuple)):  # images of their own sizes
                for image in source:
                    _check_array(np.asarray(image)[None], spec, crop_size)
            else:
                _check_array(np.asarray(source), spec, crop_size)
        return ArrayBatches(images, spec, labels=labels, batch_size=batch_size, shuffle=shuffle, seed=seed,
                            crop_size=crop_size, repeats=repeats, weights=weights, drop_remainder=drop_remainder,
                            min_side=min_side, max_batch_pixels=max_batch_pixels, workers=workers)
    if isinstance(images, (list, tuple)) or repeats != 1 or weights is not None or min_side is not None or \
            max_batch_pixels is not None:
        raise ConfigError("mixtures of arrays, repeats, weights and min_side belong to pipeline='numpy'")
    if workers != 1:  # not silently ignored: tf.data maps in parallel on its own
        raise ConfigError(f"workers={workers} applies to pipeline='numpy'; tf.data parallelises its map itself "
                          "(AUTOTUNE)")
    tf = require_tensorflow("from_arrays(pipeline='tf')", "use pipeline='numpy'")
    images = _check_array(np.asarray(images), spec, crop_size)
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(images).batch(_PREPROCESS_CHUNK)
        ds = ds.map(spec.apply, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        labels = np.asarray(labels)
        if labels.ndim == 0 or len(labels) != len(images):
            raise DataError(f"labels have shape {labels.shape} but there are {len(images)} images")
        ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(_PREPROCESS_CHUNK)
        ds = ds.map(lambda x, y: (spec.apply(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.unbatch()
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if crop_size is not None:
        ds = _random_crops(ds, crop_size, seed, labels is not None)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _check_array(images: np.ndarray, spec: PreprocessSpec, crop_size) -> np.ndarray:
    """A non-empty (N, H, W, C) batch of images large enough for the spec and the crop."""
    if images.ndim not in (3, 4) or len(images) == 0:
        raise DataError(f"images must be a non-empty batch (N, H, W) or (N, H, W, C); got shape {images.shape}")
    if images.ndim == 3:
        images = images[..., None]
    check_image_size(images.shape[1], images.shape[2], what="images")
    if crop_size is not None:
        height, width = spec.size or shrunk_size(images.shape[1], images.shape[2], spec.max_side)
        if crop_size > min(height, width):
            raise DataError(f"crop_size {crop_size} is larger than the preprocessed images ({height}x{width})")
    return images


def _check_crop(crop_size) -> None:
    if crop_size is not None and (isinstance(crop_size, bool) or not isinstance(crop_size, (int, np.integer))
                                  or crop_size < 8):
        raise ConfigError(f"crop_size must be an integer number of pixels >= 8, got {crop_size!r}")


def _random_crops(ds, crop_size: int, seed, labelled: bool):
    """Cut one random square crop out of each image, new crops every epoch (fails clearly if an image is too small).

    The crop positions come from a stateless crop keyed by a stream of random seeds that is
    drawn afresh each epoch (``Dataset.random(rerandomize_each_iteration=True)``): a stateful
    ``random_crop`` repeated the same crops every epoch once op determinism and a global
    seed were set (``medzoo train --deterministic``). Seeded, the crops are reproducible.
    """
    import tensorflow as tf

    def crop(element, seeds):
        image, *label = element if labelled else (element,)
        shape = tf.shape(image)
        check = tf.debugging.assert_greater_equal(
            tf.minimum(shape[0], shape[1]), crop_size,
            message=f"an image is smaller than crop_size={crop_size}; lower crop_size or skip small images")
        with tf.control_dependencies([check]):
            patch = tf.image.stateless_random_crop(image, tf.stack([crop_size, crop_size, shape[2]]), seed=seeds)
        patch = tf.ensure_shape(patch, [crop_size, crop_size, image.shape[-1]])
        return (patch, *label) if labelled else patch

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(crop, num_parallel_calls=tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """A file :func:`from_directory` left out with ``on_error="skip"``, and why."""

    path: pathlib.Path
    reason: str


@dataclasses.dataclass(frozen=True)
class DirectoryDataset:
    """What :func:`from_directory` built.

    Attributes:
        dataset: batched, prefetched ``tf.data.Dataset`` of images, or ``(images, labels)``.
        files: the image files that passed validation, in folder order.
        class_names: the class of label ``i`` is ``class_names[i]`` (empty without labels).
        num_images: images in one epoch before runtime skips (each frame of a stack counts).
        skipped: files left out with ``on_error="skip"``. Header problems are
            listed at construction; a file whose pixels fail to decode later is
            appended when the pipeline first reaches it (and logged).
        ignored: files that are not images (no DICOM preamble and no image extension).
    """

    dataset: "tf.data.Dataset"
    files: tuple[pathlib.Path, ...]
    class_names: tuple[str, ...]
    num_images: int
    skipped: list[SkippedFile]
    ignored: tuple[pathlib.Path, ...]


def from_directory(
    path,
    spec: PreprocessSpec,
    *,
    labels: str | None = "inferred",
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    cache: bool = False,
    on_error: str = "raise",
    voi=None,
    crop_size: int | None = None,
) -> DirectoryDataset:
    """A ``tf.data`` pipeline over a folder tree of DICOM, PNG, JPEG and NPY files.

    DICOM files are recognised by content (so extension-less files count), the
    others by extension; anything else is ignored (listed in ``ignored``) and
    hidden files and folders (``.name``) are not looked at. Every file's header
    is validated up front (cheap); decoding runs in parallel in the pipeline,
    followed by ``spec.apply``, batching and prefetching. Each frame of a
    multi-frame DICOM or of an NPY stack (F, H, W[, C]) is one image.

    Args:
        path: the root folder.
        spec: the preprocessing.
        labels: ``"inferred"``: the class is the first-level subfolder (classes
            sorted by name, like Keras' ``image_dataset_from_directory``) and the
            dataset yields ``(images, int32 labels)``; ``None``: images only, all
            files below ``path``.
        batch_size: images per batch.
        shuffle: shuffle every epoch (``seed`` makes it reproducible).
        seed: shuffle seed.
        cache: keep decoded, preprocessed images in memory after the first epoch.
        on_error: ``"raise"``: the first bad file raises :class:`DataError` naming it
            (header problems at construction; pixel data that fails to decode
            stops the iteration with a TensorFlow error carrying the same message).
            ``"skip"``: bad files are left out, logged as warnings and listed in
            ``skipped``.
        voi: VOI step for DICOM files, see :func:`~medzoo.data.read_dicom`; None: the spec's
            (no display window for a spec in modality units such as HU, see :func:`~medzoo.data.images.spec_voi`).
        crop_size: yield a random ``crop_size x crop_size`` crop of each preprocessed
            image (after the cache, so a fresh one every epoch).

    Returns:
        A :class:`DirectoryDataset`; train on its ``dataset``.

    Raises:
        DataError: missing folder, no images, files directly in ``path`` with
            ``labels="inferred"``, or (with ``on_error="raise"``) a bad file.
        DependencyError: a DICOM needs a pixel decoder that is not installed (never skipped).
    """
    _check_common(spec, batch_size)
    _check_crop(crop_size)
    voi = spec_voi(spec) if voi is None else voi
    tf = require_tensorflow("from_directory (tf.data reading of DICOM/PNG folders)",
                            "read the files with medzoo.read_images and pass the arrays to from_arrays")
    if labels not in ("inferred", None):
        raise ConfigError(f'labels must be "inferred" or None, got {labels!r}')
    if on_error not in ("raise", "skip"):
        raise ConfigError(f'on_error must be "raise" or "skip", got {on_error!r}')
    voi = parse_voi(voi)
    root = pathlib.Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")

    candidates, class_names, ignored = _scan(root, labels == "inferred")
    infos: list[tuple[ImageInfo, int | None]] = []
    skipped: list[SkippedFile] = []
    for file, label in candidates:
        try:
            info = probe_image(file)
            check_image_size(info.height, info.width, what=str(file))
        except DataError as exc:
            if on_error == "raise":
                raise DataError(f"{exc} (pass on_error='skip' to leave bad files out)") from exc
            skipped.append(SkippedFile(file, str(exc)))
            continue
        infos.append((info, label))
    if skipped:
        logger.warning(
            "from_directory(%s): skipped %d bad file(s): %s",
            root, len(skipped), "; ".join(entry.reason for entry in skipped),
        )
    if not infos:
        raise DataError(
            f"{root}: no readable images found ({len(skipped)} bad file(s) skipped, "
            f"{len(ignored)} non-image file(s) ignored)"
        )

    items = [(str(info.path), k, label) for info, label in infos for k in range(info.frames)]
    paths, frames, label_ids = (list(column) for column in zip(*items))
    columns = (paths, frames) if labels is None else (paths, frames, np.asarray(label_ids, np.int32))
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle and not cache:  # shuffling file names is cheap; cached images are shuffled after the cache
        ds = ds.shuffle(len(items), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(_decoder(voi, on_error, skipped), num_parallel_calls=tf.data.AUTOTUNE)
    if on_error == "skip":
        ds = ds.filter(lambda pixels, ok, *label: ok)
    ds = ds.map(_preprocessor(spec), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    if shuffle and cache:
        ds = ds.shuffle(len(items), seed=seed, reshuffle_each_iteration=True)
    if crop_size is not None:
        ds = _random_crops(ds, crop_size, seed, labels is not None)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return DirectoryDataset(
        dataset=ds,
        files=tuple(info.path for info, _ in infos),
        class_names=class_names,
        num_images=len(items),
        skipped=skipped,
        ignored=ignored,
    )


def _decoder(voi, on_error: str, skipped: list[SkippedFile]):
    """The pipeline's decode step: (path, frame, *label) -> (float32 (H, W, C) pixels, ok, *label)."""
    lock = threading.Lock()

    def load(path: bytes, frame) -> tuple[np.ndarray, bool]:
        file = pathlib.Path(path.decode())
        try:
            pixels = read_image(file, frame=int(frame), voi=voi)
        except DataError as exc:
            if on_error == "raise":
                raise
            with lock:
                if all(entry.path != file for entry in skipped):
                    skipped.append(SkippedFile(file, str(exc)))
                    logger.warning("from_directory: skipped a file whose pixels cannot be decoded: %s", exc)
            return np.zeros((0, 0, 1), np.float32), False
        return (pixels[..., None] if pixels.ndim == 2 else pixels), True

    import tensorflow as tf

    def decode(path, frame, *label):
        pixels, ok = tf.numpy_function(load, [path, frame], [tf.float32, tf.bool], name="read_image")
        pixels.set_shape([None, None, None])
        ok.set_shape([])
        return (pixels, ok, *label)

    return decode


def _preprocessor(spec: PreprocessSpec):
    """The pipeline's preprocessing step: (pixels, ok, *label) -> image, or (image, label)."""

    def preprocess(pixels, ok, *label):
        image = spec.apply(pixels[None])[0]
        return (image, *label) if label else image

    return preprocess


def _scan(root: pathlib.Path, inferred: bool):
    """Image candidates as (file, label or None), the class names, and the ignored non-image files."""
    if inferred:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
        loose = [p for p in entries if p.is_file() and image_kind(p) is not None]
        if loose:
            raise DataError(
                f"{root}: labels='inferred' takes each image's class from its first-level subfolder, but "
                f"{len(loose)} image file(s) lie directly in the folder ({', '.join(p.name for p in loose[:5])}); "
                "move them into class folders or pass labels=None"
            )
        class_dirs = [p for p in entries if p.is_dir()]
        class_names = tuple(p.name for p in class_dirs)
        files = [(file, label) for label, folder in enumerate(class_dirs) for file in _walk(folder)]
        ignored = [p for p in entries if p.is_file()]
    else:
        class_names = ()
        files = [(file, None) for file in _walk(root)]
        ignored = []
    kinds = [(file, label, image_kind(file)) for file, label in files]
    candidates = [(file, label) for file, label, kind in kinds if kind is not None]
    ignored += [file for file, _, kind in kinds if kind is None]
    return candidates, class_names, tuple(ignored)


def _walk(folder: pathlib.Path) -> list[pathlib.Path]:
    """All non-hidden files below ``folder``, in sorted order (hidden folders are not entered)."""
    found = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [pathlib.Path(current, f) for f in sorted(files) if not f.startswith(".")]
    return found


def _check_common(spec, batch_size) -> None:
    if not isinstance(spec, PreprocessSpec):
        raise ConfigError(f"spec must be a PreprocessSpec, got {type(spec).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
