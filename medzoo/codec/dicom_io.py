"""DICOM in, DICOM out: a medzoo stream that carries its files' DICOM headers, as a PACS user works.

``medzoo compress scan.dcm -o scan.mzc`` codes the stored pixel values (no rescale or VOI) and
keeps each file's header (every element but Pixel Data); ``medzoo decompress scan.mzc -o scan.dcm``
gives back a DICOM with that header and the decoded pixels at the original bit depth and sign,
written uncompressed (Explicit VR Little Endian). A lossless stream gives back every pixel; a
lossy one (a codec that codes integer pixels) is marked as DICOM requires: Lossy Image
Compression (0028,2110) "01", its ratio (0028,2112) and method (0028,2114) appended to any
earlier ones, and as a derived image (Image Type DERIVED, a Derivation Description and Code
Sequence, a Source Image Sequence pointing at the original) with a new SOP Instance UID and a
new Series Instance UID, since the pixels are no longer those of the original.

A multi-frame file (an ultrasound cine loop, an enhanced CT or MR) keeps its frames together: they
are consecutive images of the stream, and the decoder learns how many from the file's own header
(Number of Frames).

Container layout (integers marked v are unsigned LEB128 varints)::

    magic        4 bytes  b"\\x89MZD"
    version      1 byte   1 (every file a single frame) or 2 (some file holds several: a reader of version 1
                          would not know to split the images by the headers' Number of Frames)
    N            v        number of files (their frames in stream order, file after file)
    per file     v length + UTF-8 file name, v length + zlib-deflated DICOM header (Part 10,
                 Pixel Data removed)
    stream       v length + a medzoo stream of the N images' stored pixels (medzoo.codec.stream)
    CRC32        4 bytes  over everything above

``medzoo.decompress`` and ``read_header`` read the inner stream of a container directly.
"""

from __future__ import annotations

import io
import os
import pathlib
import shutil
import struct
import tempfile
import typing
import zlib

import numpy as np

from medzoo.codec.bitio import BitstreamError, Reader, varint
from medzoo.errors import DataError

MAGIC = b"\x89MZD"
#: the container versions this medzoo reads; it writes the lowest that holds its files (2 for multi-frame ones)
VERSIONS = (1, 2)
#: (0028,2114) Lossy Image Compression Method of medzoo's streams (a CS value: 16 characters at most)
LOSSY_METHOD = "MEDZOO_MZC2"


def is_container(data) -> bool:
    """Whether ``data`` (bytes) is a DICOM container rather than a bare stream."""
    return bytes(data[:len(MAGIC)]) == MAGIC


def pack(names: list[str], headers: list[bytes], stream: bytes) -> bytes:
    """The container of ``stream`` and one (file name, DICOM header bytes) per file, whose frames
    (:func:`frames_of`) are the stream's images in turn."""
    if len(names) != len(headers) or not names:
        raise DataError("a DICOM container needs one name and one header per file, and at least one")
    version = VERSIONS[0] if all(frames_of(kept_header(header)) == 1 for header in headers) else VERSIONS[1]
    body = bytearray(MAGIC + bytes([version]) + varint(len(names)))
    for name, header in zip(names, headers):
        raw, packed = name.encode("utf-8"), zlib.compress(header, 9)
        body += varint(len(raw)) + raw + varint(len(packed)) + packed
    body += varint(len(stream)) + stream
    return bytes(body) + struct.pack(">I", zlib.crc32(body))


def unpack(data) -> tuple[list[str], list[bytes], bytes]:
    """``(file names, DICOM header bytes, inner stream)`` of a container; :class:`BitstreamError` if it is
    truncated, corrupted or of a newer version."""
    data = bytes(data)
    if not is_container(data):
        raise BitstreamError(f"not a medzoo DICOM container: it starts with {data[:4]!r}")
    if len(data) < len(MAGIC) + 5 or struct.unpack(">I", data[-4:])[0] != zlib.crc32(data[:-4]):
        raise BitstreamError("corrupted or truncated medzoo DICOM container: its CRC32 does not match")
    r = Reader(data[:-4])
    r.take(len(MAGIC), "magic")
    version = r.take(1, "container version")[0]
    if version not in VERSIONS:
        raise BitstreamError(f"medzoo DICOM container version {version} is not supported by this medzoo "
                             f"(it reads versions {', '.join(map(str, VERSIONS))}); upgrade medzoo")
    names, headers = [], []
    for i in range(r.varint("file count")):
        names.append(r.text(f"name of file {i}"))
        packed = r.take(r.varint(f"header length of file {i}"), f"header of file {i}")
        try:
            headers.append(zlib.decompress(packed))
        except zlib.error as exc:
            raise BitstreamError(f"corrupted medzoo DICOM container: header {i} does not inflate ({exc})") from None
    stream = r.take(r.varint("stream length"), "stream")
    return names, headers, stream


def kept_header(header: bytes):
    """A file's kept header (Part 10 bytes, Pixel Data removed) as a pydicom dataset; :class:`BitstreamError` if
    it does not parse."""
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(header))
    except Exception as exc:  # a corrupted header
        raise BitstreamError(f"a DICOM header in the container does not parse ({type(exc).__name__}: {exc})") from None


def frames_of(ds) -> int:
    """How many frames a kept header (:func:`kept_header`) says its file holds."""
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError) as exc:
        raise BitstreamError(f"a DICOM header in the container has no usable Number of Frames ({exc})") from None
    if frames < 1:
        raise BitstreamError(f"a DICOM header in the container says it holds {frames} frames")
    return frames


def inner_stream(data):
    """The medzoo stream inside a container, or ``data`` itself when it is a bare stream."""
    return unpack(data)[2] if is_container(data) else data


# ----------------------------------------------------------------- compress
#: what the DICOM path keeps as a DICOM: grey images, and RGB ones (an ultrasound's colour, coded losslessly as
#: luma and chroma), of one frame or several; YBR, whose stored values pydicom turns into RGB, and palettes are not
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB")


def unsupported(path) -> str | None:
    """Why the DICOM path cannot keep this file as a DICOM (YBR or palette colour, a big-endian file), or
    None. The header alone is read."""
    from pydicom.uid import UID

    from medzoo.data.dicom import read_dicom_header

    meta = read_dicom_header(path)
    photometric = meta["photometric_interpretation"]
    if photometric not in PHOTOMETRIC:
        return (f"{path}: {photometric}: the DICOM path of the codec takes grey or RGB images (MONOCHROME1/2, "
                "RGB), of one frame or several")
    if not UID(meta["transfer_syntax_uid"]).is_little_endian:  # pydicom cannot re-encode its header's words
        return (f"{path}: Explicit VR Big Endian (a retired transfer syntax): the DICOM path writes little-endian "
                "files and cannot convert this header; convert the file first (e.g. dcmconv +te)")
    return None


class ForCoding(typing.NamedTuple):
    """DICOM files read for coding: their stored pixels, names, headers and largest Bits Stored."""

    pixels: np.ndarray  #: (N, H, W) or (N, H, W, 3) for RGB, N counting every frame of every file
    names: list  #: the files' paths relative to their common folder (a series keeps its layout)
    headers: list  #: each file's header, as DICOM file bytes without its Pixel Data
    bits_stored: int  #: the largest Bits Stored (0028,0101): what a compression ratio of the stored bits is of


def read_for_coding(paths) -> ForCoding:
    """DICOM files -> their :class:`ForCoding` (stored pixels, names, header bytes, Bits Stored), or a
    :class:`DataError` naming the file for what the codec does not handle (:func:`unsupported`, or no
    pixel data, pixel values outside the declared bit depth, images of different sizes or pixel types).
    A multi-frame file gives its frames as consecutive images, N counting every frame of every file.
    The names are the files' paths relative to their common folder (a series keeps its layout)."""
    from medzoo.data.dicom import read_dicom_stored

    paths = [pathlib.Path(p) for p in paths]
    root = pathlib.Path(os.path.commonpath([p.resolve().parent for p in paths])) if paths else None
    pixels, names, headers, bits = [], [], [], []
    for path in paths:
        ds = _dataset(path)
        if "PixelData" not in ds:
            raise DataError(f"{path}: the DICOM file has no Pixel Data (7FE0,0010): nothing to compress")
        reason = unsupported(path)
        if reason:
            raise DataError(reason)
        stored, meta = read_dicom_stored(path)
        bits.append(int(ds.BitsStored))
        _check_bit_depth(path, _raw_values(ds, stored), bits[-1], int(ds.get("PixelRepresentation", 0)))
        frames = stored if meta["number_of_frames"] > 1 else stored[None]
        del ds.PixelData
        buffer = io.BytesIO()
        try:
            ds.save_as(buffer, enforce_file_format=True)
        except (ValueError, AttributeError, TypeError) as exc:  # e.g. no SOP Instance UID or transfer syntax
            raise DataError(f"{path}: its DICOM header cannot be kept as a file ({type(exc).__name__}: {exc})") from exc
        pixels.append(frames)
        names.append(path.resolve().relative_to(root).as_posix())
        headers.append(buffer.getvalue())
    kinds = {(p.shape[1:], p.dtype.str) for p in pixels}
    if len(kinds) > 1:
        raise DataError("one stream holds images of one size and pixel type; these DICOMs differ "
                        f"({', '.join(sorted(f'{s} {d}' for s, d in kinds))}): compress them one by one")
    return ForCoding(np.concatenate(pixels), names, headers, max(bits))


def _dataset(path: pathlib.Path):
    import pydicom

    from medzoo.data.dicom import is_dicom

    if not is_dicom(path):
        raise DataError(f"{path}: not a DICOM file (no 'DICM' preamble)")
    try:
        return pydicom.dcmread(path)
    except Exception as exc:
        raise DataError(f"{path}: unreadable DICOM ({type(exc).__name__}: {exc})") from exc


def _raw_values(ds, stored: np.ndarray) -> np.ndarray:
    """The pixel values as the file holds them, before pydicom masks them to Bits Stored: for uncompressed
    pixel data the raw words (a value beyond the declared depth would be silently cut), else ``stored``."""
    if ds.file_meta.TransferSyntaxUID.is_compressed or int(ds.BitsAllocated) not in (8, 16) or \
            int(ds.get("PixelRepresentation", 0)):  # signed words may or may not be sign-extended: pydicom's values
        return stored
    kind = "i" if int(ds.get("PixelRepresentation", 0)) else "u"
    dtype = np.dtype(f"{'<' if ds.file_meta.TransferSyntaxUID.is_little_endian else '>'}{kind}{ds.BitsAllocated // 8}")
    raw = np.frombuffer(ds.PixelData, dtype=dtype, count=stored.size) if len(ds.PixelData) >= stored.nbytes else stored
    return raw


def _check_bit_depth(path, stored: np.ndarray, bits: int, signed: int) -> None:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if stored.size and (int(stored.min()) < low or int(stored.max()) > high):
        raise DataError(f"{path}: pixel values {int(stored.min())}..{int(stored.max())} lie outside the declared "
                        f"{bits}-bit {'signed' if signed else 'unsigned'} range {low}..{high} (Bits Stored, Pixel "
                        "Representation; bits above them, e.g. an old overlay, would be lost): refusing to code "
                        "pixels the header contradicts")


# --------------------------------------------------------------- decompress
def write_dicoms(data, output, pixels: np.ndarray, *, lossy: bool, coder: str = "") -> list[pathlib.Path]:
    """Write the container's files with ``pixels`` (N, H, W), or (N, H, W, 3) for RGB, the decoded stored values:
    each file takes as many of them in turn as its header has frames.

    ``output``: a folder (one file per image, under its original name), or a ``.dcm`` path for a
    container of one image. Every file is written to a temporary folder first and moved into place
    only when all were written, so a bad stream or header leaves no file behind; no file is ever
    half-written. Names that would land outside ``output`` are refused. ``coder``: the model that
    coded a lossy stream ("codec-chestxray 1.0.0"), named in each file's Derivation Description.
    """
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    names, headers, stream = unpack(data)
    datasets = [kept_header(header) for header in headers]
    frames = [frames_of(ds) for ds in datasets]
    if len(pixels) != sum(frames):
        raise BitstreamError(f"the container's {len(names)} file(s) hold {sum(frames)} frame(s) but its stream holds "
                             f"{len(pixels)} image(s)")
    starts = np.cumsum([0, *frames])
    output = pathlib.Path(output)
    single = output.suffix.lower() == ".dcm"
    if single and len(names) != 1:
        raise DataError(f"{output}: the stream holds {len(names)} DICOM files; give a folder with -o")
    targets = [output] if single else [_inside(output, name) for name in names]
    for target in targets:
        if target.is_dir():
            raise DataError(f"{target}: a folder is in the way of the DICOM file to write there")
    ratio = float(sum(p.nbytes for p in pixels)) / max(1, len(stream))
    new_series = {}  # original Series Instance UID -> the derived series' new one
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=".medzoo-", dir=_existing_parent(targets[0].parent)))
    try:
        written = []
        for i, (ds, target) in enumerate(zip(datasets, targets)):
            image = pixels[starts[i]:starts[i + 1]] if frames[i] > 1 else pixels[starts[i]]
            samples = int(ds.get("SamplesPerPixel", 1))
            expected = (int(ds.Rows), int(ds.Columns)) + ((samples,) if samples > 1 else ())
            if image.shape[-len(expected):] != expected:
                raise BitstreamError(f"file {names[i]}: header of {'x'.join(map(str, expected))} but pixels of "
                                     f"{image.shape}")
            if samples > 1 and int(ds.get("PlanarConfiguration", 0)) == 1:  # colour by plane: R..., G..., B...
                image = np.moveaxis(image, -1, -3)  # per frame
            ds.PixelData = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("<")).tobytes()
            ds["PixelData"].VR = "OB" if image.dtype.itemsize == 1 else "OW"
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            if lossy:
                series = new_series.setdefault(str(ds.get("SeriesInstanceUID", "")), generate_uid())
                _mark_lossy(ds, ratio, generate_uid(), series_uid=series, coder=coder)
            path = scratch / f"{i:06d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            written.append(path)
        for path, target in zip(written, targets):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return targets


def _inside(output: pathlib.Path, name: str) -> pathlib.Path:
    """``output / name`` for a name read from a stream, refusing names that would land outside ``output``."""
    relative = pathlib.PurePosixPath(name)
    if not name or relative.is_absolute() or ".." in relative.parts or "\\" in name:
        raise BitstreamError(f"the container names a file {name!r} outside the output folder: refusing to write it")
    return output.joinpath(*relative.parts)


def _existing_parent(folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _mark_lossy(ds, ratio: float, uid: str, *, series_uid: str | None = None, coder: str = "") -> None:
    """Mark ``ds`` as a lossy-compressed image derived from the file it was (PS3.3 C.7.6.1.1.2, C.7.6.1.1.5, C.12.1).

    Lossy Image Compression "01" with its ratio and method appended to any earlier ones; Image
    Type DERIVED (the rest of the values kept); a Derivation Description naming the coder and
    ratio and a Derivation Code Sequence (DCM 113040 "Lossy Compression"); a Source Image
    Sequence pointing at the original SOP instance (purpose DCM 121320 "Uncompressed
    predecessor"); a new SOP Instance UID and, when given, a new Series Instance UID, so a
    PACS never files the derived image as the original or into its series.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from medzoo.version import __version__

    def code(value, meaning):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        return item

    original_uid, sop_class = ds.get("SOPInstanceUID"), ds.get("SOPClassUID")
    if original_uid and sop_class:
        source = Dataset()
        source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID = sop_class, original_uid
        source.PurposeOfReferenceCodeSequence = Sequence([code("121320", "Uncompressed predecessor")])
        ds.SourceImageSequence = Sequence([source])
    image_type = [str(v) for v in _values(ds.get("ImageType"))]
    ds.ImageType = ["DERIVED", *(image_type[1:] or ["PRIMARY"])]
    what = (f"Lossy compression {round(ratio, 1)}:1 by medzoo {__version__}" + (f" ({coder})" if coder else "")
            + "; not the original pixels")
    earlier = str(ds.get("DerivationDescription", "") or "")
    ds.DerivationDescription = (what + ("; earlier: " + earlier if earlier else ""))[:1024]
    ds.DerivationCodeSequence = Sequence([code("113040", "Lossy Compression")])
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    ds.LossyImageCompression = "01"
    ratios, methods = (_values(ds.get(keyword)) for keyword in
                       ("LossyImageCompressionRatio", "LossyImageCompressionMethod"))
    ds.LossyImageCompressionRatio = [*ratios, round(ratio, 2)] if ratios else round(ratio, 2)
    ds.LossyImageCompressionMethod = [*methods, LOSSY_METHOD] if methods else LOSSY_METHOD
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid


def _values(value) -> list:
    """A DICOM element's values as a list: none, one (pydicom gives it bare) or several (a MultiValue)."""
    from pydicom.multival import MultiValue

    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
