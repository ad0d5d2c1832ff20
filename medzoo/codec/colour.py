"""The reversible colour transform of colour lossless streams (YCoCg-R, integer lifting).

A colour ultrasound or a screen capture stores three planes that are nearly the same grey image:
coded apart, each pays for the anatomy again. YCoCg-R (Malvar and Sullivan, 2003) turns red,
green and blue into a luma plane and two chroma differences by integer lifting steps, so that the
inverse gives back every pixel exactly; where the image is grey both chroma planes are zero.
For 8-bit channels the luma stays in the channel's range and the chroma planes in [-255, 255]:
the causal coder codes them as 16-bit signed planes (:data:`PLANE_DTYPE`).
"""

import numpy as np

#: the channel types the transform takes (its chroma planes must fit :data:`PLANE_DTYPE`)
CHANNEL_DTYPES = ("uint8", "int8")
#: the dtype the causal coder codes the transformed planes as
PLANE_DTYPE = "int16"


def applies(pixels: np.ndarray, dtype) -> bool:
    """Whether images (N, H, W, C) of ``dtype`` are colour the transform takes: three 8-bit channels."""
    return pixels.shape[-1] == 3 and np.dtype(dtype).name in CHANNEL_DTYPES


def forward(rgb: np.ndarray) -> np.ndarray:
    """Integer (..., 3) red, green, blue -> (..., 3) luma, orange and green chroma (int64)."""
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    y = t + (cg >> 1)
    return np.stack([y, co, cg], axis=-1)


def inverse(ycocg: np.ndarray) -> np.ndarray:
    """Inverse of :func:`forward`, exact on every integer input :func:`forward` can give."""
    y, co, cg = (ycocg[..., k].astype(np.int64) for k in range(3))
    t = y - (cg >> 1)
    g = cg + t
    b = t - (co >> 1)
    r = b + co
    return np.stack([r, g, b], axis=-1)
