"""medzoo: a Keras model zoo of autoencoders for medical imaging, with verified pretrained weights.

The public face of the package; everything here is a thin re-export. Attributes load
on first use (PEP 562), so ``import medzoo`` stays cheap: ``medzoo list`` answers
without importing Keras or a backend, and under JAX or PyTorch nothing imports
TensorFlow. medzoo's model classes register with Keras as soon as Keras is imported
(see :mod:`medzoo.registration`), so ``keras.saving.load_model`` reads medzoo models
after a plain ``import medzoo``.
"""

import importlib

from medzoo.version import __version__  # noqa: F401
from medzoo.errors import (  # noqa: F401
    ConfigError,
    DataError,
    DependencyError,
    DomainShiftWarning,
    IntegrityError,
    MedzooError,
    ModelNotFoundError,
    ResizeWarning,
)
from medzoo import registration as _registration

#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(["VAE", "VQVAE", "ConvAutoencoder", "VectorQuantizer", "Segmenter"], "medzoo.models"),
    "KLWarmup": "medzoo.callbacks",
    **dict.fromkeys(["PreprocessSpec", "from_arrays", "from_directory", "load_dataset", "load_npz", "read_dicom",
                     "read_image",
                     "read_images", "sample_images", "to_display"], "medzoo.data"),
    **dict.fromkeys(["info", "list_models", "load", "load_preset", "push_to_hub", "save_preset"], "medzoo.zoo"),
    "train": "medzoo.recipes",
    **dict.fromkeys(["compress", "decompress"], "medzoo.codec"),
    "demo": "medzoo.evaluate.demo",
}
#: subpackages and modules reachable as attributes (``medzoo.evaluate`` is callable)
_SUBMODULES = {"backend", "callbacks", "cli", "codec", "data", "errors", "evaluate", "metrics", "models", "progress",
               "recipes", "registration", "version", "zoo"}

__all__ = sorted([*_EXPORTS, "evaluate", "__version__", "ConfigError", "DataError", "DependencyError",
                  "DomainShiftWarning", "IntegrityError", "MedzooError", "ModelNotFoundError",
                  "ResizeWarning"])


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"medzoo.{name}")
    else:
        raise AttributeError(f"module 'medzoo' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)


_registration.register_with_keras()
