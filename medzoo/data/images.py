"""Reading one image file of any supported kind (DICOM, PNG, JPEG, NPY) into float32 pixels.

The kind is decided by content first (the DICOM preamble, so extension-less
DICOM files work) and by extension second. :func:`probe_image` reads only
headers, so a whole folder can be validated before any pixel is decoded.

Pixel conventions follow the files: grey images come back as (H, W), colour as
(H, W, 3) (or (H, W, 4) for RGBA PNGs; :class:`~medzoo.data.PreprocessSpec`
drops the alpha), and frame stacks (multi-frame DICOM, NPY stacks) as
(F, H, W[, C]). No resizing or normalisation happens here.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
from PIL import Image

from medzoo.data.dicom import is_dicom, read_dicom, read_dicom_header
from medzoo.data.preprocess import image_layout, warn_if_resized
from medzoo.errors import ConfigError, DataError

IMAGE_EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".npy": "npy", ".dcm": "dicom", ".dicom": "dicom"}
"""File extensions (lower case) and the kind they select when the content is not DICOM."""

_PIL_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What :func:`probe_image` learnt from a file's header.

    ``frames`` is the number of frames of a stack (multi-frame DICOM, NPY
    (F, H, W[, C])); a single image has 1. ``channels`` is that of the decoded
    pixels (1, 3, or 4 for RGBA).
    """

    path: pathlib.Path
    kind: str
    frames: int
    height: int
    width: int
    channels: int


def image_kind(path) -> str | None:
    """``"dicom"`` if the content has the DICOM preamble, else the kind of the extension, else None."""
    if is_dicom(path):
        return "dicom"
    return IMAGE_EXTENSIONS.get(pathlib.Path(path).suffix.lower())


def probe_image(path) -> ImageInfo:
    """Read and validate a file's header (DICOM header, PNG/JPEG header with ``verify()``, NPY header).

    Raises:
        DataError: the file is missing, of an unsupported kind, or its header is
            corrupt or describes something that is not an image.
        DependencyError: a DICOM file needs a pixel decoder that is not installed.
    """
    path = pathlib.Path(path)
    kind = _kind_or_raise(path)
    if kind == "dicom":
        meta = read_dicom_header(path)
        return ImageInfo(path, kind, meta["number_of_frames"], meta["rows"], meta["columns"], meta["channels"])
    if kind == "npy":
        array, stacked, channels = _open_npy(path)
        height, width = array.shape[1:3] if stacked else array.shape[:2]
        return ImageInfo(path, kind, array.shape[0] if stacked else 1, height, width, channels)
    try:
        with Image.open(path) as img:
            width, height = img.size
            mode = img.mode
            img.verify()
    except Exception as exc:
        raise DataError(f"{path}: not a readable {kind.upper()} image ({type(exc).__name__}: {exc})") from exc
    channels = 1 if mode in _PIL_GREY_MODES else 4 if mode == "RGBA" else 3
    return ImageInfo(path, kind, 1, height, width, channels)


def read_image(path, *, frame: int | None = None, voi="auto") -> np.ndarray:
    """Read one image file into float32 pixels.

    Args:
        path: a DICOM file (any name), or a ``.png``, ``.jpg``/``.jpeg`` or ``.npy`` file.
        frame: for stacks (multi-frame DICOM, NPY (F, H, W[, C])) the frame to
            read; ``None`` reads all. Single images accept ``None`` or 0.
        voi: the VOI step for DICOM files (see :func:`~medzoo.data.read_dicom`);
            ignored for other kinds.

    Returns:
        float32 (H, W) or (H, W, C), or (F, H, W[, C]) for a whole stack. DICOM
        pixels are in modality units after the VOI step, PNG/JPEG/NPY values as stored.

    Raises:
        DataError: unsupported kind, corrupt file, frame out of range.
    """
    path = pathlib.Path(path)
    kind = _kind_or_raise(path)
    if kind == "dicom":
        return read_dicom(path, frame=frame, voi=voi)[0]
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise ConfigError(f"frame must be an integer or None, got {frame!r}")
    if kind == "npy":
        array, stacked, _ = _open_npy(path)
        if frame is not None:
            count = array.shape[0] if stacked else 1
            if not 0 <= frame < count:
                raise DataError(f"{path}: frame {frame} is out of range, the file has {count} frame(s)")
            if stacked:
                array = array[frame]
        try:
            return np.array(array, dtype=np.float32)
        except Exception as exc:
            raise DataError(f"{path}: cannot read the array data ({type(exc).__name__}: {exc})") from exc
    if frame not in (None, 0):
        raise DataError(f"{path}: frame {frame} is out of range, the file has 1 frame")
    try:
        with Image.open(path) as img:
            if img.mode == "LA":
                img = img.convert("L")
            elif img.mode not in _PIL_GREY_MODES + ("RGB", "RGBA"):
                img = img.convert("RGB")
            return np.asarray(img, dtype=np.float32)
    except Exception as exc:
        raise DataError(f"{path}: cannot decode the {kind.upper()} image ({type(exc).__name__}: {exc})") from exc


def read_stored_pixels(path) -> np.ndarray:
    """One file's pixels exactly as stored, in their own integer type: DICOM stored values (no rescale or
    VOI), PNG 8/16-bit, NPY as saved. What ``medzoo.compress(..., lossless=True)`` must give back."""
    path = pathlib.Path(path)
    kind = _kind_or_raise(path)
    if kind == "dicom":
        from medzoo.data.dicom import read_dicom_stored

        return read_dicom_stored(path)[0]
    if kind == "npy":
        return np.array(_open_npy(path)[0])
    try:
        with Image.open(path) as img:
            return np.asarray(img)
    except Exception as exc:
        raise DataError(f"{path}: cannot decode the {kind.upper()} image ({type(exc).__name__}: {exc})") from exc


def _kind_or_raise(path: pathlib.Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    kind = image_kind(path)
    if kind is None:
        raise DataError(
            f"{path}: unsupported file: not DICOM (no 'DICM' preamble) and the extension is not one of "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    return kind


def _open_npy(path: pathlib.Path) -> tuple[np.ndarray, bool, int]:
    """Memory-map a .npy file (data not read) and check it holds numeric images.

    Returns:
        ``(array, stacked, channels)`` with ``stacked`` and ``channels`` from :func:`image_layout`.
    """
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from exc
    if not isinstance(array, np.ndarray) or not (array.dtype == bool or array.dtype.kind in "iuf"):
        raise DataError(f"{path}: expected a numeric array, got {getattr(array, 'dtype', type(array).__name__)}")
    try:
        stacked, channels = image_layout(array.shape)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    return array, stacked, channels


class ImageRef(tuple):
    """Where one image of :func:`read_images` came from: ``(path, frame)``, frame None for a single image."""

    __slots__ = ()

    def __new__(cls, path, frame=None):
        return super().__new__(cls, (pathlib.Path(path), frame))

    path = property(lambda self: self[0])
    frame = property(lambda self: self[1])

    @property
    def stem(self) -> str:
        """A file-name stem for outputs: the file's stem, plus ``_f<frame>`` for a frame of a stack."""
        return self.path.stem if self.frame is None else f"{self.path.stem}_f{self.frame:03d}"

    def __str__(self):
        return str(self.path) if self.frame is None else f"{self.path} [frame {self.frame}]"


def image_files(inputs) -> list[pathlib.Path]:
    """Files and folders -> the image files they name, in order.

    A file is taken as it is (it must exist; its kind is checked when it is read). A folder
    contributes every DICOM (by content), PNG, JPEG and NPY file below it, in sorted order;
    hidden files and folders and files of other kinds are passed over.

    Raises:
        DataError: an input that does not exist, or no image at all.
    """
    inputs = [inputs] if isinstance(inputs, (str, pathlib.PurePath)) else list(inputs)
    files = []
    for item in inputs:
        path = pathlib.Path(item).expanduser()
        if path.is_dir():
            for current, dirs, names in sorted(os.walk(path)):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files += [pathlib.Path(current, n) for n in sorted(names)
                          if not n.startswith(".") and image_kind(pathlib.Path(current, n)) is not None]
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    if not files:
        raise DataError(f"no image files in {', '.join(map(str, inputs)) or 'the inputs (none given)'}")
    return files


def iter_images(inputs, spec, *, voi=None, progress=None):
    """Yield ``(image, ref)`` for every image (every frame of a stack) in files and folders.

    Each image is read with :func:`read_image` (DICOM recognised by content, whatever
    its name) and preprocessed on its own with ``spec``: float32 (H, W, C). With a
    native-size spec each keeps its own size, so this is how to read files of several
    sizes for an any-size model; :func:`read_images` stacks the same into one batch.
    ``voi=None`` lets the spec choose: a spec in modality units (CT in HU) reads DICOM pixels
    without the display window (``"none"``), any other applies the file's window (``"auto"``).
    """
    voi = spec_voi(spec) if voi is None else voi
    files = image_files(inputs)
    warned = set()
    for path in (progress(files) if progress else files):
        info = probe_image(path)
        for frame in ([None] if info.frames == 1 else range(info.frames)):
            pixels = read_image(path, frame=frame, voi=voi)
            try:
                image = np.asarray(spec.apply(pixels), dtype=np.float32)
            except DataError as exc:
                raise DataError(f"{path}: {exc}") from None
            given = (info.height, info.width)
            if given not in warned and warn_if_resized(path, given, image.shape[:2], spec, stacklevel=4):
                warned.add(given)  # once per size: every other image of that size was resized the same way
            yield image, ImageRef(path, frame)


def spec_voi(spec) -> str:
    """The DICOM VOI step a spec's values call for: ``"none"`` when it maps modality units (a CT spec in
    Hounsfield units), so a display window never clips what the model was trained on; else ``"auto"``."""
    return "none" if getattr(spec, "units", None) else "auto"


def read_images(inputs, spec, *, voi=None, progress=None) -> tuple[np.ndarray, list[ImageRef]]:
    """Read image files of any supported kind and size into one batch of model inputs.

    Each file is read with :func:`read_image` (DICOM recognised by content, whatever its
    name) and preprocessed on its own with ``spec``, so files of different sizes, bit
    depths and channel counts end up in one (N, H, W, C) batch. Every frame of a stack
    (multi-frame DICOM, NPY (F, H, W[, C])) is one image.

    Args:
        inputs: a path or a list of paths of files and folders (see :func:`image_files`).
        spec: the :class:`~medzoo.data.PreprocessSpec`, e.g. ``model.preprocess_spec``.
        voi: the VOI step for DICOM files (see :func:`~medzoo.data.read_dicom`); None: the
            spec's (:func:`spec_voi`: no window for a spec in modality units such as HU).
        progress: optional wrapper of an iterable showing progress (e.g. ``tqdm``).

    Returns:
        ``(images, refs)``: float32 model inputs (N, H, W, C), and where each came from.

    Raises:
        DataError: a missing, unsupported or corrupt file (the message names it), or,
            with a native-size spec, images of different sizes (use :func:`iter_images`).
    """
    pairs = list(iter_images(inputs, spec, voi=voi, progress=progress))
    shapes = sorted({image.shape for image, _ in pairs})
    if len(shapes) > 1:
        raise DataError(f"the images keep their native sizes ({', '.join('x'.join(map(str, s[:2])) for s in shapes[:4])}"
                        f"{', ...' if len(shapes) > 4 else ''}) and cannot be stacked into one batch; read them one "
                        "by one with medzoo.data.iter_images")
    return np.stack([image for image, _ in pairs]), [ref for _, ref in pairs]
