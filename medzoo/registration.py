"""Make medzoo's Keras classes known to Keras whenever Keras is imported, without importing it ourselves.

``keras.saving.load_model`` finds a medzoo model (``medzoo>VAE``, ``medzoo>SpaceToDepth``, ...)
only once the module that defines it has run. ``import medzoo`` should not pay for
importing Keras and its backend (TensorFlow takes seconds), yet a user who writes
``import medzoo`` and then ``keras.saving.load_model("vae.keras")`` must get the model.
:func:`register_with_keras` does both: if Keras is already imported it imports
:mod:`medzoo.models` now; otherwise it waits for the import of Keras and imports
:mod:`medzoo.models` right after Keras has finished loading.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys

log = logging.getLogger(__name__)


def _register() -> None:
    try:
        importlib.import_module("medzoo.models")  # its modules register their classes when they run
    except Exception as exc:  # never break the user's `import keras`
        log.warning("medzoo could not register its model classes with Keras: %s", exc)


class _LoaderThenRegister(importlib.abc.Loader):
    """Runs Keras' own loader, then registers medzoo's classes."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _register()

    def __getattr__(self, name):  # is_package, get_resource_reader, ...: Keras' loader answers
        return getattr(self.loader, name)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """A one-shot finder: when ``keras`` is imported, hands its spec back with a registering loader."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # one shot, and no recursion into ourselves below
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _LoaderThenRegister(spec.loader)
        return spec


def register_with_keras() -> None:
    """Register medzoo's classes with Keras now (Keras already imported) or as soon as Keras is imported."""
    if "keras" in sys.modules:
        _register()
    elif not any(isinstance(finder, _KerasImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())
