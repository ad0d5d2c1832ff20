"""``medzoo.train``: run a recipe under ``tf.distribute``, survive kills, end with a preset.

A run directory holds everything one training run writes::

    <output>/backup/           BackupAndRestore state (deleted when the run ends)
    <output>/best.weights.h5   the weights with the lowest val_loss so far
    <output>/log.csv           one row per epoch (appended to across resumes)
    <output>/tensorboard/      TensorBoard logs
    <output>/recipe.json       the resolved recipe
    <output>/preset/           the final preset (config, weights, metadata, model card; for a
                               VQ-VAE also entropy_model.npz, the codec's probability model of its
                               code maps, fitted on the training split)

A run killed at any point restarts with ``resume=True`` (``medzoo train ... --resume``)
from the last completed epoch, with weights, optimizer state (its step count
drives the learning-rate schedule) and random-generator state restored.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import pathlib
import time

import numpy as np
import keras
import tensorflow as tf

from medzoo.callbacks import KLWarmup
from medzoo.data import PreprocessSpec, from_arrays, load_npz
from medzoo.errors import ConfigError, MedzooError
from medzoo.evaluate.metrics import fit_vae_sigma, mae, psnr, ssim, vae_negative_elbo_bits
from medzoo.models import FAMILIES
from medzoo.recipes.catalog import get_recipe
from medzoo.recipes.distribute import chief, make_strategy, set_precision
from medzoo.recipes.recipe import Recipe

log = logging.getLogger(__name__)


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
    **overrides,
) -> TrainResult:
    """Train a zoo recipe (a name or a :class:`Recipe`) and write its preset.

    Args:
        recipe: recipe name (see ``medzoo.recipes.RECIPES``) or a :class:`Recipe`.
        output_dir: run directory (default ``runs/<recipe name>``).
        strategy: ``"auto"``, ``"cpu"``, ``"mirrored"`` or ``"multiworker"``
            (see :func:`medzoo.recipes.distribute.make_strategy`).
        precision: ``"float32"`` or ``"mixed"`` (float16 compute, GPUs only).
        resume: continue a run killed in ``output_dir``; without it an existing
            unfinished run there is an error rather than silently resumed.
        deterministic: seed everything and enable TensorFlow op determinism, so
            two runs give the same weights.
        verbose: Keras ``fit`` verbosity (progress bar by default).
        write_preset: write ``<output>/preset`` with the test-set metrics.
        callbacks: extra Keras callbacks.
        **overrides: recipe fields to replace, e.g. ``epochs=3`` or ``model={"filters": 8}``.
    """
    recipe = get_recipe(recipe).with_overrides(**overrides)
    out = pathlib.Path(output_dir or pathlib.Path("runs") / recipe.name)
    writer = chief()
    if not writer:  # non-chief workers of a cluster keep their state apart from the chief's
        out = out / f"worker-{json.loads(os.environ['TF_CONFIG'])['task']['index']}"
    backup_dir = out / "backup"
    if backup_dir.exists() and not resume:
        raise ConfigError(f"{out} holds an unfinished run; pass resume=True (--resume) or choose another output")
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")

    strategy = make_strategy(strategy)  # first: a multi-worker strategy must precede any other TF setup
    keras.utils.set_random_seed(recipe.seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = set_precision(precision)
    spec = PreprocessSpec.from_config(recipe.spec)
    splits = {s: _load_split(recipe, s) for s in ("train", "val", "test")}

    replicas = strategy.num_replicas_in_sync
    global_batch = recipe.batch_size * replicas
    steps_per_epoch = len(splits["train"]) // global_batch
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(splits['train'])} training images are fewer than one global batch of {global_batch}")
    train_ds = _pipeline(splits["train"], spec, global_batch, recipe, training=True, deterministic=deterministic)
    val_ds = _pipeline(splits["val"], spec, global_batch, recipe, training=False, deterministic=deterministic)

    with strategy.scope():
        model = FAMILIES[recipe.family](**{**recipe.model, "input_shape": list(spec.output_shape),
                                           "seed": recipe.seed})
        schedule = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, steps_per_epoch * recipe.epochs)
        model.compile(optimizer=keras.optimizers.Adam(schedule))

    initial_epoch = _completed_epochs(backup_dir)
    wall_clock = _WallClock(out)
    cbs = [wall_clock] + _callbacks(recipe, out, model, resume=resume and initial_epoch > 0) + list(callbacks) + [
        _backup(out)]
    log.info("training %s: %d params, %d train / %d val images, global batch %d on %d replica(s), policy %s",
             recipe.name, model.count_params(), len(splits["train"]), len(splits["val"]), global_batch,
             replicas, policy)
    history = model.fit(train_ds, validation_data=val_ds, epochs=recipe.epochs, callbacks=cbs, verbose=verbose,
                        shuffle=False)  # the dataset reshuffles itself each epoch
    wall = wall_clock.seconds()
    optimizer_steps = int(model.optimizer.iterations.numpy())  # before the best weights replace the state
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise MedzooError(f"training {recipe.name} diverged (loss {losses[-1]}); no preset written. "
                          "Lower learning_rate or check the data")
    (out / "wall_time.json").write_text(json.dumps({"seconds": wall}))

    best = out / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
    if recipe.weights_dtype == "float16":
        _round_to_float16(model)  # measure exactly what the preset ships
    epochs_completed = _logged_epochs(out / "log.csv")
    metrics = test_metrics(model, splits["test"], splits["val"], spec)
    log.info("test metrics of %s: %s", recipe.name, metrics)

    preset_dir = None
    if write_preset and writer:
        preset_dir = _write_preset(model, recipe, spec, out / "preset", metrics, epochs_completed, wall, replicas,
                                   entropy_data=(splits["train"], splits["val"]))
    return TrainResult(model, recipe, history.history, metrics, out, preset_dir, epochs_completed,
                       initial_epoch, optimizer_steps, wall)


# ----------------------------------------------------------------------- data
def _load_split(recipe: Recipe, split: str) -> np.ndarray:
    images, labels = load_npz(recipe.dataset, split)
    if recipe.classes is not None:
        images = images[np.isin(labels, recipe.classes)]
    if recipe.max_images is not None and len(images) > recipe.max_images:
        # the npz files are sorted by label: subsample at random, not from the head
        keep = np.random.default_rng(recipe.seed).permutation(len(images))[: recipe.max_images]
        images = images[np.sort(keep)]
    return images


def _pipeline(images, spec, global_batch, recipe, *, training, deterministic):
    ds = from_arrays(images, spec, batch_size=global_batch, shuffle=training, seed=recipe.seed,
                     drop_remainder=training, crop_size=recipe.crop_size if training else None)
    steps = len(images) // global_batch if training else math.ceil(len(images) / global_batch)
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
    return ds.with_options(options)


# ------------------------------------------------------------------ callbacks
def _callbacks(recipe: Recipe, out: pathlib.Path, model, *, resume: bool) -> list:
    best_so_far = _best_logged(out / "log.csv") if resume else None
    cbs = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(str(out / "best.weights.h5"), monitor="val_loss", save_best_only=True,
                                        save_weights_only=True, initial_value_threshold=best_so_far),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=resume),
        keras.callbacks.TensorBoard(str(out / "tensorboard"), profile_batch=0),
    ]
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


def _round_to_float16(model) -> None:
    for var in model.weights:
        if var.dtype == "float32":
            var.assign(np.asarray(var.numpy(), np.float16).astype(np.float32))


# -------------------------------------------------------------------- metrics
def test_metrics(model, test_images, val_images, spec) -> dict:
    """Test-set figures for the manifest: PSNR, SSIM, MAE, plus family-specific ones.

    VAE: negative ELBO in bits per dimension under a discretized Gaussian decoder
    whose scale is chosen on the validation split. VQ-VAE: perplexity and codebook
    usage of the test code maps, and the raw code size in bits per pixel.
    Denoising autoencoder: PSNR of its output and of the noisy input at its training noise.
    """
    x = np.asarray(spec.apply(test_images))
    rec = model.reconstruct(x)
    metrics = {"test_images": int(len(x)), "psnr": float(psnr(x, rec).mean()), "ssim": float(ssim(x, rec).mean()),
               "mae": float(mae(x, rec).mean())}
    if hasattr(model, "encode_distribution"):
        sigma = fit_vae_sigma(model, np.asarray(spec.apply(val_images))[:256])
        metrics["nelbo_bits_per_dim"] = float(vae_negative_elbo_bits(model, x, sigma).mean())
        metrics["decoder_sigma"] = sigma
    if hasattr(model, "quantizer"):
        codes = model.encode(x)
        counts = np.bincount(codes.ravel(), minlength=model.num_embeddings)
        p = counts[counts > 0] / counts.sum()
        metrics["perplexity"] = float(np.exp(-(p * np.log(p)).sum()))
        metrics["codebook_usage"] = float((counts > 0).mean())
        metrics["raw_bits_per_pixel"] = float(codes[0].size * math.log2(model.num_embeddings) / np.prod(x.shape[1:3]))
    if getattr(model, "noise", "none") != "none":
        noisy = model.add_noise(x, seed=1234).numpy()
        denoised = model.reconstruct(noisy)
        metrics["noisy_input_psnr"] = float(psnr(x, noisy).mean())
        metrics["denoised_psnr"] = float(psnr(x, denoised).mean())
        metrics["denoised_ssim"] = float(ssim(x, denoised).mean())
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}


# --------------------------------------------------------------------- preset
def hardware() -> str:
    """What trained the weights, in words: accelerators if any, else the CPU and its core count."""
    import platform

    devices = [d.device_type for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
    cpu = platform.processor() or platform.machine()
    return f"{', '.join(devices)} + " * bool(devices) + f"{os.cpu_count()} CPU cores ({cpu})"


def training_resolution(recipe: Recipe, spec, train_images) -> dict:
    """The image sizes an any-size model saw in training, for the out-of-range warning at inference.

    ``image_side``: the shortest and longest sides of the preprocessed training images;
    ``pixel_spacing_mm``: their pixel spacing where the dataset states one (else None).
    """
    if train_images is None:
        train_images = _load_split(recipe, "train")
    sides = np.asarray(train_images).shape[1:3]
    if spec.max_side:
        sides = [min(s, spec.max_side) for s in sides]
    return {"image_side": [int(min(sides)), int(max(sides))],
            "pixel_spacing_mm": recipe.provenance.get("pixel_spacing_mm")}


def _write_preset(model, recipe, spec, directory, metrics, epochs, wall, replicas, entropy_data=None):
    """Save the preset; a VQ-VAE's gets its entropy model, fitted on ``entropy_data`` (train, val images)."""
    from medzoo.zoo.presets import save_preset  # the zoo writes presets; recipes only fill them in

    training = {
        "recipe": recipe.name,
        "dataset": recipe.provenance,
        "splits": {"train": "train", "model_selection": "val", "metrics": "test"},
        "classes": recipe.classes,
        "epochs": epochs,
        "epochs_configured": recipe.epochs,
        "batch_size_per_replica": recipe.batch_size,
        "replicas": replicas,
        "learning_rate": recipe.learning_rate,
        "wall_time_s": round(wall, 1),
        "hardware": hardware(),
        "seed": recipe.seed,
    }
    if getattr(model, "any_size", False):
        training["resolution"] = training_resolution(recipe, spec, entropy_data[0] if entropy_data else None)
        training["crop_size"] = recipe.crop_size
    path = save_preset(model, directory, name=recipe.name, spec=spec, description=recipe.description,
                       training=training, metrics=metrics, licence="CC-BY-4.0",
                       weights_dtype=recipe.weights_dtype)
    if recipe.family == "vqvae" and entropy_data is not None:
        from medzoo.evaluate.entropy import save_to_preset

        # the codec ships with the model: compress/decompress then need no data (fitted on the stored weights)
        train, val = entropy_data
        em = save_to_preset(path, train_images=train, val_images=val,
                            info={"max_images": recipe.max_images} if recipe.max_images is not None else None)
        log.info("entropy model of %s: %s bits per code on val (context)", recipe.name,
                 round(em.info.get("val_bits_per_code", {}).get("context", float("nan")), 4))
    return path
