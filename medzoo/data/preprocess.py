"""Turning arbitrary images into exactly what a model expects, and back into viewable images.

:class:`PreprocessSpec` is the one place where images are resized, converted
between grey and colour and normalised. It is a small frozen dataclass that
serialises to JSON (``to_config``), so a model ships the exact preprocessing it was
trained with. It has two implementations of the same steps: numpy, for numpy input
on every Keras backend and without TensorFlow, and TensorFlow ops
(:mod:`medzoo.data.preprocess_tf`) for TensorFlow tensors and ``tf.data`` graphs,
where sizes may be unknown until run time. They agree to float32 rounding.

Order of operations in :meth:`PreprocessSpec.apply` (per image, also inside a
batch):

1. cast to float32; an alpha channel (4 channels) is dropped;
2. channel conversion: grey -> 3 channels by repetition, RGB -> 1 channel by
   ITU-R BT.601 luminance (the weights of ``tf.image.rgb_to_grayscale``);
3. geometry (bilinear, antialiased when shrinking): ``"stretch"`` resizes to
   ``size`` ignoring the aspect ratio; ``"crop"`` cuts the largest centred
   region with the target aspect ratio and resizes it; ``"pad"`` resizes so the
   whole image fits inside ``size`` keeping the aspect ratio. ``size=None`` (the
   specs of any-size models) keeps the native resolution, shrunk only where a side
   exceeds ``max_side``;
4. normalisation to ``value_range``, computed on the resized (visible) pixels;
5. for ``"pad"``: centred padding up to ``size`` with ``value_range[0]``
   (black background), so the bands never distort the image statistics.

Array layout rule (:func:`image_layout`): rank 2 is one grey image (H, W);
rank 3 is one image (H, W, C) when the last axis is 1, 3 or 4, otherwise a
batch of grey images (N, H, W); rank 4 is a batch (N, H, W, C). Images must be
at least :data:`MIN_IMAGE_SIZE` pixels high and wide; this minimum rejects
empty and degenerate inputs (upsampling a 4-pixel image invents the whole
picture) and it also makes the rank-3 rule unambiguous, because a grey image
can never be 1, 3 or 4 pixels wide.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import sys

import numpy as np

from medzoo.data.layout import FLAT_SPAN, LUMA, MIN_IMAGE_SIZE, check_image_size, image_layout  # noqa: F401
from medzoo.data.resample import resize_bilinear
from medzoo.errors import ConfigError, DataError, ResizeWarning

RESIZE_MODES = ("pad", "crop", "stretch")
NORMALIZE_MODES = ("minmax", "percentile", "fixed")
UNITS = (None, "HU")
HU_AIR_BELOW = -100.0
"""A CT slice in Hounsfield units has pixels below this (air -1000, fat -100); one without cannot be HU."""

_CHECK_TOLERANCE = 1e-3  # fraction of the value range that check() forgives (float rounding)


def warn_if_resized(what, given, made, spec, *, stacklevel: int = 3) -> bool:
    """Warn (:class:`~medzoo.ResizeWarning`) when ``spec`` changed an image's size from ``given`` to ``made``
    ((height, width) each), naming ``what`` (a file, "images") and both sizes: medzoo never resizes silently.
    Returns whether it warned."""
    given, made = tuple(int(v) for v in given), tuple(int(v) for v in made)
    if given == made:
        return False
    why = "the size this model takes" if spec.size is not None else f"the spec's max_side of {spec.max_side}"
    warnings.warn(f"{what}: {given[0]}x{given[1]} resized to {made[0]}x{made[1]}, {why}; the results are of the "
                  f"{made[0]}x{made[1]} image", ResizeWarning, stacklevel=stacklevel)
    return True


def rescale(x: np.ndarray, low, high, value_range) -> np.ndarray:
    """Clip ``x`` to ``[low, high]`` and map that interval linearly onto ``value_range`` (float32).

    The single normalisation primitive: every mode of :class:`PreprocessSpec` and
    :func:`to_uint8` go through it. A constant image maps to ``value_range[0]``
    instead of dividing by zero; "constant" includes spans below float32
    rounding (``FLAT_SPAN`` of the magnitude), which resampling a constant image
    leaves behind and which would otherwise be stretched into noise.
    """
    low = np.asarray(low, np.float32)
    high = np.asarray(high, np.float32)
    span = high - low
    flat = span <= FLAT_SPAN * np.maximum(np.abs(low), np.abs(high))
    unit = (np.clip(x, low, high) - low) / np.where(flat, np.float32(1.0), span)
    unit = np.where(flat, np.float32(0.0), unit)
    out_low, out_high = (np.float32(v) for v in value_range)
    return (out_low + unit * (out_high - out_low)).astype(np.float32)


def _to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """Convert a batch (N, H, W, 1|3|4) to ``channels`` channels."""
    if x.shape[-1] == 1:
        return x if channels == 1 else np.repeat(x, 3, axis=-1)
    rgb = x[..., :3]
    if channels == 3:
        return rgb
    return LUMA[0] * rgb[..., 0:1] + LUMA[1] * rgb[..., 1:2] + LUMA[2] * rgb[..., 2:3]


def _uses_tensorflow(images) -> bool:
    """Whether ``images`` need the TensorFlow implementation (a TF tensor, or a traced graph)."""
    if "tensorflow" not in sys.modules:  # nothing can be a TF tensor if TF was never imported
        return False
    from medzoo.data import preprocess_tf

    return preprocess_tf.is_tf_input(images)


def _as_pair(value, name: str, kind=float) -> tuple:
    """Return ``value`` as a 2-tuple of ``kind`` (lists from JSON are accepted), or raise ConfigError."""
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float, np.number)) for v in items):
        raise ConfigError(f"{name} must be a pair of numbers, got {value!r}")
    if kind is int and any(float(v) != int(v) for v in items):
        raise ConfigError(f"{name} must be a pair of integers, got {value!r}")
    pair = tuple(kind(v) for v in items)
    if not all(math.isfinite(v) for v in pair):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return pair


def _check_hounsfield(x: np.ndarray, batched: bool) -> None:
    """Refuse images that cannot be CT slices in Hounsfield units (no value below :data:`HU_AIR_BELOW`)."""
    lowest = x.reshape(len(x), -1).min(axis=1) if batched else np.array([x.min()])
    bad = np.flatnonzero(lowest >= HU_AIR_BELOW)
    if len(bad):
        raise DataError(
            f"{len(bad)} image(s) (first: index {int(bad[0])}, lowest value {lowest[bad[0]]:g}, dtype {x.dtype}) have "
            f"no value below {HU_AIR_BELOW:g}: not CT in Hounsfield units (air is about -1000 HU). Read DICOMs with "
            "medzoo.read_dicom (it applies the rescale), or subtract the stored offset (e.g. 32768, or 1024)")


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
    """How raw images become model inputs: size, channels, geometry and normalisation.

    Args:
        size: output ``(height, width)``, or ``None`` to keep each image's own size
            (for any-size models; ``resize`` is then unused).
        channels: output channels, 1 (grey) or 3 (RGB).
        resize: ``"pad"`` (keep aspect ratio, fit inside, pad with ``value_range[0]``),
            ``"crop"`` (keep aspect ratio, fill, centre-crop) or ``"stretch"`` (ignore aspect ratio).
        normalize: ``"minmax"`` (per image), ``"percentile"`` (per image, clip at
            ``percentiles`` then scale) or ``"fixed"`` (clip to ``input_range`` then scale).
        percentiles: ``(low, high)`` in percent, used by ``normalize="percentile"`` only.
        input_range: ``(low, high)`` in input units, e.g. ``(0, 255)`` or a CT window in HU;
            required by ``normalize="fixed"`` and rejected otherwise.
        value_range: ``(low, high)`` of the output values.
        max_side: with ``size=None``: images whose longer side exceeds it are shrunk
            (aspect ratio kept, antialiased) so that it equals ``max_side``.
        units: ``"HU"`` for CT in Hounsfield units (with ``normalize="fixed"``): an image with no
            value below :data:`HU_AIR_BELOW` (no air, no fat: stored values without the rescale, or
            an 8-bit export) is refused, since its values cannot be Hounsfield units.
    """

    size: tuple[int, int] | None
    channels: int = 1
    resize: str = "pad"
    normalize: str = "minmax"
    percentiles: tuple[float, float] = (1.0, 99.0)
    input_range: tuple[float, float] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    max_side: int | None = None
    units: str | None = None

    def __post_init__(self):
        if self.units not in UNITS:
            raise ConfigError(f"units must be one of {UNITS}, got {self.units!r}")
        if self.units == "HU" and self.normalize != "fixed":
            raise ConfigError('units="HU" maps Hounsfield units linearly: it needs normalize="fixed" and input_range')
        if self.size is not None:
            size = _as_pair(self.size, "size", int)
            if min(size) < 1:
                raise ConfigError(f"size must be positive, got {self.size!r}")
            object.__setattr__(self, "size", size)
        if self.max_side is not None:
            if self.size is not None:
                raise ConfigError("max_side is for specs that keep the native size (size=None); "
                                  "a fixed size already bounds the image")
            if isinstance(self.max_side, bool) or not isinstance(self.max_side, (int, np.integer)) \
                    or self.max_side < MIN_IMAGE_SIZE:
                raise ConfigError(f"max_side must be an integer >= {MIN_IMAGE_SIZE}, got {self.max_side!r}")
            object.__setattr__(self, "max_side", int(self.max_side))
        if isinstance(self.channels, bool) or self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.normalize not in NORMALIZE_MODES:
            raise ConfigError(f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        low, high = _as_pair(self.percentiles, "percentiles")
        if not 0.0 <= low < high <= 100.0:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles!r}")
        object.__setattr__(self, "percentiles", (low, high))
        if self.normalize == "fixed":
            if self.input_range is None:
                raise ConfigError('normalize="fixed" needs input_range=(low, high), e.g. (0, 255) or a CT window')
            input_range = _as_pair(self.input_range, "input_range")
            if input_range[0] >= input_range[1]:
                raise ConfigError(f"input_range must have low < high, got {self.input_range!r}")
            object.__setattr__(self, "input_range", input_range)
        elif self.input_range is not None:
            raise ConfigError(f'input_range is only used with normalize="fixed", not {self.normalize!r}')
        value_range = _as_pair(self.value_range, "value_range")
        if value_range[0] >= value_range[1]:
            raise ConfigError(f"value_range must have low < high, got {self.value_range!r}")
        object.__setattr__(self, "value_range", value_range)

    @property
    def output_shape(self) -> tuple[int | None, int | None, int]:
        """The shape (H, W, C) of one preprocessed image; H and W are None for a native-size spec."""
        return (*(self.size or (None, None)), self.channels)

    @property
    def units_per_value(self) -> float | None:
        """Input units (e.g. HU) per unit of the model's value range, for a spec that maps ``input_range``
        linearly (``normalize="fixed"``): an error of 0.01 in model values is ``0.01 * units_per_value``
        HU. None for per-image normalisations, whose scale differs from image to image."""
        if self.normalize != "fixed":
            return None
        return (self.input_range[1] - self.input_range[0]) / (self.value_range[1] - self.value_range[0])

    @property
    def native_size(self) -> bool:
        """Whether images keep their own size (up to ``max_side``)."""
        return self.size is None

    def to_config(self) -> dict[str, Any]:
        """A JSON-safe dict (lists for pairs) that :meth:`from_config` turns back into an equal spec.

        ``max_side`` appears only when set, so the configs of fixed-size specs are as before.
        """
        config = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in ("max_side", "units") and value is None:
                continue
            config[field.name] = list(value) if isinstance(value, tuple) else value
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PreprocessSpec":
        """Rebuild a spec from :meth:`to_config` output; unknown keys raise :class:`ConfigError`."""
        if not isinstance(config, dict):
            raise ConfigError(f"a PreprocessSpec config must be a dict, got {type(config).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"unknown PreprocessSpec config keys {unknown}; known keys: {sorted(known)}")
        if "size" not in config:
            raise ConfigError("a PreprocessSpec config needs 'size'")
        return cls(**config)

    def apply(self, images):
        """Preprocess one image or a batch.

        Args:
            images: (H, W), (H, W, C), (N, H, W) or (N, H, W, C) of any numeric dtype;
                C is 1, 3 or 4 (alpha is dropped). A numpy array (or anything array-like)
                goes through the numpy implementation, on any backend; a TensorFlow
                tensor, or any input while a ``tf.function`` / ``tf.data`` graph is
                traced, through TensorFlow ops (then H, W and, for rank-4 input, C may
                be unknown).

        Returns:
            float32 (H', W', C') for one image or (N, H', W', C') for a batch, with
            values in ``value_range``: a numpy array for numpy input, else a tensor.

        Raises:
            DataError: for an unsupported shape or dtype, or an image smaller than
                :data:`MIN_IMAGE_SIZE` (in a graph with unknown sizes, a runtime assertion).
        """
        if _uses_tensorflow(images):
            from medzoo.data import preprocess_tf

            return preprocess_tf.apply(self, images)
        x = np.asarray(images)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DataError(f"images must be numeric, got dtype {x.dtype}")
        batched, _ = image_layout(x.shape)
        if self.units == "HU":
            _check_hounsfield(x, batched)
        x = x.astype(np.float32)
        if x.ndim == 2:
            x = x[None, ..., None]
        elif x.ndim == 3:
            x = x[..., None] if batched else x[None]
        y = self._apply_batch(x)
        return y if batched else y[0]

    def _apply_batch(self, x: np.ndarray) -> np.ndarray:
        """:meth:`apply` on a float32 numpy batch (N, H, W, C)."""
        check_image_size(x.shape[1], x.shape[2])
        x = _to_channels(x, self.channels)
        x = self._shrink(x) if self.size is None else self._resize(x)
        if self.normalize == "minmax":
            low = x.min(axis=(1, 2, 3), keepdims=True)
            high = x.max(axis=(1, 2, 3), keepdims=True)
        elif self.normalize == "percentile":
            flat = x.reshape(len(x), -1)
            low, high = (np.percentile(flat, q, axis=1).astype(np.float32).reshape(-1, 1, 1, 1)
                         for q in self.percentiles)
        else:
            low, high = self.input_range
        x = rescale(x, low, high, self.value_range)
        if self.resize == "pad" and self.size is not None:
            x = self._pad(x)
        return x

    def _shrink(self, x: np.ndarray) -> np.ndarray:
        """Native-size geometry: unchanged, or shrunk so the longer side is ``max_side``."""
        if self.max_side is None:
            return x
        height, width = shrunk_size(x.shape[1], x.shape[2], self.max_side)
        return x if (height, width) == x.shape[1:3] else resize_bilinear(x, height, width)

    def _resize(self, x: np.ndarray) -> np.ndarray:
        """Geometry step: the final size for crop/stretch, the fitted size (before padding) for pad."""
        height, width = self.size
        h, w = x.shape[1], x.shape[2]
        if self.resize == "stretch":
            return resize_bilinear(x, height, width)
        if self.resize == "crop":
            scale = max(np.float32(height) / np.float32(h), np.float32(width) / np.float32(w))
            crop_h = int(min(h, np.round(np.float32(height) / scale)))
            crop_w = int(min(w, np.round(np.float32(width) / scale)))
            top, left = (h - crop_h) // 2, (w - crop_w) // 2
            return resize_bilinear(x[:, top:top + crop_h, left:left + crop_w], height, width)
        scale = min(np.float32(height) / np.float32(h), np.float32(width) / np.float32(w))
        fit_h = int(np.clip(np.round(np.float32(h) * scale), 1, height))
        fit_w = int(np.clip(np.round(np.float32(w) * scale), 1, width))
        return resize_bilinear(x, fit_h, fit_w)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        """Centre ``x`` on a ``size`` canvas filled with ``value_range[0]``."""
        height, width = self.size
        extra_h, extra_w = height - x.shape[1], width - x.shape[2]
        paddings = [(0, 0), (extra_h // 2, extra_h - extra_h // 2), (extra_w // 2, extra_w - extra_w // 2), (0, 0)]
        return np.pad(x, paddings, constant_values=np.float32(self.value_range[0]))

    def check(self, images) -> None:
        """Raise :class:`DataError` unless ``images`` already are model inputs for this spec.

        Accepts one image (H, W, C) or a batch (N, H, W, C) whose (H, W, C) equals
        :attr:`output_shape` and whose values lie inside ``value_range`` (with a
        tolerance of 0.1 % of its width for float rounding). Use it to refuse
        inputs that would silently contradict the model; :meth:`apply` converts them.
        """
        array = np.asarray(images)
        expected = self.output_shape
        shape = array.shape[1:] if array.ndim == 4 else array.shape
        if self.size is None and array.ndim in (3, 4):
            if shape[-1] != self.channels or min(shape[:2]) < MIN_IMAGE_SIZE:
                raise DataError(
                    f"expected images (H, W, {self.channels}) or a batch (N, H, W, {self.channels}) of any size "
                    f">= {MIN_IMAGE_SIZE}; got shape {array.shape}. Use PreprocessSpec.apply() on raw images"
                )
            expected = shape
        if array.ndim not in (3, 4) or shape != expected:
            raise DataError(
                f"expected an image of shape {expected} or a batch (N, {', '.join(map(str, expected))}); "
                f"got shape {array.shape}. Use PreprocessSpec.apply() to resize and normalise raw images"
            )
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise DataError(f"images must be numeric, got dtype {array.dtype}")
        if array.size == 0:
            return
        low, high = self.value_range
        tolerance = _CHECK_TOLERANCE * (high - low)
        found_low, found_high = float(np.min(array)), float(np.max(array))
        if not (math.isfinite(found_low) and math.isfinite(found_high)):
            raise DataError("images contain NaN or infinite values")
        if found_low < low - tolerance or found_high > high + tolerance:
            raise DataError(
                f"image values span [{found_low:g}, {found_high:g}], outside the expected value_range "
                f"[{low:g}, {high:g}] (un-normalised input such as uint8 0..255?). "
                "Use PreprocessSpec.apply() to normalise raw images"
            )


def shrunk_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """The size a native-size spec gives an ``height x width`` image (longer side limited to ``max_side``).

    The one statement of the rule, shared by preprocessing, crop checks and the
    training-resolution record of any-size presets.
    """
    if max_side is None or max(height, width) <= max_side:
        return int(height), int(width)
    scale = np.float32(max_side) / np.float32(max(height, width))
    return (max(1, int(np.round(np.float32(height) * scale))), max(1, int(np.round(np.float32(width) * scale))))


def to_uint8(images, value_range=(0.0, 1.0)) -> np.ndarray:
    """Map model outputs in ``value_range`` to uint8 0..255 (clip, scale, round) for viewing or saving.

    Raises:
        DataError: if the images contain NaN or infinite values.
    """
    value_range = _as_pair(value_range, "value_range")
    if value_range[0] >= value_range[1]:
        raise ConfigError(f"value_range must have low < high, got {value_range!r}")
    array = np.asarray(images, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise DataError("images contain NaN or infinite values")
    scaled = rescale(array, value_range[0], value_range[1], (0.0, 255.0))
    return np.rint(scaled).astype(np.uint8)


def to_display(image, value_range=(0.0, 1.0)) -> np.ndarray:
    """One model output -> a displayable uint8 image: (H, W) for grey, (H, W, 3) for colour.

    Args:
        image: (H, W), (H, W, 1), (H, W, 3) or a batch of one (1, H, W, C).
        value_range: the range the model output lives in.
    """
    array = np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise DataError(
            f"to_display expects one image (H, W), (H, W, 1), (H, W, 3) or (1, H, W, C); got shape {np.shape(image)}"
        )
    return to_uint8(array, value_range)
