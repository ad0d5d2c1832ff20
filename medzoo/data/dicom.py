"""Reading DICOM images into float32 arrays through pydicom 3's own pixel pipeline.

:func:`read_dicom` decodes the pixel data (compressed transfer syntaxes through
pydicom's plugins: Pillow, pylibjpeg-*), applies the modality LUT (rescale
slope/intercept, HU for CT), the VOI LUT / window, and inverts MONOCHROME1 so
that high values are always bright. All LUT maths is pydicom's
(``pydicom.pixels``); this module only decides what to apply and turns every
failure into a :class:`~medzoo.errors.DataError` naming the file.

Only DICOM Part 10 files are accepted: a 128-byte preamble followed by ``DICM``
(:func:`is_dicom`). Bare datasets without the file meta header are refused,
because pydicom itself refuses them with ``force=False`` and without the header
the transfer syntax, hence the pixel encoding, is a guess.

Not handled: per-frame functional groups of enhanced multi-frame objects (the
rescale, window and pixel spacing of the top-level dataset are used for every
frame), presentation states, and float pixel data.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_windowing,
    get_decoder,
    pixel_array,
)
from pydicom.pixels.utils import get_nr_frames
from pydicom.uid import (
    JPEG2000TransferSyntaxes,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSTransferSyntaxes,
    RLELossless,
)

from medzoo.errors import ConfigError, DataError, DependencyError, MedzooError

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
# Decoded to RGB by pydicom (YBR_* by its colour conversion or the JPEG 2000
# codec's inverse transform) or by applying the palette.
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR")
SUPPORTED_PHOTOMETRIC = MONOCHROME + COLOUR

_PREAMBLE = 128
_MAGIC = b"DICM"
_DEFER_BYTES = 4096  # header reads leave values larger than this (the pixel data) on disk
_UNDEFINED_LENGTH = 0xFFFFFFFF
_EXTRA = 'pip install "medzoo[dicom]"'


def is_dicom(path) -> bool:
    """True if ``path`` is a regular file starting with a 128-byte preamble and ``DICM``.

    The content decides, not the extension, so extension-less DICOM files count.
    Missing or unreadable paths give ``False``.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(_PREAMBLE + len(_MAGIC))
    except OSError:
        return False
    return header[_PREAMBLE:] == _MAGIC


def read_dicom_header(path) -> dict[str, Any]:
    """Read and validate a DICOM header without decoding the pixels (cheap: pixel data stays on disk).

    Validation covers everything that can be known before decoding: DICOM
    preamble, pixel data present and not truncated, supported photometric
    interpretation, supported transfer syntax with an installed decoder.

    Returns:
        A dict with ``path``, ``modality``, ``photometric_interpretation`` (as in
        the file), ``rows``, ``columns``, ``number_of_frames``, ``channels`` (of
        the decoded output: 1 or 3), ``bits_stored``, ``pixel_spacing`` ((row, column) mm from
        PixelSpacing, else ImagerPixelSpacing, else None), ``rescale_slope``,
        ``rescale_intercept`` (None when absent), ``sop_instance_uid`` and
        ``transfer_syntax_uid``.

    Raises:
        DataError: the file is missing, not DICOM, truncated, has no pixel data,
            or uses an unsupported photometric interpretation or transfer syntax.
        DependencyError: the pixel data needs a decoder that is not installed.
    """
    path = pathlib.Path(path)
    return _header(path, _read_dataset(path))


def read_dicom(path, *, frame: int | None = None, voi="auto") -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a DICOM image into float32 pixels, with modality LUT, VOI and MONOCHROME1 handled.

    Args:
        path: a DICOM Part 10 file.
        frame: index of the frame to decode (0-based); ``None`` decodes all frames.
        voi: ``"auto"`` applies the file's VOI LUT Sequence or its first window
            (Window Center/Width) if it has one; ``"none"`` skips the VOI step;
            a ``(center, width)`` pair applies that LINEAR window (in modality
            units, e.g. HU; width >= 1). Colour images never get a VOI step.

    Returns:
        ``(pixels, meta)``. ``pixels`` is float32 (H, W), (F, H, W) for several
        frames, and (H, W, 3) / (F, H, W, 3) RGB for colour images. Windowed
        values span pydicom's output range: the nominal range of the modality
        values (from BitsStored, PixelRepresentation and the rescale), or
        ``0 .. 2**bits - 1`` of a VOI LUT. MONOCHROME1 is inverted within that
        range after the VOI step, so it looks like MONOCHROME2. ``meta`` is
        :func:`read_dicom_header`'s dict plus ``frame``, ``voi`` (``"none"``,
        ``"window"`` or ``"lut"``: what was applied), ``window`` ((center, width)
        or None) and ``value_range`` (the nominal (low, high) of ``pixels``).

    Raises:
        DataError: a bad file (see :func:`read_dicom_header`), undecodable pixel
            data, a frame index out of range, or a window given for a colour image.
        DependencyError: the pixel data needs a decoder that is not installed.
        ConfigError: ``voi`` is not ``"auto"``, ``"none"`` or a valid (center, width).
    """
    path = pathlib.Path(path)
    voi = parse_voi(voi)
    ds = _read_dataset(path)
    meta = _header(path, ds)
    frames = meta["number_of_frames"]
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise ConfigError(f"frame must be an integer or None, got {frame!r}")
    if frame is not None and not 0 <= frame < frames:
        raise DataError(f"{path}: frame {frame} is out of range, the file has {frames} frame(s)")
    colour = meta["channels"] == 3
    if colour and isinstance(voi, tuple):
        raise DataError(
            f"{path}: a window applies to monochrome images only, this one is {meta['photometric_interpretation']}"
        )
    try:
        pixels = pixel_array(ds, index=None if frame is None else int(frame))
        if colour:
            pixels, value_range, applied, window = _colour(ds, pixels)
        else:
            pixels, value_range, applied, window = _monochrome(ds, pixels, voi)
    except (MedzooError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # Rust decoders (pylibjpeg-rle) panic with a BaseException on corrupt data
        raise DataError(f"{path}: cannot decode the pixel data ({type(exc).__name__}: {exc})") from exc
    meta.update(frame=frame, voi=applied, window=window, value_range=value_range)
    return np.asarray(pixels, dtype=np.float32), meta


def read_dicom_stored(path) -> tuple[np.ndarray, dict[str, Any]]:
    """The pixel values as stored in a DICOM file (no rescale, VOI or inversion): what lossless coding keeps.

    Returns ``(pixels, meta)``: pixels in the file's own integer type (e.g. int16 for CT with
    PixelRepresentation 1, uint16 for 12-bit MR), (H, W) or (F, H, W[, 3]);
    ``meta`` as :func:`read_dicom_header`.
    """
    path = pathlib.Path(path)
    ds = _read_dataset(path)
    meta = _header(path, ds)
    try:
        pixels = pixel_array(ds, index=None)
    except (MedzooError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise DataError(f"{path}: cannot decode the pixel data ({type(exc).__name__}: {exc})") from exc
    return np.asarray(pixels), meta


def parse_voi(voi):
    """Validate a ``voi`` argument of :func:`read_dicom`: ``"auto"``, ``"none"`` or a (center, width) tuple."""
    if isinstance(voi, str):
        if voi in ("auto", "none"):
            return voi
    elif isinstance(voi, (tuple, list)) and len(voi) == 2:
        try:
            center, width = float(voi[0]), float(voi[1])
        except (TypeError, ValueError):
            center = width = float("nan")
        if np.isfinite(center) and np.isfinite(width) and width >= 1:
            return center, width
        raise ConfigError(f"voi window must be finite numbers (center, width) with width >= 1, got {voi!r}")
    raise ConfigError(f'voi must be "auto", "none" or a (center, width) pair, got {voi!r}')


def _read_dataset(path: pathlib.Path) -> Dataset:
    """dcmread the header (pixel data deferred) and validate it; see :func:`read_dicom_header`."""
    if not path.is_file():
        raise DataError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not a DICOM file")
    if not is_dicom(path):
        raise DataError(
            f"{path}: not a DICOM file (no 128-byte preamble followed by 'DICM'; "
            "bare datasets without the DICOM file meta header are not supported)"
        )
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES)
    except Exception as exc:
        raise DataError(f"{path}: unreadable DICOM header ({type(exc).__name__}: {exc})") from exc
    try:  # pydicom parses element values lazily: a corrupt one raises only when it is read
        _check_dataset(path, ds)
    except MedzooError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: corrupt DICOM header ({type(exc).__name__}: {exc})") from exc
    return ds


def _check_dataset(path: pathlib.Path, ds: Dataset) -> None:
    """Raise DataError unless ``ds`` has readable pixel data in a photometric interpretation and syntax we decode."""
    pixel_data = ds.get_item("PixelData", keep_deferred=True)
    if pixel_data is None:
        raise DataError(
            f"{path}: no (7FE0,0010) Pixel Data element: not an image (e.g. a report or structure set), "
            "or the file is truncated"
        )
    if isinstance(pixel_data, RawDataElement) and pixel_data.length != _UNDEFINED_LENGTH:
        size = os.path.getsize(path)
        end = pixel_data.value_tell + pixel_data.length
        if end > size:
            raise DataError(f"{path}: truncated: the pixel data needs {end} bytes but the file has {size}")
    for keyword in ("Rows", "Columns", "BitsStored", "PhotometricInterpretation"):
        if ds.get(keyword) in (None, ""):
            raise DataError(f"{path}: the image has no {keyword}")
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DataError(
            f"{path}: unsupported photometric interpretation {photometric!r}; "
            f"supported: {', '.join(SUPPORTED_PHOTOMETRIC)}"
        )
    _check_decoder(path, ds)


def _check_decoder(path: pathlib.Path, ds: Dataset) -> None:
    """Raise unless pydicom has a decoder, with an installed plugin, for the file's transfer syntax."""
    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    if not tsyntax:
        raise DataError(f"{path}: the file meta header has no Transfer Syntax UID")
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise DataError(
            f"{path}: pydicom cannot decode pixel data in transfer syntax {tsyntax.name} ({tsyntax})"
        ) from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin registered"
        raise DependencyError(
            f"{path}: decoding {tsyntax.name} pixel data needs a pydicom plugin that is not installed. "
            f"Install the medzoo DICOM extra: {_EXTRA} (or just: {_install_hint(tsyntax)}). "
            f"pydicom reports: {missing}"
        )


def _install_hint(tsyntax) -> str:
    """The precise pip command that adds a decoder for ``tsyntax``."""
    if tsyntax in JPEG2000TransferSyntaxes:
        return "pip install pylibjpeg pylibjpeg-openjpeg"
    if tsyntax in (JPEGBaseline8Bit, JPEGExtended12Bit):
        return "pip install pillow"
    if tsyntax in (JPEGLossless, JPEGLosslessSV1) or tsyntax in JPEGLSTransferSyntaxes:
        return "pip install pylibjpeg pylibjpeg-libjpeg"
    if tsyntax == RLELossless:
        return "pip install pylibjpeg pylibjpeg-rle"
    return _EXTRA


def _header(path: pathlib.Path, ds: Dataset) -> dict[str, Any]:
    """The metadata dict of :func:`read_dicom_header` for a validated dataset."""
    try:  # values are parsed lazily: a corrupt slope or spacing raises only here
        return _header_fields(path, ds)
    except Exception as exc:
        raise DataError(f"{path}: corrupt DICOM header ({type(exc).__name__}: {exc})") from exc


def _header_fields(path: pathlib.Path, ds: Dataset) -> dict[str, Any]:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    photometric = str(ds.PhotometricInterpretation).strip()
    sop_uid = ds.get("SOPInstanceUID")
    return {
        "path": str(path),
        "modality": ds.get("Modality"),
        "photometric_interpretation": photometric,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "number_of_frames": int(get_nr_frames(ds, warn=False)),
        "channels": 3 if photometric in COLOUR else 1,
        "bits_stored": int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8),
        "pixel_spacing": tuple(float(v) for v in spacing) if spacing else None,
        "rescale_slope": None if slope is None else float(slope),
        "rescale_intercept": None if intercept is None else float(intercept),
        "sop_instance_uid": None if sop_uid is None else str(sop_uid),
        "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
    }


def _colour(ds: Dataset, pixels: np.ndarray):
    """RGB output: pydicom already converted YBR to RGB; a palette is applied (alpha dropped)."""
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        pixels = apply_color_lut(pixels, ds)[..., :3]
    else:
        bits = int(ds.BitsStored)
    return pixels, (0.0, float(2**bits - 1)), "none", None


def _monochrome(ds: Dataset, pixels: np.ndarray, voi):
    """Modality LUT, VOI step and MONOCHROME1 inversion; returns (pixels, value_range, voi applied, window)."""
    pixels = apply_modality_lut(pixels, ds)
    applied, window = "none", None
    if voi == "auto" and _has_voi_lut(ds):
        pixels = apply_voi(pixels, ds)
        applied = "lut"
    elif voi == "auto" and "WindowCenter" in ds and "WindowWidth" in ds:
        pixels = apply_windowing(pixels, ds)
        applied, window = "window", (_first(ds.WindowCenter), _first(ds.WindowWidth))
    elif isinstance(voi, tuple):
        pixels = apply_windowing(pixels, _window_view(ds, *voi))
        applied, window = "window", voi
    low, high = _value_range(ds, applied)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        pixels = (low + high) - pixels
    return pixels, (low, high), applied, window


def _has_voi_lut(ds: Dataset) -> bool:
    """True if the dataset has a usable VOI LUT Sequence (the test pydicom's apply_voi_lut uses)."""
    sequence = ds.get("VOILUTSequence")
    return bool(sequence) and None not in (sequence[0].get("LUTDescriptor"), sequence[0].get("LUTData"))


def _first(value) -> float:
    """The first value of a possibly multi-valued DS element (pydicom applies the first window)."""
    return float(value[0]) if isinstance(value, (list, tuple, MultiValue)) else float(value)


def _window_view(ds: Dataset, center: float, width: float) -> Dataset:
    """A copy of the elements apply_windowing reads, with the caller's window (LINEAR)."""
    view = Dataset()
    for keyword in ("PhotometricInterpretation", "BitsStored", "PixelRepresentation", "RescaleSlope",
                    "RescaleIntercept", "ModalityLUTSequence"):
        if keyword in ds:
            setattr(view, keyword, ds[keyword].value)
    view.WindowCenter = center
    view.WindowWidth = width
    return view


def _value_range(ds: Dataset, applied: str) -> tuple[float, float]:
    """Nominal (low, high) of monochrome output values: the range pydicom maps windows onto.

    After a VOI LUT it is the LUT's output range; otherwise the modality output
    range (Modality LUT depth, or the stored-value range through the rescale), the
    same range ``apply_windowing`` uses for its output.
    """
    if applied == "lut":
        return 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if ds.get("PixelRepresentation", 0) == 1:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        low, high = 0, 2**bits - 1
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    return float(low), float(high)
