"""``medzoo.train``: run a recipe on any Keras backend, survive kills, end with a preset.

TensorFlow trains under a ``tf.distribute`` strategy with a ``tf.data`` pipeline; JAX
and PyTorch train from numpy batches (:class:`~medzoo.data.batches.ArrayBatches`), JAX
data-parallel over all visible devices, so ``KERAS_BACKEND=jax medzoo train NAME``
runs on a GPU machine without TensorFlow.

A run directory holds everything one training run writes::

    <output>/backup/             BackupAndRestore state (deleted when the run ends)
    <output>/best.weights.h5     the weights with the lowest val_loss so far
    <output>/final.weights.h5    the weights after the last epoch
    <output>/log.csv             one row per epoch (appended to across resumes)
    <output>/tensorboard/        TensorBoard logs (where TensorFlow is installed)
    <output>/recipe.json         the resolved recipe (with the epochs a time budget chose)
    <output>/start.json          the record of the run's starting point (init_from), so a resumed run
                                 rebuilds without the starting weights
    <output>/run.json            what the run did: epochs, optimizer steps, wall time, hardware
    <output>/preset/             the final preset (config, weights, metadata, model card; for a
                                 VQ-VAE also entropy_model.npz, fitted on the training split)
    <output>/STOP                written by the user (``touch``): end the run after the current
                                 epoch as if it were the last, or, found when a killed run
                                 resumes, at its last completed epoch (removed when honoured)

A run killed at any point restarts with ``resume=True`` (``medzoo train ... --resume``)
from the last completed epoch, with weights, optimizer state (its step count drives
the learning-rate schedule) and random-generator state restored; one killed after
training but before its test metrics (``run.json`` written) is measured, not retrained.
Neither needs the weights the run started from (``init_from``) once its first epoch is done.

A run may train on one machine and become a preset on another: train on a GPU machine
with ``write_preset=False`` (``--no-preset``; the test split need not be there), copy the
run directory back, and :func:`finish` (``medzoo train NAME --output DIR --finish``)
measures the test split and writes the preset, keeping the training machine's
hardware and wall time in its metadata.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import json
import logging
import math
import os
import pathlib
import shutil
import time
import types
import warnings

import numpy as np
import keras

from medzoo.backend import hardware, keras_backend, seed_everything
from medzoo.callbacks import KLWarmup
from medzoo.data import PreprocessSpec, from_arrays, load_dataset, load_masks, load_npz, load_pixel_spacing
from medzoo.data.folder_sets import is_folder_dataset, stack_if_uniform
from medzoo.data.preprocess import shrunk_size
from medzoo.errors import ConfigError, DataError, DomainShiftWarning, MedzooError
from medzoo.metrics import (batch_for, bicubic_thumbnail, dice, ellipse_circumference, fit_vae_sigma, hd95, iou, mae,
                            psnr, rmse, ssim, vae_negative_elbo_bits)
from medzoo.models import FAMILIES
from medzoo.models.tiling import set_inference_tile, tile_starts
from medzoo.models.segmenter import check_masks
from medzoo.recipes.catalog import get_recipe
from medzoo.recipes.distribute import chief, make_distribution, make_strategy, set_precision
from medzoo.recipes.recipe import Recipe

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
#: a file the user creates in a run directory to end the run after the current epoch
STOP_FILE = "STOP"
RECIPE_FILE = "recipe.json"
#: where a run keeps the record of its starting point from its first step
START_FILE = "start.json"


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (best weights) and where things went."""

    model: keras.Model
    recipe: Recipe
    history: dict
    metrics: dict
    output_dir: pathlib.Path
    preset_dir: pathlib.Path | None
    epochs_completed: int
    initial_epoch: int
    optimizer_steps: int
    wall_time_s: float


def train(
    recipe,
    *,
    output_dir=None,
    strategy="auto",
    precision="float32",
    resume=False,
    deterministic=False,
    verbose="auto",
    write_preset=True,
    callbacks=(),
    time_budget_s=None,
    data_workers=1,
    **overrides,
) -> TrainResult:
    """Train a zoo recipe (a name or a :class:`Recipe`) and write its preset.

    Args:
        recipe: recipe name (see ``medzoo.recipes.RECIPES``) or a :class:`Recipe`.
        output_dir: run directory (default ``runs/<recipe name>``).
        strategy: ``"auto"``, ``"cpu"``, ``"mirrored"`` or ``"multiworker"`` under
            TensorFlow (see :func:`medzoo.recipes.distribute.make_strategy`); ``"auto"``
            or ``"cpu"`` under JAX, where ``auto`` is data-parallel over all devices.
        precision: ``"float32"``, ``"mixed"`` (float16 compute) or ``"bfloat16"``; the
            last two need an accelerator.
        resume: continue a run killed in ``output_dir``; without it an existing
            unfinished run there is an error rather than silently resumed.
        deterministic: seed everything (and, under TensorFlow, enable op determinism).
        verbose: Keras ``fit`` verbosity (progress bar by default).
        write_preset: write ``<output>/preset`` with the test-set metrics.
        callbacks: extra Keras callbacks.
        time_budget_s: train for about this many seconds: the epochs that fit are
            measured on this machine before training starts (a short calibration run of
            the same model) and written into the run's recipe, so the learning-rate
            schedule still decays to zero at the end.
        data_workers: threads that cut training crops ahead of the step (numpy batches: JAX and
            PyTorch, mixtures, crops at random scales); more than one keeps an accelerator fed.
            Batches depend only on ``(seed, epoch, batch)``, so the data are the same for any number.
        **overrides: recipe fields to replace, e.g. ``epochs=3`` or ``model={"filters": 8}``.
    """
    started = time.time()
    if isinstance(data_workers, bool) or not isinstance(data_workers, int) or data_workers < 1:
        raise ConfigError(f"data_workers must be a positive integer (threads cutting crops), got {data_workers!r}")
    recipe = get_recipe(recipe).with_overrides(**overrides)
    out = pathlib.Path(output_dir or pathlib.Path("runs") / recipe.name)
    writer = chief()
    if not writer:  # non-chief workers of a cluster keep their state apart from the chief's
        out = out / f"worker-{json.loads(os.environ['TF_CONFIG'])['task']['index']}"
    backup_dir = out / "backup"
    if backup_dir.exists() and not resume:
        raise ConfigError(f"{out} holds an unfinished run; pass resume=True (--resume) or choose another output")
    if resume and not backup_dir.exists() and (out / RUN_FILE).is_file():
        return _measure_trained_run(out, recipe, write_preset and writer, time_budget_s)
    out.mkdir(parents=True, exist_ok=True)
    resumed = resume and backup_dir.exists()
    if resumed and time_budget_s and (out / RECIPE_FILE).exists():  # keep the epochs the budget chose
        recipe = recipe.with_overrides(epochs=json.loads((out / RECIPE_FILE).read_text())["epochs"])
        time_budget_s = None

    backend = keras_backend()
    tf_strategy = make_strategy(strategy) if backend == "tensorflow" else None  # before any other TF setup
    distribution = make_distribution(strategy) if backend != "tensorflow" else None
    seed_everything(recipe.seed)
    if deterministic and backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    policy = set_precision(precision)
    spec = PreprocessSpec.from_config(recipe.spec)
    train_images, train_masks = load_split(recipe, "train")
    val_images, val_masks = load_split(recipe, "val")

    replicas = tf_strategy.num_replicas_in_sync if tf_strategy is not None else (
        int(np.prod(distribution.device_mesh.shape)) if distribution is not None else 1)
    global_batch = recipe.batch_size * replicas
    train_ds, steps_per_epoch = _pipeline(train_images, spec, global_batch, recipe, training=True,
                                          deterministic=deterministic, backend=backend, masks=train_masks,
                                          workers=data_workers)
    val_images, val_spec = validation_tiles(recipe, spec, val_images) if val_masks is None else (val_images, spec)
    val_ds, _ = _pipeline(val_images, val_spec, global_batch, recipe, training=False, deterministic=deterministic,
                          backend=backend, masks=val_masks)
    if distribution is not None:
        keras.distribution.set_distribution(distribution)
    def scope():  # a fresh context each time: a tf.distribute scope cannot be entered twice
        return tf_strategy.scope() if tf_strategy is not None else contextlib.nullcontext()


    if time_budget_s:
        epochs = _epochs_for_budget(recipe, spec, train_ds, val_ds, steps_per_epoch, time_budget_s,
                                    time.time() - started, scope)
        recipe = recipe.with_overrides(epochs=epochs)
        callbacks = [*callbacks, _Deadline(started + time_budget_s)]
    (out / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")

    initial_epoch = _completed_epochs(backup_dir)
    with scope():
        model = _built_for_run(recipe, spec, out, restored=initial_epoch > 0)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(recipe, steps_per_epoch)))

    if getattr(model, "rate_steps", None) and recipe.init_from is not None and initial_epoch == 0:
        _fit_rate_model(model, train_ds)
    if _narrowing_source(model) is not None and initial_epoch == 0:
        _narrow_latent(model, train_ds, out)
    else:
        _forget_narrowing_source(model, out)
    wall_clock = _WallClock(out)
    cbs = [wall_clock] + _callbacks(recipe, out, model, resume=resume and initial_epoch > 0) + list(callbacks) + [
        _StopRequest(out / STOP_FILE), _backup(out)]
    log.info("training %s on %s: %d params, %s train / %s val images, %d steps per epoch, global batch %d on %d "
             "replica(s), policy %s", recipe.name, backend, model.count_params(), _count(train_images),
             _count(val_images), steps_per_epoch, global_batch, replicas, policy)
    ended_at_backup = bool(resumed and initial_epoch and (out / STOP_FILE).exists())
    if ended_at_backup:  # a killed run asked to end where it stands
        wall, optimizer_steps = _previous_wall_time(out), initial_epoch * steps_per_epoch
        history = _end_at_last_epoch(model, out, initial_epoch, recipe.epochs)
    else:
        history = model.fit(train_ds, validation_data=val_ds, epochs=recipe.epochs, callbacks=cbs, verbose=verbose,
                            shuffle=False)  # the datasets reshuffle themselves each epoch
        wall = wall_clock.seconds()
        optimizer_steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise MedzooError(f"training {recipe.name} diverged (loss {losses[-1]}); no preset written. "
                          "Lower learning_rate or check the data")
    model.save_weights(out / "final.weights.h5")
    epochs_completed = initial_epoch if ended_at_backup else _logged_epochs(out / "log.csv")
    run = {"epochs": epochs_completed, "optimizer_steps": optimizer_steps, "wall_time_s": round(wall, 1),
           "hardware": hardware(), "backend": backend, "replicas": replicas, "keras_version": keras.__version__,
           "precision": policy, "time_budget_s": time_budget_s,
           # the starting point's record, so finishing this run never needs its starting weights again
           "initialized_from": getattr(model, "initialized_from", None)}
    (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")

    best = out / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
    metrics, preset_dir = {}, None
    if write_preset or _has_split(recipe, "test"):
        metrics, preset_dir = _measure_and_write(model, recipe, spec, out, run, write=write_preset and writer)
    elif not write_preset:
        log.info("no test split on this machine: %s trained without test metrics (finish it where the data is)",
                 recipe.name)
    return TrainResult(model, recipe, history.history, metrics, out, preset_dir, epochs_completed,
                       initial_epoch, optimizer_steps, wall)


def finish(output_dir, *, weights="best", inference_tile=None) -> pathlib.Path:
    """Turn a run directory trained elsewhere into a preset: test metrics measured here, training facts kept.

    Args:
        output_dir: a run directory with ``recipe.json``, ``run.json`` and the weights.
        weights: ``"best"`` (lowest val_loss) or ``"final"`` (after the last epoch).
        inference_tile: ``[tile, overlap]`` to measure and ship the model with (see
            ``Recipe.inference_tile``; chosen on the validation split), instead of the run's own.

    Returns:
        The preset directory (``<output_dir>/preset``).
    """
    out = pathlib.Path(output_dir)
    model, recipe, spec, run = _reload_trained_run(out, weights)
    if inference_tile is not None:
        recipe = recipe.with_overrides(inference_tile=list(inference_tile))
        set_inference_tile(model, recipe.inference_tile)
    _, preset_dir = _measure_and_write(model, recipe, spec, out, {**run, "weights": weights}, write=True)
    return preset_dir


def _reload_trained_run(out: pathlib.Path, weights: str):
    """The model of a run whose training finished in ``out`` (its stored recipe, ``weights``), and that run."""
    for name in (RECIPE_FILE, RUN_FILE, f"{weights}.weights.h5"):
        if not (out / name).is_file():
            raise ConfigError(f"{out} is not a finished run directory: {name} is missing")
    if (out / "backup").exists():
        raise ConfigError(f"{out} holds an unfinished run (backup/): resume it before finishing")
    recipe = _stored_recipe(out)
    spec = PreprocessSpec.from_config(recipe.spec)
    run = json.loads((out / RUN_FILE).read_text())
    if "initialized_from" in run:  # the weights come from the run: its starting point need not exist any more
        model = build_model(recipe.with_overrides(init_from=None), spec)
        if run["initialized_from"] is not None:
            model.initialized_from = run["initialized_from"]
    else:  # a run from before medzoo kept that record: it is read off the starting point itself
        model = _built_from_start(recipe, spec)
    _forget_narrowing_source(model, out)
    model.load_weights(out / f"{weights}.weights.h5")
    return model, recipe, spec, run


def _built_for_run(recipe: Recipe, spec: PreprocessSpec, out: pathlib.Path, *, restored: bool):
    """The run's model. Starting: built from its ``init_from``, whose record goes to :data:`START_FILE`.
    Resuming a run whose backup restores the weights: built without them, the record read back from that
    file, so a killed stage resumes after its starting point has moved (a run from before that file
    still builds from its starting point)."""
    start = out / START_FILE
    if restored and start.is_file():
        model = build_model(recipe.with_overrides(init_from=None), spec)
        record = json.loads(start.read_text())["initialized_from"]
        if record is not None:
            model.initialized_from = record
        return model
    model = build_model(recipe, spec)
    start.write_text(json.dumps({"initialized_from": getattr(model, "initialized_from", None)}, indent=2) + "\n")
    return model


def _built_from_start(recipe: Recipe, spec: PreprocessSpec):
    """The recipe's model built from its ``init_from``, whose training record a run written before run.json kept
    it needs: a starting point named by a path that is gone is said to be so, with where to find it."""
    start = recipe.init_from
    if start is not None and any(sep in str(start) for sep in ("/", os.sep)) and not pathlib.Path(start).exists():
        raise ConfigError(f"init_from={start!r} does not exist. This run was trained before run.json kept the "
                          "record of its starting point, so it is read from there: put the starting point back at "
                          "that path (a stage removed from stages/ is in git history)")
    return build_model(recipe, spec)


def _stored_recipe(out: pathlib.Path) -> Recipe:
    stored = json.loads((out / RECIPE_FILE).read_text())
    return get_recipe(stored["name"]).with_overrides(
        **{k: v for k, v in stored.items() if k != "name" and k in {f.name for f in dataclasses.fields(Recipe)}})


def _with_defaults(stored: dict) -> dict:
    """A stored recipe.json with the fields added to :class:`Recipe` since it was written, at their defaults
    (a run from an older medzoo is the same recipe, not another one)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Recipe) if f.default is not dataclasses.MISSING}
    return {**json.loads(json.dumps(defaults)), **stored}


def _measure_trained_run(out: pathlib.Path, recipe: Recipe, write: bool, time_budget_s) -> TrainResult:
    """``train(resume=True)`` on a run whose training finished but that was stopped before its test
    metrics and preset: measure it rather than train it again."""
    stored = _with_defaults(json.loads((out / RECIPE_FILE).read_text()))
    asked = json.loads(json.dumps(recipe.with_overrides(epochs=stored["epochs"]) if time_budget_s else recipe,
                                  default=dataclasses.asdict))
    if asked != stored:
        changed = sorted(k for k in {*stored, *asked} if stored.get(k) != asked.get(k))
        raise ConfigError(f"{out} holds a finished run of another recipe (differs in {', '.join(changed)}); "
                          "choose another output, or train without resume to replace it")
    model, recipe, spec, run = _reload_trained_run(out, "best" if (out / "best.weights.h5").is_file() else "final")
    log.info("%s finished training earlier (%s epochs, %s s): measuring it, not training it again",
             out, run["epochs"], run["wall_time_s"])
    metrics, preset_dir = {}, None
    if write or _has_split(recipe, "test"):
        metrics, preset_dir = _measure_and_write(model, recipe, spec, out, run, write=write)
    rows = _log_rows(out / "log.csv")
    history = {k: [float(r[k]) for r in rows if r.get(k)] for k in (rows[0] if rows else {}) if k != "epoch"}
    return TrainResult(model, recipe, history, metrics, out, preset_dir, run["epochs"], run["epochs"],
                       run["optimizer_steps"], run["wall_time_s"])


#: training crops the rate model of a fine-tune for rate is first fitted on (:func:`_fit_rate_model`)
RATE_MODEL_CROPS = 512


def _training_crops(train_ds, count: int) -> np.ndarray:
    """The first ``count`` training crops (model inputs, numpy) the run's data pipeline gives."""
    crops, seen = [], 0
    for batch in itertools.islice(iter(train_ds), 10_000):
        x = np.asarray(keras.ops.convert_to_numpy(batch[0] if isinstance(batch, (tuple, list)) else batch))
        crops.append(x)
        seen += len(x)
        if seen >= count:
            break
    return np.concatenate(crops)[:count]


def _fit_rate_model(model, train_ds) -> None:
    """A trained autoencoder fine-tuned for rate: fit its fresh latent density to the latents of some training crops
    first (``ConvAutoencoder.fit_latent_density``), so the fine-tune starts at an honest rate."""
    crops = _training_crops(train_ds, RATE_MODEL_CROPS)
    before, after = model.fit_latent_density(crops)
    log.info("rate model fitted to the latents of %d training crops: %.3f -> %.3f estimated bits per pixel",
             len(crops), before, after)


#: the layers between which a residual autoencoder's latent lies: the encoder's head, the decoder's first conv
LATENT_HEAD, LATENT_INPUT = "head0", "in_conv"
#: training crops whose latents choose a narrowed latent's directions (:func:`_narrow_latent`)
NARROWING_CROPS = 512
#: where a run keeps how its latent was narrowed, for the preset of a resumed or finished run
NARROWING_FILE = "latent_narrowed.json"


def _narrowing_source(model):
    """The wider model whose latent :func:`_narrow_latent` projects, while that is still to do (else None)."""
    pending = getattr(model, "_narrowing", None)
    return pending.source if pending is not None else None


def _forget_narrowing_source(model, out: pathlib.Path) -> None:
    """Drop the source model once the latent is set (or the run resumes, its weights coming from a file);
    the run directory's record of the narrowing goes back into ``initialized_from``."""
    object.__setattr__(model, "_narrowing", None)
    path = out / NARROWING_FILE
    if path.is_file() and getattr(model, "initialized_from", None) is not None:
        model.initialized_from = {**model.initialized_from, "latent_narrowed": json.loads(path.read_text())}


def _kernel_and_bias(layer) -> tuple[np.ndarray, np.ndarray]:
    return (keras.ops.convert_to_numpy(layer.kernel).astype(np.float64),
            keras.ops.convert_to_numpy(layer.bias).astype(np.float64))


def _narrow_latent(model, train_ds, out: pathlib.Path) -> None:
    """A residual autoencoder started from one with a wider latent (``init_from``, fewer ``latent_channels``):
    its latent becomes the source latent's leading principal components on the run's training crops.

    The source's head is linear, so the narrowed head computes ``U^T (z - mean)`` exactly, and the
    decoder's first convolution reads ``mean + U t``: the source's decoder on the source latent
    projected onto its ``k`` main directions (up to the zero padding at the border). What the
    projection drops, the fine-tune has to learn to do without; nothing starts from random weights.
    The record (variance kept) goes into ``initialized_from`` and the run directory (:data:`NARROWING_FILE`).
    """
    source = _narrowing_source(model)
    crops = _training_crops(train_ds, NARROWING_CROPS)
    with warnings.catch_warnings():  # the run's own crops, at random scales: not the user's images to warn about
        warnings.simplefilter("ignore", DomainShiftWarning)
        latents = source.encode(crops, tile_size=None)
    latents = np.asarray(latents).reshape(-1, source.latent_channels).astype(np.float64)
    mean = latents.mean(axis=0)
    variances, directions = np.linalg.eigh(np.cov(latents - mean, rowvar=False))
    order = np.argsort(variances)[::-1][:model.latent_channels]
    basis, kept = directions[:, order], float(variances[order].sum() / max(variances.sum(), 1e-12))
    head, into = model.encoder.get_layer(LATENT_HEAD), model.decoder.get_layer(LATENT_INPUT)
    kernel, bias = _kernel_and_bias(source.encoder.get_layer(LATENT_HEAD))
    head.kernel.assign((kernel @ basis).astype(np.float32))
    head.bias.assign(((bias - mean) @ basis).astype(np.float32))
    kernel, bias = _kernel_and_bias(source.decoder.get_layer(LATENT_INPUT))
    into.kernel.assign(np.einsum("hwcf,ck->hwkf", kernel, basis).astype(np.float32))
    into.bias.assign((bias + np.einsum("hwcf,c->f", kernel, mean)).astype(np.float32))
    object.__setattr__(model, "_narrowing", None)
    record = {"from_channels": int(source.latent_channels), "to_channels": int(model.latent_channels),
              "variance_kept": round(kept, 4), "crops": len(crops),
              "how": "the source latent's leading principal components on the run's training crops"}
    model.initialized_from = {**model.initialized_from, "latent_narrowed": record}
    (out / NARROWING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    log.info("latent narrowed from %d to %d channels: the principal components keep %.1f%% of its variance on %d "
             "training crops", source.latent_channels, model.latent_channels, 100 * kept, len(crops))


def build_model(recipe: Recipe, spec: PreprocessSpec):
    """The recipe's model, for the spec's input shape, seeded by the recipe (a segmenter on its zoo encoder)."""
    if recipe.encoder is not None:
        from medzoo.zoo import load  # recipes sit above the zoo: they may load a trained encoder

        source = load(recipe.encoder, compile=False)
        own = {k: v for k, v in recipe.model.items() if k in ("classes", "frozen_levels", "decoder_filters",
                                                              "dice_weight")}  # the rest is the encoder's
        return FAMILIES[recipe.family].from_pretrained(source, **own, seed=recipe.seed)
    model = FAMILIES[recipe.family](**{**recipe.model, "input_shape": list(spec.output_shape), "seed": recipe.seed})
    if recipe.init_from is not None:
        _start_from(model, recipe.init_from)
    if recipe.inference_tile is not None:  # measured (and shipped) with the tiles its crops call for
        set_inference_tile(model, recipe.inference_tile)
    return model


def _start_from(model, source_name) -> None:
    """Copy trained weights into ``model`` (same architecture), or say what differs.

    ``source_name`` is a zoo model (name or preset path) or a finished run directory: a run
    continued as a later stage (its best weights), whose training record then stays in the chain.
    """
    source, record = _starting_point(source_name)
    widened, narrowed = _widening(model, source), _narrowing(model, source)
    ours, theirs = model.weights[:len(source.weights)] if widened else model.weights, source.weights
    mismatch = [(a.path, tuple(a.shape), tuple(b.shape)) for a, b in zip(ours, theirs)
                if tuple(a.shape) != tuple(b.shape) and not (widened and _fits_inside(b.shape, a.shape))
                and not (narrowed and _fits_inside(a.shape, b.shape))]
    if len(ours) != len(theirs) or mismatch:
        detail = f"first difference: {mismatch[0]}" if mismatch else f"{len(ours)} weights against {len(theirs)}"
        raise ConfigError(f"init_from={source_name!r} is not the recipe's architecture ({detail})")
    # the recipe's settings that live in variables (a VAE's KL weight) stay the recipe's: a stage
    # that changes beta must train with the new beta, not silently with its source's
    settings = {id(getattr(model, "beta"))} if hasattr(model, "initial_beta") else set()
    for var, value in zip(ours, source.get_weights()):
        if id(var) not in settings and tuple(var.shape) == value.shape:
            var.assign(value)
        elif id(var) not in settings and widened:
            var.assign(_widened_value(var, value))
    # a narrower latent's head and first decoder conv keep their initial weights until the training crops
    # are at hand (_narrow_latent); the source waits beside the model where Keras saving, which walks a
    # model's attributes for layers, does not see it
    object.__setattr__(model, "_narrowing", types.SimpleNamespace(source=source) if narrowed else None)
    model.initialized_from = record  # so the fine-tune's gain (and the whole training) can be read off
    changed = _objective_changes(source, model)
    if changed:
        log.warning("init_from=%s was trained with %s; this run trains with %s. To keep its objective, pass "
                    "--set 'model=%s' (a new objective at a high learning rate can undo much of its training)",
                    source_name, ", ".join(f"{k}={a!r}" for k, (a, _) in changed.items()),
                    ", ".join(f"{k}={b!r}" for k, (_, b) in changed.items()),
                    json.dumps({k: a for k, (a, _) in changed.items()}))


#: the config keys that make two models the same network apart from the width of their latent
ARCHITECTURE = ("input_shape", "filters", "depth", "architecture", "blocks_per_level", "attention", "normalization",
                "activation", "output_activation", "latent_dim")


def _latent_width_change(model, source) -> int:
    """How many more ``latent_channels`` ``model`` has than ``source`` (negative: fewer) when both are the same
    network otherwise (:data:`ARCHITECTURE`); 0 when they differ elsewhere or either latent is not spatial."""
    ours, theirs = model.get_config(), source.get_config()
    if type(model) is not type(source) or not isinstance(ours.get("latent_channels"), int) or \
            not isinstance(theirs.get("latent_channels"), int) or any(ours.get(k) != theirs.get(k)
                                                                     for k in ARCHITECTURE):
        return 0
    return ours["latent_channels"] - theirs["latent_channels"]


def _widening(model, source) -> bool:
    """Whether ``model`` is ``source`` with a wider latent (more ``latent_channels``, and perhaps a rate model):
    everything else in their configs the same, the source's weights first in the model's."""
    return _latent_width_change(model, source) > 0 and len(model.weights) >= len(source.weights)


def _narrowing(model, source) -> bool:
    """Whether ``model`` is the residual autoencoder ``source`` with a narrower latent (fewer ``latent_channels``),
    everything else in their configs the same: :func:`_narrow_latent` projects the source's latent."""
    if _latent_width_change(model, source) >= 0 or model.get_config().get("architecture") != "residual" or \
            getattr(model, "rate_steps", None) or len(model.weights) != len(source.weights):
        return False
    try:
        model.encoder.get_layer(LATENT_HEAD), model.decoder.get_layer(LATENT_INPUT)
    except (AttributeError, ValueError):
        return False
    return True


def _fits_inside(small, large) -> bool:
    return len(small) == len(large) and all(a <= b for a, b in zip(small, large))


def _widened_value(var, value: np.ndarray) -> np.ndarray:
    """A trained weight inside a widened one: the trained values in the leading slice; the new latent channels
    get their initial weights as outputs (kernel's last axis, bias) and zeros as inputs (a kernel's input axis),
    so the widened model starts as the source's function, its decoder ignoring the new channels."""
    out = np.array(keras.ops.convert_to_numpy(var), dtype=value.dtype)
    if out.ndim >= 2 and out.shape[-2] > value.shape[-2]:
        out[..., value.shape[-2]:, :] = 0.0
    out[tuple(slice(0, n) for n in value.shape)] = value
    return out


#: the settings of a model's training objective (not its architecture), compared by _start_from
OBJECTIVE = ("reconstruction_loss", "ssim_weight", "beta", "noise", "noise_strength", "sparsity", "rate_steps",
             "rate_weight")


def _objective_changes(source, model) -> dict:
    """``{setting: (source's, model's)}`` for each training-objective setting the two models set differently."""
    theirs, ours = source.get_config(), model.get_config()
    changed = {k: (theirs[k], ours[k]) for k in OBJECTIVE if k in theirs and k in ours and theirs[k] != ours[k]}
    if theirs.get("noise") == ours.get("noise") == "none":
        changed.pop("noise_strength", None)  # a strength means nothing without noise
    return changed


def _starting_point(source_name):
    """The model that ``init_from`` names and the record of how it was trained."""
    from medzoo.zoo import load
    from medzoo.zoo.identity import training_info

    run_dir = pathlib.Path(str(source_name))
    if (run_dir / RUN_FILE).is_file() and (run_dir / RECIPE_FILE).is_file():
        weights = "best" if (run_dir / "best.weights.h5").is_file() else "final"
        source, recipe, _, run = _reload_trained_run(run_dir, weights)
        training = {"recipe": recipe.name, "epochs": run["epochs"], "optimizer_steps": run.get("optimizer_steps"),
                    "batch_size_per_replica": recipe.batch_size, "crop_size": recipe.crop_size,
                    "learning_rate": recipe.learning_rate, "wall_time_s": run["wall_time_s"],
                    "hardware": run["hardware"], "backend": run.get("backend")}
        if getattr(source, "initialized_from", None):
            training["initialized_from"] = source.initialized_from
        return source, {"model": f"{recipe.name} (earlier stage: the {weights} weights of run {run_dir.name})",
                        "version": None, "training": training, "metrics": None}
    source = load(source_name, compile=False)
    metadata = getattr(source, "zoo_metadata", None) or {}
    return source, {"model": metadata.get("name", str(source_name)), "version": metadata.get("version"),
                    "training": training_info(source), "metrics": metadata.get("metrics")}


def learning_rate_schedule(recipe: Recipe, steps_per_epoch: int):
    """Cosine decay to zero over the run, after ``warmup_steps`` of linear warm-up."""
    total = max(1, steps_per_epoch * recipe.epochs)
    if not recipe.warmup_steps:
        return keras.optimizers.schedules.CosineDecay(recipe.learning_rate, total)
    warmup = min(recipe.warmup_steps, total // 2)
    return keras.optimizers.schedules.CosineDecay(0.0, max(1, total - warmup), warmup_target=recipe.learning_rate,
                                                  warmup_steps=warmup)


# ----------------------------------------------------------------------- data
def load_split(recipe: Recipe, split: str):
    """One split as ``(images, masks)``, each read once: arrays, or lists of arrays for a mixture of
    datasets; masks only for a segmenter recipe (else None), aligned with the images."""
    pairs = [_kept(recipe, name, split, read_split(name, split),
                   load_masks(name, split) if recipe.family == "segmenter" else None) for name in recipe.datasets]
    images, masks = [i for i, _ in pairs], [m for _, m in pairs]
    if not isinstance(recipe.dataset, list):
        return images[0], masks[0]
    return images, (masks if recipe.family == "segmenter" else None)


def load_images(recipe: Recipe, split: str):
    """One split's images: an array, or a list of arrays for a mixture of datasets."""
    images = [_load_one(recipe, name, split) for name in recipe.datasets]
    return images if isinstance(recipe.dataset, list) else images[0]


def _load_one(recipe: Recipe, dataset: str, split: str) -> np.ndarray:
    return _kept(recipe, dataset, split, read_split(dataset, split))[0]


def read_split(dataset: str, split: str):
    """``(images, labels)`` of one split of an npz or a folder dataset (images stacked when they share a size,
    else a list; a folder's labels are its table's, not class ids, so None here)."""
    if is_folder_dataset(dataset):
        return stack_if_uniform(load_dataset(dataset, split)[0]), None
    return load_npz(dataset, split)


def _kept(recipe: Recipe, dataset: str, split: str, loaded, masks=None):
    """``(images, masks)`` after the recipe's class filter, ``max_images`` and (train) ``max_train_images`` and
    ``label_fraction``."""
    images, labels = loaded
    keep = _kept_indices(recipe, dataset, split, labels, len(images))
    if isinstance(images, list):
        return [images[i] for i in keep], None
    if masks is not None:
        masks = check_masks(masks[keep], images[keep], getattr(recipe, "model", {}).get("classes", 1))
    return images[keep], masks


def _kept_indices(recipe: Recipe, dataset: str, split: str, labels, count: int) -> np.ndarray:
    """Which of a split's ``count`` images the recipe uses (sorted indices)."""
    keep = np.arange(count)
    if recipe.classes is not None:
        if labels is None:
            raise ConfigError(f"recipe {recipe.name!r} keeps classes {recipe.classes}, but {dataset} has no labels")
        keep = keep[np.isin(labels, recipe.classes)]
    limit = recipe.max_images
    if split == "train" and recipe.max_train_images is not None:
        limit = recipe.max_train_images if limit is None else min(limit, recipe.max_train_images)
    if split == "train" and recipe.label_fraction < 1.0:
        limit = max(1, round(len(keep) * recipe.label_fraction)) if limit is None else \
            max(1, round(min(limit, len(keep)) * recipe.label_fraction))
    if limit is not None and len(keep) > limit:
        # the npz files are sorted by label: subsample at random, not from the head
        keep = np.sort(keep[np.random.default_rng(recipe.seed).permutation(len(keep))[:limit]])
    return keep


def _has_split(recipe: Recipe, split: str) -> bool:
    try:
        for name in recipe.datasets:
            read_split(name, split)
    except DataError:
        return False
    return True


def _count(images) -> str:
    return " + ".join(str(len(x)) for x in images) if isinstance(images, list) else str(len(images))


def validation_tiles(recipe: Recipe, spec: PreprocessSpec, images):
    """Validation images as the model will be measured: with ``recipe.inference_tile``, each image that
    inference tiles (more than four tiles' pixels) is normalised whole, then cut into a grid of tiles
    covering it (the last row and column flush with its border), so ``val_loss`` sees the statistics
    the tiles give and best-checkpoint selection matches the shipped model; smaller images stay whole.

    Returns:
        ``(images, spec)``: the raw images and ``spec`` unchanged without an inference tile; else the
        preprocessed tiles and images, and a spec that passes them through unchanged.
    """
    if recipe.inference_tile is None:
        return images, spec
    tile = int(recipe.inference_tile[0])
    sources = images if isinstance(recipe.dataset, list) else [images]
    tiled = []
    for source in sources:
        pieces = []
        for raw in (source if isinstance(source, list) else list(source)):
            x = np.asarray(spec.apply(np.asarray(raw)[None]), np.float32)[0]  # normalised as a whole image
            h, w = x.shape[:2]
            if h * w <= 4 * tile * tile or min(h, w) < tile:
                pieces.append(x)
                continue
            pieces += [x[top:top + tile, left:left + tile] for top in tile_starts(h, tile, 0)
                       for left in tile_starts(w, tile, 0)]
        tiled.append(stack_if_uniform(pieces))
    passthrough = PreprocessSpec(size=None, channels=spec.channels, normalize="fixed",
                                 input_range=spec.value_range, value_range=spec.value_range)
    return (tiled if isinstance(recipe.dataset, list) else tiled[0]), passthrough


#: whole-image validation batches hold at most this many pixels: one 1024 px radiograph, 64 thumbnails of 128 px
VALIDATION_BATCH_PIXELS = 1024 * 1024


def _pipeline(images, spec, global_batch, recipe, *, training, deterministic, backend, masks=None, workers=1):
    """``(dataset, steps per epoch)``: ``tf.data`` under TensorFlow (one plain dataset), numpy batches otherwise.

    Mixtures, several crops per image and masks (cropped with their images) take the numpy
    batches on every backend.
    """
    crop = recipe.crop_size if training else None
    mixture = isinstance(recipe.dataset, list)
    if not mixture and isinstance(images, list):  # one dataset of images of several sizes: one source
        images = [images]
    if backend != "tensorflow" or mixture or masks is not None or recipe.crops_per_image != 1 or \
            recipe.min_side is not None or isinstance(images, list):
        batch = global_batch if training or not (mixture or masks is not None) else max(1, global_batch // 4)
        ds = from_arrays(images, spec, labels=masks, batch_size=batch, shuffle=training, seed=recipe.seed,
                         drop_remainder=training, crop_size=crop, repeats=recipe.crops_per_image if training else 1,
                         # shares are for training; validation sees every image once (a share would repeat
                         # the small native sets' 1024 px images, 367 of them for 26)
                         weights=(recipe.dataset_weights or "balanced") if mixture and training else None,
                         min_side=recipe.min_side if training else None,
                         max_batch_pixels=None if training else VALIDATION_BATCH_PIXELS, pipeline="numpy",
                         workers=workers)
        if training and recipe.augment.get("translate"):
            raise ConfigError(f"recipe {recipe.name!r}: the translate augmentation runs in tf.data (TensorFlow "
                              "backend); any-size recipes train on random crops instead")
        if len(ds) < 1:
            raise ConfigError(f"{ds.samples_per_epoch} training images are fewer than one global batch of "
                              f"{global_batch}")
        if backend == "tensorflow" and crop is None and len({image.shape for x in ds.images for image in
                                                             (x if isinstance(x, list) else x[:1])}) > 1:
            return ds.as_tf_dataset(), len(ds)  # whole images of several sizes: shapes Keras cannot infer
        return ds, len(ds)
    import tensorflow as tf

    if training and workers > 1:
        log.info("data_workers=%d: this run feeds tf.data, which maps in parallel itself (AUTOTUNE); the threads "
                 "apply to numpy batches (JAX, PyTorch, mixtures, several crops per image)", workers)
    steps = len(images) // global_batch if training else math.ceil(len(images) / global_batch)
    if steps < 1:
        raise ConfigError(f"{len(images)} training images are fewer than one global batch of {global_batch}")
    ds = from_arrays(images, spec, batch_size=global_batch, shuffle=training, seed=recipe.seed,
                     drop_remainder=training, crop_size=crop, pipeline="tf")
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))  # lets Keras show epoch progress
    shift = recipe.augment.get("translate", 0.0)
    if training and shift:
        layer = keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=recipe.seed)
        ds = ds.map(lambda x: layer(x, training=True), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # the data is an in-memory array, not files: each worker takes its share of every batch
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    if deterministic:
        options.deterministic = True
    return ds.with_options(options), steps


# ------------------------------------------------------------- time budget
class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def _epochs_for_budget(recipe, spec, train_ds, val_ds, steps_per_epoch, budget, spent, scope) -> int:
    """How many epochs fit in ``budget`` seconds, measured with a throwaway copy of the model.

    The copy trains a few steps (the first ones pay for compilation, which the real
    model pays again) and runs one validation pass; the real run then gets the epochs
    that fit in what is left, keeping a margin for checkpoints and the final writes.
    ``scope`` returns a fresh strategy scope (one cannot be entered twice).
    """
    probe_steps = min(30, steps_per_epoch)  # a finite tf.data epoch holds no more
    with scope():
        probe = build_model(recipe, spec)
        probe.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate))
    timer = _StepTimer()
    t0 = time.perf_counter()
    probe.fit(train_ds, epochs=1, steps_per_epoch=probe_steps, verbose=0, callbacks=[timer], shuffle=False)
    compile_s = timer.times[0] - t0
    step_s = float(np.median(np.diff(timer.times[1:]))) if len(timer.times) > 2 else compile_s
    probe.evaluate(val_ds, verbose=0)
    t1 = time.perf_counter()
    probe.evaluate(val_ds, verbose=0)
    val_s = time.perf_counter() - t1
    epoch_s = steps_per_epoch * step_s + val_s + 0.5  # + checkpoint and log writes
    left = budget - spent - (time.perf_counter() - t0) - compile_s - 2 * val_s - 10.0
    # 10% spare: runs that share a machine measure while the others still compile
    epochs = max(1, int(0.9 * left // epoch_s))
    log.info("time budget %.0f s: %.1f ms per step, %.1f s per validation pass, compile %.1f s -> %d epochs of %d "
             "steps (%.0f s each)", budget, 1e3 * step_s, val_s, compile_s, epochs, steps_per_epoch, epoch_s)
    del probe
    return epochs


class _StopRequest(keras.callbacks.Callback):
    """End the run cleanly after the epoch in which a ``STOP`` file appeared in the run directory.

    For a stage that must end before its machine does: the run then finishes as if that epoch
    were its last (final weights, ``run.json``, the preset), which killing it would not do.
    The preset's metadata then shows the epochs run beside ``epochs_configured``.
    """

    def __init__(self, path: pathlib.Path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        if self.path.exists():
            log.warning("%s: stopping after epoch %d of %d, as asked", self.path, epoch + 1,
                        self.params.get("epochs", 0))
            self.path.unlink()
            self.model.stop_training = True


def _end_at_last_epoch(model, out: pathlib.Path, completed: int, configured: int):
    """A stop request found when a killed run resumes: take the weights of its last completed epoch (the
    backup's) and end there, without training further; returns an empty history."""
    log.warning("%s: ending the run at its last completed epoch, %d of %d, as asked", out / STOP_FILE, completed,
                configured)
    model.optimizer.build(model.trainable_variables)  # as after fit: the checkpoints hold its state too
    model.load_weights(out / "backup" / "latest.weights.h5")
    (out / STOP_FILE).unlink()
    shutil.rmtree(out / "backup")
    return types.SimpleNamespace(history={})


class _Deadline(keras.callbacks.Callback):
    """Stop after the epoch that the budget's end would cut short (the schedule is then nearly at zero)."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline
        self.epoch_started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        if now + (now - self.epoch_started) > self.deadline:
            log.warning("time budget: stopping after epoch %d of %d", epoch + 1, self.params.get("epochs", 0))
            self.model.stop_training = True


# ------------------------------------------------------------------ callbacks
def _callbacks(recipe: Recipe, out: pathlib.Path, model, *, resume: bool) -> list:
    best_so_far = _best_logged(out / "log.csv") if resume else None
    cbs = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(str(out / "best.weights.h5"), monitor="val_loss", save_best_only=True,
                                        save_weights_only=True, initial_value_threshold=best_so_far),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=resume),
    ]
    if keras_backend() == "tensorflow":  # its summary writer is TensorFlow's (and would take a JAX process's GPU)
        cbs.append(keras.callbacks.TensorBoard(str(out / "tensorboard"), profile_batch=0))
    if recipe.early_stopping_patience:
        cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=recipe.early_stopping_patience))
    if recipe.kl_warmup_epochs and recipe.family == "vae":
        cbs.insert(0, KLWarmup(recipe.kl_warmup_epochs))  # first, so the logged beta is this epoch's
    return cbs


def _backup(out: pathlib.Path):
    """Last in the callback list: an epoch counts as done only once its log row and best checkpoint exist.

    ``double_checkpoint`` keeps the previous state if a kill lands mid-write.
    """
    return keras.callbacks.BackupAndRestore(str(out / "backup"), save_freq="epoch", double_checkpoint=True)


def _completed_epochs(backup_dir: pathlib.Path) -> int:
    meta = backup_dir / "training_metadata.json"
    return int(json.loads(meta.read_text())["epoch"]) if meta.exists() else 0


def _log_rows(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _logged_epochs(path: pathlib.Path) -> int:
    return len({int(row["epoch"]) for row in _log_rows(path)})


def _best_logged(path: pathlib.Path):
    losses = [float(r["val_loss"]) for r in _log_rows(path) if r.get("val_loss")]
    return min(losses) if losses else None


def _previous_wall_time(out: pathlib.Path) -> float:
    path = out / "wall_time.json"
    return float(json.loads(path.read_text())["seconds"]) if (out / "backup").exists() and path.exists() else 0.0


class _WallClock(keras.callbacks.Callback):
    """Training time summed over resumes: written after every epoch, so a killed run keeps what it spent."""

    def __init__(self, out: pathlib.Path):
        super().__init__()
        self.path = out / "wall_time.json"
        self.previous = _previous_wall_time(out)
        self.started = time.time()

    def seconds(self) -> float:
        return self.previous + time.time() - self.started

    def on_epoch_end(self, epoch, logs=None):
        self.path.write_text(json.dumps({"seconds": self.seconds()}))


def _version_after(model, recipe: Recipe) -> str:
    """The next minor version after the zoo's entry of the recipe's name (or that name's last version, if it was
    retired) and after the model of that name this run fine-tuned (whichever is later), else 1.0.0: new weights
    of a zoo model never reuse or go below its version, even when a stage chain started from another model."""
    from medzoo.zoo.manifest import read_manifest

    source = getattr(model, "initialized_from", None) or {}
    manifest = read_manifest()
    versions = [entry["version"] for entry in manifest["models"] if entry["name"] == recipe.name] + \
        [record["last_version"] for record in manifest.get("retired", []) if record["name"] == recipe.name]
    if source.get("model") == recipe.name and source.get("version"):
        versions.append(source["version"])
    if not versions:
        return "1.0.0"
    major, minor, _ = max(tuple(int(v) for v in version.split(".")) for version in versions)
    return f"{major}.{minor + 1}.0"


def _round_to_float16(model) -> None:
    for var in model.weights:
        if var.dtype == "float32":
            var.assign(np.asarray(keras.ops.convert_to_numpy(var), np.float16).astype(np.float32))


# -------------------------------------------------------------------- metrics
def _measure_and_write(model, recipe, spec, out, run, *, write):
    """Test metrics (on the stored weights: float16 rounding first) and, with ``write``, the preset."""
    if recipe.weights_dtype == "float16":
        _round_to_float16(model)  # measure exactly what the preset ships
    if recipe.family == "codec" and not getattr(model, "zoo_metadata", None):
        # a codec's streams name the preset in their header: measure them as they will be shipped
        model.zoo_metadata = {"name": recipe.name, "version": _version_after(model, recipe)}
    names = recipe.datasets
    vals = [_load_one(recipe, name, "val") for name in names]
    if recipe.family == "segmenter":
        images, masks = load_split(recipe, "test")
        if isinstance(masks, list):  # a mixture: measured on its first dataset
            images, masks = images[0], masks[0]
        measured = load_pixel_spacing(names[0], "test", side=images.shape[1])  # per image (HC18) or None
        if measured is not None:
            keep = _kept_indices(recipe, names[0], "test", load_npz(names[0], "test")[1], len(measured[0]))
            measured = (measured[0][keep], measured[1][keep])
        stated = recipe.provenance.get("pixel_spacing_mm")  # a number, None, or words ("per image ...")
        spacing = measured[0] if measured is not None else (stated if isinstance(stated, (int, float)) else None)
        metrics = segmentation_metrics(model, images, masks, spec, spacing,
                                       reference_hc_mm=None if measured is None else measured[1])
    elif len(names) == 1:
        metrics = test_metrics(model, _load_one(recipe, names[0], "test"), vals[0], spec)
    else:
        tests = [_load_one(recipe, name, "test") for name in names]
        # a codec's real streams per level on its first dataset alone: rates do not average, and
        # coding a large thumbnail set at every level costs most of a codec's finish
        per = {name: test_metrics(model, t, v, spec, qualities=i == 0)
               for i, (name, t, v) in enumerate(zip(names, tests, vals))}
        keys = [k for k in per[names[0]] if k != "test_images" and isinstance(per[names[0]][k], float)]
        # the headline figures are the mean of the datasets' means (each dataset counts once, whatever
        # its size); every leaf is a number, as the manifest requires
        metrics = {"test_images": sum(m["test_images"] for m in per.values()),
                   **{k: round(float(np.mean([m[k] for m in per.values()])), 5) for k in keys}, "per_dataset": per}
        if "qualities" in per[names[0]]:  # a codec's levels: on its first dataset (rates do not average)
            metrics["qualities"] = per[names[0]]["qualities"]
    log.info("test metrics of %s: %s", recipe.name, metrics)
    preset_dir = None
    if write:
        train_images = [_load_one(recipe, name, "train") for name in names]
        preset_dir = _write_preset(model, recipe, spec, out / "preset", metrics, run, train_images, vals)
    return metrics, preset_dir


def segmentation_metrics(model, images, masks, spec, spacing_mm=None, *, reference_hc_mm=None) -> dict:
    """Test-set figures of a segmenter: mean Dice, IoU and HD95 per image.

    ``spacing_mm``: mm per pixel, one number or one per image (then HD95 is also in mm);
    ``reference_hc_mm``: each image's reference head circumference (HC18), for the mean
    absolute error of the circumference of the ellipse fitted to each predicted mask.
    """
    if len(images) == 0:
        raise DataError("the test split is empty: nothing to measure the segmenter on")
    predicted = model.segment(np.asarray(spec.apply(images)))
    metrics = {"test_images": int(len(images)), "dice": float(dice(masks, predicted).mean()),
               "iou": float(iou(masks, predicted).mean())}
    distances = hd95(masks, predicted)
    metrics["hd95_px"] = float(np.nanmean(distances)) if np.isfinite(distances).any() else float("nan")
    metrics["missed_or_spurious"] = int(np.isnan(distances).sum())  # one mask empty, the other not
    if spacing_mm is not None:
        in_mm = hd95(masks, predicted, spacing_mm)
        metrics["hd95_mm"] = float(np.nanmean(in_mm)) if np.isfinite(in_mm).any() else float("nan")
    if reference_hc_mm is not None:
        errors = np.abs(ellipse_circumference(predicted, spacing_mm) - np.asarray(reference_hc_mm))
        metrics["hc_error_mm"] = float(np.nanmean(errors))  # HC18's measure (empty predictions left out)
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}


def test_metrics(model, test_images, val_images, spec, *, qualities: bool = True) -> dict:
    """Test-set figures for the manifest: PSNR, SSIM, MAE, plus family-specific ones.

    Continuous latents: the PSNR / SSIM of the bicubic thumbnail that keeps as many
    numbers as the latent (the baseline a latent must beat). VAE: negative ELBO in bits
    per dimension under a discretized Gaussian decoder whose scale is chosen on the
    validation split. VQ-VAE: perplexity and codebook usage of the test code maps, and
    the raw code size in bits per pixel. Denoising autoencoder: PSNR of its output and
    of the noisy input at its training noise. A codec: real streams per quality level
    (``qualities``; ``qualities=False`` leaves them out).
    """
    x = np.asarray(spec.apply(test_images))
    batch = batch_for(x)  # bounded memory: at most four 1024 px radiographs at once
    rec = np.concatenate([model.reconstruct(x[i:i + batch], batch_size=batch) for i in range(0, len(x), batch)])
    metrics = {"test_images": int(len(x)), "psnr": float(psnr(x, rec).mean()), "ssim": float(ssim(x, rec).mean()),
               "mae": float(mae(x, rec).mean())}
    if spec.units == "HU":  # CT: the error a radiologist reads, in Hounsfield units
        metrics["mae_hu"] = float(mae(x, rec).mean() * spec.units_per_value)
        metrics["rmse_hu"] = float(rmse(x, rec).mean() * spec.units_per_value)
    if hasattr(model, "rate_distortion") or getattr(model, "codec_levels", None):
        # a codec (a hyperprior, or an autoencoder trained for rate): real streams per quality level
        from medzoo.codec.qualities import quality_table

        if qualities:  # the manifest's metrics hold no lists
            metrics["qualities"] = {str(row["quality"]): {k: round(v, 5) for k, v in row.items() if k != "quality"}
                                    for row in quality_table(model, x)}
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}
    z = model.encode(x[:1])
    if not np.issubdtype(z.dtype, np.integer):
        thumb, _ = bicubic_thumbnail(x, int(np.prod(z.shape[1:])), spec.value_range)
        metrics["thumbnail_psnr"] = float(psnr(x, thumb).mean())
        metrics["thumbnail_ssim"] = float(ssim(x, thumb).mean())
    if hasattr(model, "encode_distribution"):
        sigma = fit_vae_sigma(model, np.asarray(spec.apply(val_images))[:256])
        metrics["nelbo_bits_per_dim"] = float(vae_negative_elbo_bits(model, x, sigma).mean())
        metrics["decoder_sigma"] = sigma
    if hasattr(model, "quantizer"):
        codes = np.concatenate([model.encode(x[i:i + batch], batch_size=batch) for i in range(0, len(x), batch)])
        counts = np.bincount(codes.ravel(), minlength=model.num_embeddings)
        p = counts[counts > 0] / counts.sum()
        metrics["perplexity"] = float(np.exp(-(p * np.log(p)).sum()))
        metrics["codebook_usage"] = float((counts > 0).mean())
        metrics["raw_bits_per_pixel"] = float(codes[0].size * math.log2(model.num_embeddings) / np.prod(x.shape[1:3]))
    if getattr(model, "noise", "none") != "none":
        noisy = keras.ops.convert_to_numpy(model.add_noise(x, seed=1234))  # noise only: no network, no batches
        denoised = np.concatenate([model.reconstruct(noisy[i:i + batch], batch_size=batch)
                                   for i in range(0, len(x), batch)])
        metrics["noisy_input_psnr"] = float(psnr(x, noisy).mean())
        metrics["denoised_psnr"] = float(psnr(x, denoised).mean())
        metrics["denoised_ssim"] = float(ssim(x, denoised).mean())
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}


# --------------------------------------------------------------------- preset
def training_resolution(recipe: Recipe, spec, train_images) -> dict:
    """The image sizes an any-size model saw in training, for the out-of-range warning at inference.

    ``image_side``: the shortest and longest sides of the preprocessed training images;
    ``pixel_spacing_mm``: their pixel spacing where the dataset states one (else None);
    ``scales`` (crops at random scales, ``min_side``): ``{"min_side", "crop_size"}``, each crop
    area-averaged from native size down to its image shrunk to ``min_side``, so the model also saw
    anatomy as in images of ``min_side`` pixels (the size warning counts them).
    """
    if train_images is None:
        train_images = [_load_one(recipe, name, "train") for name in recipe.datasets]
    # one source per dataset: an array of one size, or a folder's list of images of several sizes
    shapes = [image.shape[:2] if isinstance(source, list) else np.shape(source)[1:3]
              for source in train_images for image in (source if isinstance(source, list) else [None])]
    sides = [side for shape in shapes for side in shrunk_size(*shape, spec.max_side)]
    spacing = [recipe.provenance.get("pixel_spacing_mm")] if len(recipe.datasets) == 1 else \
        [c.get("pixel_spacing_mm") for c in recipe.provenance["components"]]
    spacing = [s for s in spacing if s is not None]
    resolution = {"image_side": [int(min(sides)), int(max(sides))],
                  "pixel_spacing_mm": spacing[0] if len(spacing) == 1 else (spacing or None)}
    if recipe.min_side is not None:
        resolution["scales"] = {"min_side": int(recipe.min_side), "crop_size": int(recipe.crop_size)}
    return resolution


def _trained_on(recipe: Recipe) -> str:
    """One line for the model card: crops, their scales and the datasets' shares."""
    if len(recipe.datasets) == 1:
        mix = ""
    elif recipe.dataset_weights is None:
        mix = " (the datasets in equal shares)"
    else:
        total = float(sum(recipe.dataset_weights))
        mix = " (shares " + ", ".join(f"{name} {w / total:.0%}" for name, w in
                                      zip(recipe.datasets, recipe.dataset_weights)) + ")"
    scales = "" if recipe.min_side is None else \
        f", each area-averaged at a random scale between native size and its image shrunk to {recipe.min_side} px"
    return (f"{recipe.crop_size} px random crops of the training images{mix}{scales}, "
            f"{recipe.crops_per_image} per image per epoch")


def domain_profile(recipe: Recipe, spec, train_images, val_images, max_images: int = 2000):
    """The :class:`~medzoo.models.domain.DomainProfile` of a recipe's data: up to ``max_images`` training
    images (a random subset, the datasets in equal shares), the threshold from the validation split;
    None for quick runs on too few images to estimate it."""
    from medzoo.models.domain import STATISTICS, DomainProfile

    if sum(len(a) for a in train_images) <= 2 * len(STATISTICS) or not sum(len(a) for a in val_images):
        log.info("%s: too few images for a domain profile; the preset will not warn about unfamiliar images",
                 recipe.name)
        return None

    rng = np.random.default_rng(recipe.seed)
    share = max_images // len(train_images)
    train = [np.asarray(spec.apply(a if len(a) <= share else a[np.sort(rng.permutation(len(a))[:share])]))
             for a in train_images]
    val = [np.asarray(spec.apply(a)) for a in val_images]
    return DomainProfile.fit(train, val, fitted_on=", ".join(f"{name}:train" for name in recipe.datasets))


def latent_shapes(model, sides=(128, 256, 512, 1024, 4096)) -> dict:
    """An any-size model's latent shape per square input size, and the rule behind it."""
    f = model.downsample_factor
    channels = getattr(model, "latent_channels", None) or getattr(model, "embedding_dim", None) or \
        getattr(model, "m", None)
    rule = getattr(model, "latent_rule", f"ceil(H/{f}) x ceil(W/{f})")
    shapes = {"rule": rule + (f" x {channels}" if channels else "")}
    for side in sides:
        shapes[f"{side}x{side}"] = [*model.latent_size(side, side)] + ([channels] if channels else [])
    return shapes


def _write_preset(model, recipe, spec, directory, metrics, run, train_images, val_images):
    """Save the preset; a VQ-VAE's gets its entropy model, fitted on the training and validation images."""
    from medzoo.zoo.presets import save_preset  # the zoo writes presets; recipes only fill them in

    training = {
        "recipe": recipe.name,
        "dataset": recipe.provenance,
        # a run finished with its final weights selected nothing on the validation split
        "splits": {"train": "train", "metrics": "test",
                   "model_selection": "none: the last epoch's weights" if run.get("weights") == "final" else "val"},
        "classes": recipe.classes,
        "epochs": run["epochs"],
        "epochs_configured": recipe.epochs,
        "optimizer_steps": run.get("optimizer_steps"),
        "batch_size_per_replica": recipe.batch_size,
        "replicas": run.get("replicas", 1),
        "learning_rate": recipe.learning_rate,
        "wall_time_s": run["wall_time_s"],
        "hardware": run["hardware"],
        "backend": run.get("backend"),
        "seed": recipe.seed,
    }
    if run.get("time_budget_s"):
        training["time_budget_s"] = run["time_budget_s"]
    if recipe.max_train_images is not None:  # a subset that travelled to the training machine
        training["max_train_images"] = recipe.max_train_images
    if getattr(model, "initialized_from", None):
        training["initialized_from"] = model.initialized_from  # fine-tuned: the first run's record stays
    if getattr(model, "any_size", False):
        training["resolution"] = training_resolution(recipe, spec, train_images)
        if recipe.inference_tile is not None:
            training["tiling"] = {"tile": int(recipe.inference_tile[0]), "overlap": int(recipe.inference_tile[1])}
        profile = domain_profile(recipe, spec, train_images, val_images)
        if profile is not None:
            training["domain"] = profile.to_dict()
        training["crop_size"] = recipe.crop_size
        training["latent_shape"] = latent_shapes(model)
        training["trained_on"] = _trained_on(recipe)
    path = save_preset(model, directory, name=recipe.name, spec=spec, description=recipe.description,
                       training=training, metrics=metrics, licence="CC-BY-4.0",
                       weights_dtype=recipe.weights_dtype, version=_version_after(model, recipe))
    if recipe.family == "vqvae":
        from medzoo.codec.entropy import save_to_preset

        # the codec ships with the model: compress/decompress then need no data (fitted on the stored weights)
        em = save_to_preset(path, train_images=train_images[0], val_images=val_images[0],
                            info={"max_images": recipe.max_images} if recipe.max_images is not None else None)
        log.info("entropy model of %s: %s bits per code on val (context)", recipe.name,
                 round(em.info.get("val_bits_per_code", {}).get("context", float("nan")), 4))
    return path
