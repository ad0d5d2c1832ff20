"""Spreading training over devices, per backend, and the precision policy.

TensorFlow: a ``tf.distribute`` strategy (:func:`make_strategy`): one device, all GPUs
(``MirroredStrategy``) or a cluster of workers (``MultiWorkerMirroredStrategy``).
JAX: ``keras.distribution.DataParallel`` over the visible devices
(:func:`make_distribution`): each batch is split across them, gradients are averaged.
PyTorch: one device. TensorFlow is imported only under its own backend.
"""

from __future__ import annotations

import json
import logging
import os

import keras

from medzoo.backend import accelerators, keras_backend, require_tensorflow
from medzoo.errors import ConfigError

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "cpu", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed", "bfloat16")

# One strategy object per kind and process: TensorFlow allows a single
# MultiWorkerMirroredStrategy per process, and two MirroredStrategy objects in one
# process reuse collective instance keys, so a second training run would abort.
_created: dict = {}


def make_strategy(kind: str = "auto"):
    """The strategy for ``kind``; model building and compiling must happen in its ``scope()``.

    * ``auto``: ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names a cluster,
      ``MirroredStrategy`` over all GPUs when there are several, else the default
      strategy (one GPU, or the CPU).
    * ``cpu``: the default strategy, pinned to nothing (CPU when no GPU is visible).
    * ``mirrored``: ``MirroredStrategy`` over all GPUs, or over all logical CPU
      devices when there is no GPU (useful for testing with
      ``tf.config.set_logical_device_configuration``).
    * ``multiworker``: ``MultiWorkerMirroredStrategy`` (needs ``TF_CONFIG``).
    """
    if kind not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, got {kind!r}")
    tf = require_tensorflow(f"the tf.distribute strategy {kind!r}",
                            "train under JAX, where medzoo train uses keras.distribution.DataParallel")
    # decide on multi-worker before anything initialises TensorFlow's context (listing
    # devices does): its collective ops can only be configured at program start
    if kind == "auto" and _cluster_in_tf_config():
        kind = "multiworker"
    if kind == "multiworker" and not _cluster_in_tf_config():
        raise ConfigError("strategy 'multiworker' needs TF_CONFIG describing the cluster and this worker's task")
    gpus = tf.config.list_logical_devices("GPU") if kind != "multiworker" else []
    if kind == "auto":
        kind = "mirrored" if len(gpus) > 1 else "cpu"
    if kind == "cpu":
        strategy = tf.distribute.get_strategy()
    elif kind in _created:
        strategy = _created[kind]
    elif kind == "multiworker":
        strategy = _created[kind] = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = _created[kind] = tf.distribute.MirroredStrategy(devices)
    log.info("strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def _cluster_in_tf_config() -> bool:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return False
    try:
        return bool(json.loads(raw).get("cluster"))
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON with a 'cluster' key: {exc}") from exc


def make_distribution(kind: str = "auto"):
    """JAX: ``keras.distribution.DataParallel`` over the visible devices when there are several, else None.

    ``kind`` is ``auto`` or ``cpu`` (one device); the ``tf.distribute`` kinds are refused
    with what to do instead.
    """
    if kind not in ("auto", "cpu"):
        raise ConfigError(f"strategy {kind!r} is a tf.distribute strategy: it needs the TensorFlow backend. Under "
                          f"{keras_backend()}, use strategy 'auto' (data parallel over all visible devices) or 'cpu'")
    if kind == "cpu" or keras_backend() != "jax":
        return None
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return None
    distribution = keras.distribution.DataParallel(devices=devices)
    log.info("keras.distribution.DataParallel over %d devices", len(devices))
    return distribution


def set_precision(precision: str = "float32") -> str:
    """Set Keras' global dtype policy and return its name.

    ``mixed``: float16 compute (loss-scaled), ``bfloat16``: bfloat16 compute; both
    keep float32 weights and need an accelerator.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    policy = "float32"
    if precision in ("mixed", "bfloat16"):
        if not accelerators():
            raise ConfigError(f"precision {precision!r} needs a GPU; none is visible, use 'float32'")
        policy = "mixed_float16" if precision == "mixed" else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def chief() -> bool:
    """Whether this process writes outputs (always, except non-chief workers of a cluster)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    task = json.loads(raw).get("task", {})
    return task.get("type") in (None, "chief") or (task.get("type") == "worker" and task.get("index", 0) == 0
                                                    and "chief" not in json.loads(raw).get("cluster", {}))
