"""What the zoo knows about a model instance: its name, version and training record, and the inputs it expects.

Shared by everything above the zoo that takes "a model" as a zoo name, a preset path or an
instance (evaluation, the codec, the command line), so each resolves and prepares it the same way.
"""

from __future__ import annotations

import os

import numpy as np

from medzoo.errors import ConfigError, DataError

#: images spec-applied per call when preparing many (bounds the float32 copy in memory)
_CHUNK = 256


def resolve_model(model):
    """A model instance from a zoo name, a preset path or an instance (returned unchanged)."""
    from medzoo.models import AutoencoderModel

    if isinstance(model, AutoencoderModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        from medzoo.zoo import load

        return load(model, compile=False)
    raise ConfigError(f"expected a medzoo model, a zoo name or a preset path, got {type(model).__name__}")


def model_label(model) -> str:
    """The zoo name of a model, or its class name for a model that was never saved."""
    metadata = getattr(model, "zoo_metadata", None) or {}
    return metadata.get("name") or f"{type(model).__name__.lower()}-unsaved"


def model_version(model) -> str:
    metadata = getattr(model, "zoo_metadata", None) or {}
    return metadata.get("version") or "0.0.0"


def training_info(model) -> dict:
    """The ``training`` block of a model's preset metadata (empty for an unsaved model)."""
    metadata = getattr(model, "zoo_metadata", None) or {}
    return dict(metadata.get("training") or {})


def prepare(model, images) -> np.ndarray:
    """Images -> float32 model inputs (N, H, W, C): used as they are if they already fit, else preprocessed."""
    from medzoo.data.preprocess import image_layout, warn_if_resized

    array = np.asarray(images)
    spec = getattr(model, "preprocess_spec", None)
    shape = tuple(model.image_shape)

    def fits(got) -> bool:  # None in the model's shape: any size (an any-size model)
        return len(got) == len(shape) and all(s is None or s == g for g, s in zip(got, shape))

    if array.ndim == len(shape) and fits(array.shape):
        array = array[None]
    if spec is None:
        if array.ndim != 4 or not fits(array.shape[1:]) or not np.issubdtype(array.dtype, np.floating):
            raise DataError(
                f"this model has no preprocessing spec, so images must already be float model inputs of shape "
                f"(N, {', '.join(map(str, shape))}); got {array.dtype} {array.shape}"
            )
        return array.astype(np.float32, copy=False)
    if np.issubdtype(array.dtype, np.floating) and array.ndim == 4:
        try:
            spec.check(array)
            return array.astype(np.float32, copy=False)
        except DataError:
            pass
    if len(array) == 0:
        raise DataError("no images given")
    if array.ndim in (3, 4) and len(array) > _CHUNK:
        out = np.concatenate([np.asarray(spec.apply(array[i:i + _CHUNK])) for i in range(0, len(array), _CHUNK)])
    else:
        out = np.asarray(spec.apply(array), dtype=np.float32)
    out = out if out.ndim == 4 else out[None]
    batched, _ = image_layout(array.shape)
    warn_if_resized("images", array.shape[1:3] if batched else array.shape[:2], out.shape[1:3], spec, stacklevel=3)
    return out
