"""Classical image codecs to compare against: JPEG, JPEG 2000, WebP (Pillow) and JPEG XL (imagecodecs).

Each codec encodes one grey uint8 image into a complete, decodable file and
decodes it back; :func:`sweep` runs a codec over a set of images at each of its
quality settings and measures bits per pixel from the actual bytes, PSNR and
SSIM against a float reference. Settings:

* ``jpeg``: libjpeg via Pillow, quality 1..95, optimised Huffman tables (a fairer JPEG
  than the default tables).
* ``jpeg2000``: OpenJPEG via Pillow, irreversible 9/7 wavelet, a raw J2K codestream
  (no JP2 box), one quality layer at a target PSNR in dB.
* ``webp``: libwebp via Pillow (the grey image as RGB; it codes luma), quality 0..95, method 6.
* ``jpegxl``: libjxl via imagecodecs, Butteraugli distance 25..0.5, effort 7.

Sweeps are ordered from the lowest to the highest quality setting.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Callable

import numpy as np

from medzoo.errors import ConfigError, DependencyError


def _pil_encode(image, **options) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **options)
    return buffer.getvalue()


def _pil_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L"))


def _pil_has(feature: str) -> bool:
    try:
        from PIL import features

        return bool(features.check(feature))
    except Exception:  # noqa: BLE001 - a broken Pillow build simply lacks the codec
        return False


def _jxl_available() -> bool:
    try:
        import imagecodecs

        return bool(imagecodecs.JPEGXL.available)
    except (ImportError, AttributeError):
        return False


def _jxl_encode(image, distance) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(image, distance=distance, effort=7))


def _jxl_decode(data) -> np.ndarray:
    import imagecodecs

    out = np.asarray(imagecodecs.jpegxl_decode(data))
    return out if out.ndim == 2 else out[..., 0]


@dataclasses.dataclass(frozen=True)
class ClassicalCodec:
    """A codec, its quality settings (lowest quality first) and how to run it on a grey uint8 image."""

    name: str
    label: str
    parameter: str
    settings: tuple
    encode: Callable
    decode: Callable
    available: Callable
    library: str


CODECS = {
    "jpeg": ClassicalCodec(
        "jpeg", "JPEG", "quality", (1, 3, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),
        lambda img, q: _pil_encode(img, format="JPEG", quality=int(q), optimize=True), _pil_decode,
        lambda: True, "Pillow/libjpeg"),
    "jpeg2000": ClassicalCodec(
        "jpeg2000", "JPEG 2000", "target PSNR (dB)", (20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44, 48),
        lambda img, db: _pil_encode(img, format="JPEG2000", quality_mode="dB", quality_layers=[float(db)],
                                    irreversible=True, no_jp2=True), _pil_decode,
        lambda: _pil_has("jpg_2000"), "Pillow/OpenJPEG"),
    "webp": ClassicalCodec(
        "webp", "WebP", "quality", (0, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
        lambda img, q: _pil_encode(np.repeat(img[..., None], 3, axis=-1), format="WEBP", quality=int(q), method=6),
        _pil_decode, lambda: _pil_has("webp"), "Pillow/libwebp"),
    "jpegxl": ClassicalCodec(
        "jpegxl", "JPEG XL", "distance", (25, 20, 15, 11, 8, 6, 4, 3, 2, 1.5, 1, 0.5),
        _jxl_encode, _jxl_decode, _jxl_available, "imagecodecs/libjxl"),
}


def available_codecs() -> list[str]:
    """Names of the codecs this installation can run."""
    return [name for name, codec in CODECS.items() if codec.available()]


def get_codec(name) -> ClassicalCodec:
    if name not in CODECS:
        raise ConfigError(f"unknown codec {name!r}; known: {list(CODECS)}")
    codec = CODECS[name]
    if not codec.available():
        raise DependencyError(f"{codec.label} is not available in this installation ({codec.library})")
    return codec


def sweep(codec, images_uint8, reference, *, settings=None, progress=None) -> dict:
    """Run ``codec`` on every image at every setting.

    Args:
        codec: a name from :data:`CODECS` or a :class:`ClassicalCodec`.
        images_uint8: (N, H, W) grey uint8 images to encode.
        reference: (N, H, W, 1) float images in [0, 1] to measure distortion against.
        settings: quality settings (default: the codec's sweep).

    Returns:
        ``{"codec", "label", "parameter", "settings", "bpp", "psnr", "ssim"}``: per-setting means
        (lists), plus ``per_image`` arrays (settings, N) and ``example`` (the decoded first image
        at each setting).
    """
    from medzoo.evaluate.common import progress as bar
    from medzoo.metrics import psnr, ssim

    codec = get_codec(codec) if isinstance(codec, str) else codec
    settings = tuple(codec.settings if settings is None else settings)
    images_uint8 = np.asarray(images_uint8)
    n, h, w = images_uint8.shape
    bpp = np.zeros((len(settings), n))
    psnrs = np.zeros((len(settings), n))
    ssims = np.zeros((len(settings), n))
    examples = []
    for s, setting in enumerate(bar(settings, f"{codec.label} sweep", enabled=progress)):
        decoded = np.empty((n, h, w, 1), dtype=np.float32)
        for i, image in enumerate(images_uint8):
            data = codec.encode(image, setting)
            bpp[s, i] = 8.0 * len(data) / (h * w)
            decoded[i, ..., 0] = codec.decode(data) / 255.0
        psnrs[s] = psnr(reference, decoded)
        ssims[s] = ssim(reference, decoded)
        examples.append(decoded[0])
    return {"codec": codec.name, "label": codec.label, "library": codec.library, "parameter": codec.parameter,
            "settings": list(settings), "bpp": bpp.mean(axis=1).tolist(), "psnr": psnrs.mean(axis=1).tolist(),
            "ssim": ssims.mean(axis=1).tolist(),
            "per_image": {"bpp": bpp, "psnr": psnrs, "ssim": ssims}, "example": np.stack(examples)}


# ------------------------------------------------------------------ lossless
def _imagecodecs(name: str) -> bool:
    try:
        import imagecodecs

        return bool(getattr(imagecodecs, name).available)
    except (ImportError, AttributeError):
        return False


def _ic(function: str, **options) -> Callable:
    def run(data):
        import imagecodecs

        return getattr(imagecodecs, function)(data, **options)

    return run


@dataclasses.dataclass(frozen=True)
class LosslessCodec:
    """A lossless codec for grey integer images: ``encode(pixels) -> bytes``, ``decode(bytes) -> pixels``.

    ``bits``: the widest pixels it takes (8 or 16); signed images are offset to unsigned first
    (as a DICOM writer would store them), which changes no bit count.
    """

    name: str
    label: str
    bits: int
    encode: Callable
    decode: Callable
    available: Callable
    library: str


LOSSLESS_CODECS = {
    "png": LosslessCodec("png", "PNG", 16, _ic("png_encode", level=9), _ic("png_decode"),
                         lambda: _imagecodecs("PNG"), "imagecodecs/libpng (zlib level 9)"),
    "jpegls": LosslessCodec("jpegls", "JPEG-LS", 16, _ic("jpegls_encode", level=0), _ic("jpegls_decode"),
                            lambda: _imagecodecs("JPEGLS"), "imagecodecs/CharLS"),
    "jpeg2000": LosslessCodec("jpeg2000", "JPEG 2000 lossless", 16, _ic("jpeg2k_encode", level=0, reversible=True),
                              _ic("jpeg2k_decode"), lambda: _imagecodecs("JPEG2K"), "imagecodecs/OpenJPEG (5/3)"),
    "jpegxl": LosslessCodec("jpegxl", "JPEG XL lossless", 16, _ic("jpegxl_encode", lossless=True, effort=7),
                            _ic("jpegxl_decode"), lambda: _imagecodecs("JPEGXL"), "imagecodecs/libjxl (effort 7)"),
    "webp": LosslessCodec("webp", "WebP lossless", 8, _ic("webp_encode", lossless=True, level=100),
                          _ic("webp_decode"), lambda: _imagecodecs("WEBP"), "imagecodecs/libwebp"),
}


def available_lossless_codecs(bits: int = 8) -> list[str]:
    """Names of the lossless codecs this installation can run on ``bits``-bit pixels."""
    return [name for name, c in LOSSLESS_CODECS.items() if c.bits >= bits and c.available()]


def _lossless_codec(codec) -> LosslessCodec:
    return LOSSLESS_CODECS[codec] if isinstance(codec, str) else codec


def lossless_encode(codec, pixels: np.ndarray) -> bytes:
    """One grey integer image (H, W) -> a lossless file; signed pixels are offset to unsigned first."""
    codec = _lossless_codec(codec)
    pixels = np.asarray(pixels)
    info = np.iinfo(pixels.dtype)
    if info.bits > codec.bits:
        raise ConfigError(f"{codec.label} takes at most {codec.bits}-bit pixels, got {pixels.dtype}")
    stored = (pixels.astype(np.int64) - info.min).astype(f"uint{info.bits}") if info.min < 0 else pixels
    if codec.name == "webp":
        stored = np.repeat(stored[..., None], 3, axis=-1)  # WebP codes RGB; grey as three equal channels
    return bytes(codec.encode(np.ascontiguousarray(stored)))


def lossless_decode(codec, data: bytes, dtype) -> np.ndarray:
    """Inverse of :func:`lossless_encode` for pixels of ``dtype`` (the unsigned offset undone)."""
    codec = _lossless_codec(codec)
    back = np.asarray(codec.decode(data))
    back = back[..., 0] if back.ndim == 3 else back
    info = np.iinfo(dtype)
    return (back.astype(np.int64) + info.min).astype(dtype) if info.min < 0 else back.astype(dtype)


def lossless_round_trip(codec, pixels: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Encode and decode one grey integer image (H, W); returns the file and the pixels back."""
    data = lossless_encode(codec, pixels)
    return data, lossless_decode(codec, data, np.asarray(pixels).dtype)
