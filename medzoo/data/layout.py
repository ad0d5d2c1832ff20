"""The image layout rules that the numpy and the TensorFlow preprocessing share, one floor below both.

:mod:`medzoo.data.preprocess` (numpy, and the dispatch to TensorFlow) and
:mod:`medzoo.data.preprocess_tf` (``tf.data`` graphs) both read shapes the same way and
refuse the same tiny images; keeping those rules here lets the TensorFlow module depend
on them without importing the numpy module back (no import circle).
"""

from __future__ import annotations

from medzoo.errors import DataError

MIN_IMAGE_SIZE = 8
"""Smallest accepted input height and width, in pixels (see the module docstring)."""

# ITU-R BT.601 luma weights, as used by tf.image.rgb_to_grayscale.
LUMA = (0.2989, 0.5870, 0.1140)
FLAT_SPAN = 1e-5  # relative span below which an image counts as constant (float32 has ~7 digits)


def image_layout(shape) -> tuple[bool, int | None]:
    """Interpret an array shape: (H, W), (H, W, C) with C in 1, 3, 4, (N, H, W) or (N, H, W, C).

    Args:
        shape: the array shape (a tuple; the last entry may be ``None`` if unknown).

    Returns:
        ``(batched, channels)``: whether the leading axis is a batch / frame axis,
        and the channel count (``None`` if the shape leaves it unknown).

    Raises:
        DataError: for ranks other than 2, 3 and 4, for a rank-3 shape whose last
            axis is unknown, or for a channel count other than 1, 3 or 4.
    """
    shape = tuple(shape)
    if len(shape) == 2:
        return False, 1
    if len(shape) == 3:
        if shape[-1] is None:
            raise DataError(
                f"a rank-3 array of shape {shape} is ambiguous when its last axis is unknown: "
                "it could be (H, W, C) or (N, H, W); pass a rank-4 (N, H, W, C) array"
            )
        return (False, shape[-1]) if shape[-1] in (1, 3, 4) else (True, 1)
    if len(shape) == 4:
        if shape[-1] not in (None, 1, 3, 4):
            raise DataError(f"images of shape {shape} have {shape[-1]} channels; expected 1, 3 or 4 (RGBA)")
        return True, shape[-1]
    raise DataError(
        f"expected an image (H, W), (H, W, C) or a batch (N, H, W), (N, H, W, C); got an array of shape {shape}"
    )


def check_image_size(height: int, width: int, what: str = "image") -> None:
    """Raise :class:`DataError` unless an image is at least :data:`MIN_IMAGE_SIZE` pixels high and wide."""
    if height < MIN_IMAGE_SIZE or width < MIN_IMAGE_SIZE:
        raise DataError(
            f"{what} is {height}x{width} pixels; images must be at least "
            f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} (an empty or tiny image, or the channel axis in the wrong place?)"
        )
