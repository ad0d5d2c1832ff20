"""The runtime medzoo runs on: the Keras backend, TensorFlow's presence, the accelerators.

medzoo's models, preprocessing and numpy pipelines run on every Keras backend
(TensorFlow, JAX, PyTorch). A few features are TensorFlow's own: ``tf.data`` reading
of folders of DICOM files (:func:`medzoo.data.from_directory`) and the ``tf.distribute``
strategies of ``medzoo train --strategy``. They call :func:`require_tensorflow`, which
says what needs it and what to do instead, rather than failing with an ImportError
deep inside. Nothing here imports a backend's package unless it is the active one.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys

from medzoo.errors import DependencyError


def keras_backend() -> str:
    """The active Keras backend (``tensorflow``, ``jax``, ``torch``, ``numpy``), read without importing Keras."""
    import sys

    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    backend = os.environ.get("KERAS_BACKEND")
    if backend:
        return backend
    try:  # Keras' own config file, as Keras itself reads it
        import json

        config = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "keras.json")
        with open(config) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported (checked without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


def require_tensorflow(feature: str, instead: str = ""):
    """Import and return TensorFlow for ``feature``, or raise :class:`DependencyError` saying what to do.

    Args:
        feature: what needs TensorFlow, e.g. ``"from_directory (tf.data)"``.
        instead: what works without it, appended to the message.
    """
    if not tensorflow_available():
        hint = f"; without it, {instead}" if instead else ""
        raise DependencyError(f"{feature} needs TensorFlow, which is not installed (pip install tensorflow){hint}")
    import tensorflow as tf

    return tf


def accelerators() -> list[str]:
    """Names of the accelerators the active backend sees, e.g. ``["NVIDIA H100 80GB HBM3"]`` (empty on CPU)."""
    backend = keras_backend()
    try:
        if backend == "jax":
            import jax

            return [getattr(d, "device_kind", str(d)) for d in jax.devices() if d.platform != "cpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if backend == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_physical_devices() if d.device_type not in ("CPU",)]
    except Exception:  # a broken driver must not break a training run's metadata
        return []
    return []


def hardware() -> str:
    """What a run used, in words: accelerators if any, plus the CPU cores and the Keras backend."""
    devices = accelerators()
    cpu = platform.processor() or platform.machine()
    counted = {}
    for name in devices:
        counted[name] = counted.get(name, 0) + 1
    gpus = ", ".join(f"{n} x {name}" for name, n in counted.items())
    return (f"{gpus} + " if gpus else "") + f"{os.cpu_count()} CPU cores ({cpu}), Keras backend {keras_backend()}"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and Keras, like ``keras.utils.set_random_seed`` but without TensorFlow elsewhere.

    Keras' own function also seeds TensorFlow whenever it is installed, which imports it
    (seconds) and, on a GPU machine, lets it claim the GPU under a JAX or PyTorch run.
    """
    import random

    import keras
    import numpy as np

    if keras_backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    from keras.src.backend.common import global_state  # where set_random_seed keeps the seed for initializers
    from keras.src.random import seed_generator

    global_state.set_global_attribute("global_random_seed", seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)  # recreated from the seed
    if keras_backend() == "torch":
        import torch

        torch.manual_seed(seed)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (the default backend) and probe its devices with the process's stderr parked in a file.

    TensorFlow's C++ start-up lines (CUDA probing, oneDNN notes) are written before its
    logging reads ``TF_CPP_MIN_LOG_LEVEL``; they say nothing about the user's command. If the
    import fails, what it printed is shown with the error. The command line (except ``--log-level DEBUG``) and
    :func:`medzoo.load` call it; ``MEDZOO_TF_LOGS=1`` keeps the lines.
    """
    import importlib.util
    import tempfile

    if "tensorflow" in sys.modules or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or \
            os.environ.get("MEDZOO_TF_LOGS") == "1" or importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as parked:
        os.dup2(parked.fileno(), 2)
        try:
            import tensorflow

            tensorflow.config.list_physical_devices()  # the CUDA probe, whose failure on a CPU machine is noise
        except Exception:
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.write(parked.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
