"""Choosing a ``tf.distribute`` strategy and a precision policy for training."""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf

from medzoo.errors import ConfigError

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "cpu", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed")

# One strategy object per kind and process: TensorFlow allows a single
# MultiWorkerMirroredStrategy per process, and two MirroredStrategy objects in one
# process reuse collective instance keys, so a second training run would abort.
_created: dict[str, tf.distribute.Strategy] = {}


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
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


def set_precision(precision: str = "float32") -> str:
    """Set Keras' global dtype policy; ``mixed`` means float16 compute on GPUs. Returns the policy name."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    policy = "float32"
    if precision == "mixed":
        if not tf.config.list_logical_devices("GPU"):
            raise ConfigError("precision 'mixed' (float16) needs a GPU; none is visible, use 'float32'")
        policy = "mixed_float16"
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
