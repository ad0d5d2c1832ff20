"""Classical image codecs to compare against: JPEG, JPEG 2000, HTJ2K, WebP and JPEG XL.

Each codec encodes one grey integer image into a complete, decodable file and decodes
it back; :func:`sweep` runs a codec over a set of images at each of its quality settings
and measures bits per pixel from the actual bytes and each quality metric (PSNR and SSIM
by default) against a float reference. Images are uint8, or uint16 holding ``bits``
significant bits (12 for CT from -1024 to 3071 HU); a codec takes pixels up to its
``max_bits``. Settings:

* ``jpeg``: libjpeg via Pillow, quality 1..95, optimised Huffman tables (a fairer JPEG
  than the default tables); 8-bit.
* ``jpeg2000``: OpenJPEG via Pillow, irreversible 9/7 wavelet, a raw J2K codestream
  (no JP2 box), one quality layer at a target PSNR in dB of the ``bits``-bit range
  (OpenJPEG measures it against the container's peak, so the target is shifted by the
  headroom of a uint16 holding fewer bits).
* ``htj2k``: High-Throughput JPEG 2000 (Part 15) via imagecodecs/OpenJPH, irreversible
  9/7, a quantisation step as a fraction of the ``bits``-bit range.
* ``webp``: libwebp via Pillow (the grey image as RGB; it codes luma), quality 0..95, method 6; 8-bit.
* ``jpegxl``: libjxl via imagecodecs, Butteraugli distance 25..0.5, effort 7, told the
  significant bits of a uint16 image.

Sweeps are ordered from the lowest to the highest quality setting.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Callable

import numpy as np

from medzoo.errors import ConfigError, DataError, DependencyError


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


def _jxl_encode(image, distance, bits=8) -> bytes:
    import imagecodecs

    depth = {} if image.dtype == np.uint8 else {"bitspersample": int(bits)}
    return bytes(imagecodecs.jpegxl_encode(image, distance=distance, effort=7, **depth))


def _headroom(image, bits) -> float:
    """How many times the container's peak exceeds the ``bits``-bit peak (1 for uint8)."""
    return float(np.iinfo(image.dtype).max) / float(2 ** int(bits) - 1)


def _j2k_encode(image, db, bits=8) -> bytes:
    target = float(db) + 20.0 * np.log10(_headroom(image, bits))  # OpenJPEG's PSNR is against the container peak
    return _pil_encode(image, format="JPEG2000", quality_mode="dB", quality_layers=[target], irreversible=True,
                       no_jp2=True)


def _pil_decode_any(data: bytes) -> np.ndarray:
    """A grey image as decoded, 8- or 16-bit (``_pil_decode`` converts to 8-bit grey)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


def _htj2k_encode(image, step, bits=8) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.htj2k_encode(image, level=float(step) / _headroom(image, bits), reversible=False))


def _jxl_decode(data) -> np.ndarray:
    import imagecodecs

    out = np.asarray(imagecodecs.jpegxl_decode(data))
    return out if out.ndim == 2 else out[..., 0]


@dataclasses.dataclass(frozen=True)
class ClassicalCodec:
    """A codec, its quality settings (lowest quality first) and how to run it on a grey image.

    ``encode(image, setting, bits)``: ``image`` uint8, or uint16 up to ``max_bits`` significant bits.
    ``deep_settings``: finer settings appended for images of more than 8 bits (12-bit CT is mostly
    air: the 8-bit sweep ends below 0.4 bpp there, short of the guidelines' 8:1 and 15:1).
    """

    name: str
    label: str
    parameter: str
    settings: tuple
    encode: Callable
    decode: Callable
    available: Callable
    library: str
    max_bits: int = 8
    deep_settings: tuple = ()

    def settings_for(self, bits: int) -> tuple:
        """The sweep for ``bits``-bit pixels, lowest quality first."""
        return self.settings + (self.deep_settings if bits > 8 else ())


CODECS = {
    "jpeg": ClassicalCodec(
        "jpeg", "JPEG", "quality", (1, 3, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),
        lambda img, q, bits=8: _pil_encode(img, format="JPEG", quality=int(q), optimize=True), _pil_decode,
        lambda: True, "Pillow/libjpeg"),
    "jpeg2000": ClassicalCodec(
        "jpeg2000", "JPEG 2000", "target PSNR (dB)", (20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44, 48),
        _j2k_encode, _pil_decode_any, lambda: _pil_has("jpg_2000"), "Pillow/OpenJPEG", max_bits=16,
        deep_settings=(52, 56, 60, 64)),
    "htj2k": ClassicalCodec(
        "htj2k", "HTJ2K", "step (fraction of range)",
        (0.5, 0.3, 0.2, 0.14, 0.1, 0.07, 0.05, 0.035, 0.025, 0.018, 0.012, 0.008, 0.005),
        _htj2k_encode, _ic("htj2k_decode"), lambda: _imagecodecs("HTJ2K"), "imagecodecs/OpenJPH", max_bits=16,
        deep_settings=(0.0035, 0.0025, 0.0018, 0.0012)),
    "webp": ClassicalCodec(
        "webp", "WebP", "quality", (0, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
        lambda img, q, bits=8: _pil_encode(np.repeat(img[..., None], 3, axis=-1), format="WEBP", quality=int(q),
                                           method=6),
        _pil_decode, lambda: _pil_has("webp"), "Pillow/libwebp"),
    "jpegxl": ClassicalCodec(
        "jpegxl", "JPEG XL", "distance", (25, 20, 15, 11, 8, 6, 4, 3, 2, 1.5, 1, 0.5),
        _jxl_encode, _jxl_decode, lambda: _imagecodecs("JPEGXL"), "imagecodecs/libjxl", max_bits=16,
        deep_settings=(0.35, 0.25, 0.15, 0.1)),
}


def available_codecs(bits: int = 8) -> list[str]:
    """Names of the codecs this installation can run on ``bits``-bit pixels."""
    return [name for name, codec in CODECS.items() if codec.max_bits >= bits and codec.available()]


def get_codec(name) -> ClassicalCodec:
    if name not in CODECS:
        raise ConfigError(f"unknown codec {name!r}; known: {list(CODECS)}")
    codec = CODECS[name]
    if not codec.available():
        raise DependencyError(f"{codec.label} is not available in this installation ({codec.library})")
    return codec


def default_metrics() -> dict:
    """``{name: fn(reference, decoded) -> per-image values}``: PSNR and SSIM over the value range."""
    from medzoo.metrics import psnr, ssim

    return {"psnr": psnr, "ssim": ssim}


def sweep(codec, images, reference, *, bits=None, settings=None, metrics=None, progress=None) -> dict:
    """Run ``codec`` on every image at every setting.

    Args:
        codec: a name from :data:`CODECS` or a :class:`ClassicalCodec`.
        images: (N, H, W) grey images to encode: uint8, or uint16 holding ``bits`` significant bits.
        reference: (N, H, W, 1) float images in [0, 1] to measure distortion against (``images`` are
            their rounding to ``bits`` bits).
        bits: significant bits of ``images`` (default: 8 for uint8, 16 for uint16).
        settings: quality settings (default: the codec's sweep for ``bits``-bit pixels).
        metrics: ``{name: fn(reference, decoded)}`` giving per-image values (default :func:`default_metrics`).

    Returns:
        ``{"codec", "label", "parameter", "settings", "bpp", <each metric>}``: per-setting means
        (lists), plus ``per_image`` arrays (settings, N) and ``example`` (the decoded first image
        at each setting).

    Raises:
        ConfigError: pixels wider than the codec takes.
    """
    from medzoo.evaluate.common import progress as bar

    codec = get_codec(codec) if isinstance(codec, str) else codec
    metrics = default_metrics() if metrics is None else dict(metrics)
    images = np.asarray(images)
    bits = int(np.iinfo(images.dtype).bits if bits is None else bits)
    if bits > codec.max_bits:
        raise ConfigError(f"{codec.label} codes at most {codec.max_bits}-bit pixels; these hold {bits} bits")
    settings = tuple(codec.settings_for(bits) if settings is None else settings)
    peak = float(2 ** bits - 1)
    n, h, w = images.shape
    bpp = np.zeros((len(settings), n))
    values = {name: np.zeros((len(settings), n)) for name in metrics}
    examples = []
    for s, setting in enumerate(bar(settings, f"{codec.label} sweep", enabled=progress)):
        decoded = np.empty((n, h, w, 1), dtype=np.float32)
        for i, image in enumerate(images):
            data = codec.encode(image, setting, bits)
            bpp[s, i] = 8.0 * len(data) / (h * w)
            decoded[i, ..., 0] = np.clip(np.asarray(codec.decode(data), np.float32) / peak, 0.0, 1.0)
        for name, fn in metrics.items():
            values[name][s] = fn(reference, decoded)
        examples.append(decoded[0])
    return {"codec": codec.name, "label": codec.label, "library": codec.library, "parameter": codec.parameter,
            "settings": list(settings), "bits": bits, "bpp": bpp.mean(axis=1).tolist(),
            **{name: v.mean(axis=1).tolist() for name, v in values.items()},
            "per_image": {"bpp": bpp, **values}, "example": np.stack(examples)}


# ------------------------------------------------------------------ lossless
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
    "htj2k": LosslessCodec("htj2k", "HTJ2K lossless", 16, _ic("htj2k_encode", reversible=True), _ic("htj2k_decode"),
                           lambda: _imagecodecs("HTJ2K"), "imagecodecs/OpenJPH (5/3)"),
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
    """One integer image, grey (H, W) or colour (H, W, 3), -> a lossless file; signed pixels are offset
    to unsigned first. Colour goes to the codec as one image (its own colour transform, if it has one)."""
    codec = _lossless_codec(codec)
    pixels = np.asarray(pixels)
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[-1] != 3):
        raise DataError(f"{codec.label}: expected a grey (H, W) or colour (H, W, 3) image, got {pixels.shape}")
    info = np.iinfo(pixels.dtype)
    if info.bits > codec.bits:
        raise ConfigError(f"{codec.label} takes at most {codec.bits}-bit pixels, got {pixels.dtype}")
    stored = (pixels.astype(np.int64) - info.min).astype(f"uint{info.bits}") if info.min < 0 else pixels
    if codec.name == "webp" and stored.ndim == 2:
        stored = np.repeat(stored[..., None], 3, axis=-1)  # WebP codes RGB; grey as three equal channels
    return bytes(codec.encode(np.ascontiguousarray(stored)))


def lossless_decode(codec, data: bytes, dtype, colour: bool = False) -> np.ndarray:
    """Inverse of :func:`lossless_encode` for pixels of ``dtype`` (the unsigned offset undone); ``colour``:
    the image was (H, W, 3)."""
    codec = _lossless_codec(codec)
    back = np.asarray(codec.decode(data))
    back = back[..., 0] if back.ndim == 3 and not colour else back
    info = np.iinfo(dtype)
    return (back.astype(np.int64) + info.min).astype(dtype) if info.min < 0 else back.astype(dtype)


def lossless_round_trip(codec, pixels: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Encode and decode one integer image, grey (H, W) or colour (H, W, 3); returns the file and the
    pixels back."""
    data = lossless_encode(codec, pixels)
    return data, lossless_decode(codec, data, np.asarray(pixels).dtype, colour=np.ndim(pixels) == 3)
