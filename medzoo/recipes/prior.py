"""Training a latent prior: encode a training set once, fit the flow on the cached latents, resume, write a preset.

A prior learns the distribution of a frozen zoo autoencoder's latents, so the images are
encoded once (``latents.npz`` in the run directory: 16x16x4 numbers for a 128 px image)
and every step after that costs only the prior's own network. A run directory::

    <output>/latents.npz          the training latents and label indices (the cache)
    <output>/checkpoint/          weights, their moving average (EMA), optimizer state, state.json
    <output>/log.csv              one row per epoch: loss, steps, wall time
    <output>/preset/              the preset, written from the averaged weights at the end

A killed run restarts from its last checkpoint with ``resume=True``; ``init_from`` starts
a new stage from an earlier stage's preset (the stage's steps and time add up in the metadata).
The weights shipped are the exponential moving average of the training weights, the
usual choice for diffusion and flow models (sharper, steadier samples than the last step's).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import pathlib
import time

import numpy as np

from medzoo.errors import ConfigError

log = logging.getLogger(__name__)

#: the labelled datasets a prior can be trained on: npz name -> (modality, class names or None)
PRIOR_DATASETS = {
    "kermany_pediatric_cxr_128": ("chest x-ray", ("normal", "pneumonia")),
    "brain_tumor_figshare_128": ("brain mri", ("meningioma", "glioma", "pituitary")),
    "busbra_256": ("breast ultrasound", ("benign", "malignant")),
    "hc18_256": ("fetal head ultrasound", None),
}


@dataclasses.dataclass(frozen=True)
class PriorRecipe:
    """What one prior preset is: its autoencoder, datasets, labels, network and training.

    ``labelling``: ``"class"`` (labels are a single dataset's class names) or
    ``"dataset/class"`` (a generalist: ``"modality/class"`` labels plus one label per
    modality, given instead of the class to a share ``modality_share`` of images, so the
    prior also draws "any brain MRI").

    ``mirrored``: datasets whose left-right mirror images are training images too (each image
    twice, with its label): more anatomy for the small sets, so samples need not sit as close
    to the training images. Only where a mirror image is still a plausible scan (brain MRI,
    breast and fetal ultrasound); never chest X-rays, whose heart would move to the right.

    ``jittered``: ``(dataset, copies)`` pairs: that many jittered copies of each of the dataset's
    training images (small rotations, zooms, shifts, gamma; :mod:`medzoo.data.jitter`, mirrored at
    random where the dataset is in ``mirrored``), encoded into the cache and labelled as their
    originals: more distinct images, so samples need not copy the few there are.
    """

    name: str
    autoencoder: str
    datasets: tuple
    description: str
    labelling: str = "class"
    image_size: int = 128
    network: dict = dataclasses.field(default_factory=lambda: dict(channels=(32, 64, 128), blocks=2,
                                                                   attention_levels=(1, 2), dropout=0.1))
    batch_size: int = 64
    learning_rate: float = 2e-4
    ema_decay: float = 0.9995
    modality_share: float = 0.2
    steps: int = 30
    guidance: float = 1.5
    labelled_fraction: float = 1.0
    mirrored: tuple = ()
    jittered: tuple = ()
    seed: int = 0

    def label_names(self) -> list[str]:
        if self.labelling == "class":
            (dataset,) = self.datasets
            return list(PRIOR_DATASETS[dataset][1] or ())
        names = []
        for dataset in self.datasets:
            modality, classes = PRIOR_DATASETS[dataset]
            names.append(modality)
            names.extend(f"{modality}/{c}" for c in classes or ())
        return names


PRIOR_RECIPES = {
    "prior-chestxray-f8c4": PriorRecipe(
        name="prior-chestxray-f8c4", autoencoder="vae-chestxray-f8c4", datasets=("kermany_pediatric_cxr_128",),
        description="Class-conditional rectified-flow prior on vae-chestxray-f8c4's 16x16x4 latents of pediatric "
                    "chest X-rays (Kermany, 128 px): generates normal and pneumonia radiographs, and variations "
                    "of given ones"),
    "prior-generalist-f8c4": PriorRecipe(
        name="prior-generalist-f8c4", autoencoder="vae-generalist-f8c4", labelling="dataset/class",
        datasets=("kermany_pediatric_cxr_128", "brain_tumor_figshare_128", "busbra_256", "hc18_256"),
        mirrored=("brain_tumor_figshare_128", "busbra_256", "hc18_256"),
        jittered=(("kermany_pediatric_cxr_128", 1), ("brain_tumor_figshare_128", 3), ("busbra_256", 2),
                  ("hc18_256", 1)),
        description="Rectified-flow prior on vae-generalist-f8c4's latents of four modalities at 128 px (chest "
                    "X-ray, brain MRI, breast and fetal head ultrasound), conditioned on modality and class"),
}


def get_prior_recipe(name: str) -> PriorRecipe:
    if name not in PRIOR_RECIPES:
        raise ConfigError(f"no prior recipe {name!r}; prior recipes: {', '.join(sorted(PRIOR_RECIPES))}")
    return PRIOR_RECIPES[name]


# ------------------------------------------------------------------- the data
def training_images(recipe: PriorRecipe, split: str = "train", data_dir=None):
    """``(images (N, S, S, 1) float32 in [0, 1], label indices (N,), modality indices (N,))`` of a recipe's split.

    Images larger than ``recipe.image_size`` are area-averaged down to it; labels index
    :meth:`PriorRecipe.label_names` (-1 for an unlabelled image of a single-dataset prior).
    """
    from medzoo.data import load_npz
    from medzoo.data.batches import area_resize

    names = recipe.label_names()
    images, labels, modalities = [], [], []
    for d, dataset in enumerate(recipe.datasets):
        x, y = load_npz(dataset, split, data_dir=data_dir)
        x = x.astype(np.float32) / 255.0
        if x.ndim == 3:
            x = x[..., None]
        if x.shape[1] != recipe.image_size:
            x = np.stack([area_resize(image, recipe.image_size) for image in x])
        modality, classes = PRIOR_DATASETS[dataset]
        if recipe.labelling == "class":
            idx = np.asarray(y, np.int64) if classes else np.full(len(x), -1)
        elif classes:
            idx = np.array([names.index(f"{modality}/{classes[int(v)]}") for v in y])
        else:
            idx = np.full(len(x), names.index(modality))
        images.append(x)
        labels.append(idx)
        modalities.append(np.full(len(x), d))
    return np.concatenate(images), np.concatenate(labels).astype(np.int32), np.concatenate(modalities)


def encode_latents(autoencoder, images, batch_size=64) -> np.ndarray:
    """The autoencoder's latents (posterior means for a VAE) of ``images``, in batches."""
    return np.asarray(autoencoder.encode(images, batch_size=batch_size), np.float32)


def cached_latents(recipe: PriorRecipe, autoencoder, out: pathlib.Path, data_dir=None, labelled_fraction=None):
    """The training latents, encoded once and kept in ``out/latents.npz``.

    ``labelled_fraction`` < 1 keeps the labels of that share of the images (a fixed,
    class-stratified draw) and marks the others unlabelled (-1): the few-label setting,
    in which the prior may see no more labels than a classifier trained beside it.
    The mirror images of ``recipe.mirrored``'s datasets and the jittered copies of
    ``recipe.jittered``'s follow, labelled as their originals; a cache made with other
    mirrored or jittered datasets is encoded again.
    """
    path = out / "latents.npz"
    made_with = _expansion(recipe)
    if path.exists():
        with np.load(path) as f:
            cached = {"mirrored": sorted(str(d) for d in f.get("mirrored", [])),
                      "jittered": json.loads(str(f["jittered"])) if "jittered" in f else {}}
            if cached == made_with:
                return f["latents"], f["labels"], f["modalities"]
        log.info("the cached latents were made with other mirrored or jittered datasets: encoding them again")
    images, labels, modalities = training_images(recipe, "train", data_dir)
    fraction = recipe.labelled_fraction if labelled_fraction is None else labelled_fraction
    labels = keep_labels(labels, fraction, recipe.seed)
    copies = with_jittered(recipe, images, labels, modalities)
    images, labels, modalities = with_mirrors(recipe, images, labels, modalities)
    images, labels, modalities = (np.concatenate([a, b]) for a, b in zip((images, labels, modalities), copies))
    log.info("encoding %d training images with %s", len(images), recipe.autoencoder)
    latents = encode_latents(autoencoder, images)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(path, latents=latents, labels=labels, modalities=modalities,
             mirrored=np.array(made_with["mirrored"], dtype=str), jittered=np.array(json.dumps(made_with["jittered"])))
    return latents, labels, modalities


def _expansion(recipe: PriorRecipe) -> dict:
    """What a cache's images beyond the originals are: the mirrored datasets and the jittered copies per dataset."""
    return {"mirrored": sorted(recipe.mirrored), "jittered": {d: int(k) for d, k in sorted(recipe.jittered) if k}}


def _check_among_datasets(recipe: PriorRecipe, field: str, names) -> None:
    unknown = set(names) - set(recipe.datasets)
    if unknown:
        raise ConfigError(f"{recipe.name}: {field} datasets {sorted(unknown)} are not among its datasets "
                          f"{list(recipe.datasets)}")


def with_mirrors(recipe: PriorRecipe, images, labels, modalities):
    """The images followed by the left-right mirror images of ``recipe.mirrored``'s datasets, with their labels."""
    _check_among_datasets(recipe, "mirrored", recipe.mirrored)
    chosen = [recipe.datasets.index(d) for d in recipe.mirrored]
    pick = np.isin(modalities, chosen)
    return (np.concatenate([images, images[pick][:, :, ::-1]]), np.concatenate([labels, labels[pick]]),
            np.concatenate([modalities, modalities[pick]]))


def with_jittered(recipe: PriorRecipe, images, labels, modalities):
    """``(images, labels, modalities)`` of the jittered copies of ``recipe.jittered``'s datasets (none: empty arrays)."""
    from medzoo.data.jitter import jittered_copies, name_seed

    jittered = _expansion(recipe)["jittered"]
    _check_among_datasets(recipe, "jittered", jittered)
    parts = ([images[:0]], [labels[:0]], [modalities[:0]])
    for dataset, copies in jittered.items():
        pick = modalities == recipe.datasets.index(dataset)
        parts[0].append(jittered_copies(images[pick], copies, name_seed(dataset, recipe.seed),
                                        flip=dataset in recipe.mirrored))
        parts[1].append(np.tile(labels[pick], copies))
        parts[2].append(np.tile(modalities[pick], copies))
    return tuple(np.concatenate(p) for p in parts)


def seen_images(images, dataset: str, training: dict) -> np.ndarray:
    """Every version of a dataset's training ``images`` that a prior trained on, from its metadata's ``training``.

    The images, then their mirrors (if the dataset was mirrored), then their jittered copies, as
    :func:`cached_latents` made them: the reference set of a memorisation measure (a sample that
    copies a mirrored or jittered training image is a copy).
    """
    from medzoo.data.jitter import jittered_copies, name_seed

    images = np.asarray(images, np.float32)
    mirrored = dataset in set(training.get("mirrored") or ())
    parts = [images] + ([images[:, :, ::-1]] if mirrored else [])
    copies = int((training.get("jittered") or {}).get(dataset, 0))
    if copies:
        parts.append(jittered_copies(images, copies, name_seed(dataset, int(training.get("seed", 0))), flip=mirrored))
    return np.concatenate(parts)


def keep_labels(labels, fraction: float, seed: int = 0) -> np.ndarray:
    """Labels with all but ``fraction`` of each class set to -1 (unlabelled); at least one kept per class."""
    labels = np.asarray(labels, np.int32).copy()
    if fraction >= 1.0:
        return labels
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(labels), bool)
    for c in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == c)
        keep[rng.choice(idx, size=max(1, int(round(fraction * len(idx)))), replace=False)] = True
    labels[~keep & (labels >= 0)] = -1
    return labels


def epoch_labels(recipe: PriorRecipe, labels, modalities, rng) -> np.ndarray:
    """This epoch's conditioning labels: a generalist's class labels become modality labels for a share of images."""
    if recipe.labelling == "class":
        return labels
    names = recipe.label_names()
    modality_index = np.array([names.index(PRIOR_DATASETS[d][0]) for d in recipe.datasets])[modalities]
    swap = (rng.random(len(labels)) < recipe.modality_share) & (labels >= 0)
    return np.where(swap, modality_index, labels).astype(np.int32)


# ------------------------------------------------------------------ the model
def build_prior(recipe: PriorRecipe, autoencoder, latent_shape):
    from medzoo.models.latent_prior import LatentPrior

    prior = LatentPrior(latent_channels=int(latent_shape[-1]), labels=recipe.label_names(),
                        autoencoder=recipe.autoencoder, image_channels=int(autoencoder.image_shape[-1]),
                        latent_size=tuple(latent_shape[:2]), seed=recipe.seed, **recipe.network)
    prior.build()
    return prior


class _EMA:
    """An exponential moving average of a model's trainable weights, kept in numpy (every backend alike)."""

    def __init__(self, model, decay: float, every: int = 4):
        self.model, self.decay, self.every = model, float(decay), int(every)
        self.values = [np.array(v) for v in model.get_weights()]

    def update(self):
        d = self.decay ** self.every
        for avg, new in zip(self.values, self.model.get_weights()):
            avg *= d
            avg += (1.0 - d) * new


def train_prior(recipe, output, *, time_budget_s=3600.0, resume=False, init_from=None, data_dir=None,
                labelled_fraction=None, write_preset=True, version="1.0.0", checkpoint_every_s=300.0,
                progress=True):
    """Train ``recipe`` (a name or :class:`PriorRecipe`) for ``time_budget_s`` seconds; returns the run directory.

    Args:
        output: the run directory (see the module docstring).
        resume: continue from ``output/checkpoint`` (a killed run, or a run given more time).
        init_from: a prior preset folder to start from (the next stage of a staged training).
        labelled_fraction: keep only this share of the training labels (the rest are unlabelled).
        write_preset: write ``output/preset`` from the averaged weights at the end.
    """
    import keras

    from medzoo.backend import hardware
    from medzoo.zoo import load

    recipe = get_prior_recipe(recipe) if isinstance(recipe, str) else recipe
    out = pathlib.Path(output)
    out.mkdir(parents=True, exist_ok=True)
    autoencoder = load(recipe.autoencoder)
    latents, labels, modalities = cached_latents(recipe, autoencoder, out, data_dir, labelled_fraction)
    prior = build_prior(recipe, autoencoder, latents.shape[1:])
    prior.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate, clipnorm=1.0))
    ckpt = out / "checkpoint"
    state = {"steps": 0, "epochs": 0, "wall_time_s": 0.0, "stages": []}
    if resume and (ckpt / "state.json").exists():
        state = _restore(prior, ckpt)
        log.info("resumed at step %d", state["steps"])
    elif init_from is not None:
        from medzoo.zoo.presets import load_preset, read_metadata

        start = load_preset(init_from, compile=False)
        prior.set_weights(start.get_weights())
        previous = read_metadata(init_from).get("training", {})
        state["stages"] = list(previous.get("stages", []))
        state["steps"] = int(previous.get("optimizer_steps", 0))
        state["wall_time_s"] = float(previous.get("wall_time_s", 0.0))
    else:
        prior.adapt(latents)
    ema = _EMA(prior, recipe.ema_decay)
    if (ckpt / "ema.npz").exists() and resume:
        with np.load(ckpt / "ema.npz") as f:
            ema.values = [f[f"w{i}"] for i in range(len(f.files))]

    rng = np.random.default_rng(recipe.seed + state["epochs"])
    callback = _StepCallback(ema)
    started, last_ckpt = time.time(), time.time()
    stage_steps = 0
    bar = _progress(time_budget_s) if progress else None
    while time.time() - started < time_budget_s:
        y = epoch_labels(recipe, labels, modalities, rng)
        history = prior.fit({"latents": latents, "labels": y}, batch_size=recipe.batch_size, epochs=1,
                            shuffle=True, verbose=0, callbacks=[callback])
        state["epochs"] += 1
        steps = int(np.ceil(len(latents) / recipe.batch_size))
        state["steps"] += steps
        stage_steps += steps
        loss = float(history.history["loss"][-1])
        elapsed = time.time() - started
        _log_row(out / "log.csv", {"epoch": state["epochs"], "steps": state["steps"], "loss": loss,
                                   "stage_time_s": round(elapsed, 1)})
        if bar is not None:
            bar.update(elapsed, f"step {state['steps']}, loss {loss:.4f}")
        if time.time() - last_ckpt > checkpoint_every_s:
            _checkpoint(prior, ema, ckpt, {**state, "wall_time_s": state["wall_time_s"] + elapsed})
            last_ckpt = time.time()
    if bar is not None:
        bar.close()
    elapsed = time.time() - started
    state["wall_time_s"] += elapsed
    stage = {"steps": stage_steps, "wall_time_s": round(elapsed, 1), "hardware": hardware(),
             "backend": keras.backend.backend()}
    if recipe.mirrored:
        stage["mirrored"] = sorted(recipe.mirrored)
    if recipe.jittered:
        stage["jittered"] = _expansion(recipe)["jittered"]
    state["stages"] = with_stage(state["stages"], stage)
    _checkpoint(prior, ema, ckpt, state)
    if write_preset:
        prior.set_weights(ema.values)
        write_prior_preset(prior, recipe, autoencoder, out / "preset", state, version=version,
                           labelled_fraction=labelled_fraction)
    return out


class _StepCallback:
    """Updates the EMA every few optimizer steps (a Keras callback, built lazily so keras imports late)."""

    def __new__(cls, ema):
        import keras

        class _Callback(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.batches = 0

            def on_train_batch_end(self, batch, logs=None):
                self.batches += 1
                if self.batches % ema.every == 0:
                    ema.update()

        return _Callback()


class _progress:
    """A time-based progress bar (tqdm on a terminal; silent when piped or without tqdm)."""

    def __init__(self, total_s):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
            return
        self.bar = tqdm(total=int(total_s), desc="training the prior", unit="s", disable=None, leave=False)

    def update(self, elapsed, text):
        if self.bar is not None:
            self.bar.update(max(0, min(int(elapsed), self.bar.total) - self.bar.n))
            self.bar.set_postfix_str(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _log_row(path: pathlib.Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _checkpoint(prior, ema, ckpt: pathlib.Path, state: dict) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    tmp = ckpt / "weights.tmp.npz"
    np.savez(tmp, **{f"w{i}": w for i, w in enumerate(prior.get_weights())})
    tmp.replace(ckpt / "weights.npz")
    np.savez(tmp, **{f"w{i}": w for i, w in enumerate(ema.values)})
    tmp.replace(ckpt / "ema.npz")
    np.savez(tmp, **{f"w{i}": np.asarray(v) for i, v in enumerate(prior.optimizer.variables)})
    tmp.replace(ckpt / "optimizer.npz")
    (ckpt / "state.json").write_text(json.dumps(state, indent=1))


def _restore(prior, ckpt: pathlib.Path) -> dict:
    with np.load(ckpt / "weights.npz") as f:
        prior.set_weights([f[f"w{i}"] for i in range(len(f.files))])
    prior.optimizer.build(prior.trainable_variables)
    with np.load(ckpt / "optimizer.npz") as f:
        for i, variable in enumerate(prior.optimizer.variables):
            variable.assign(f[f"w{i}"])
    return with_interrupted_stage(json.loads((ckpt / "state.json").read_text()))


def with_interrupted_stage(state: dict) -> dict:
    """A checkpoint's state with the steps and time of a run that stopped after its last checkpoint (killed, or
    out of time) listed as a stage of its own: such a run never wrote its stage, so the metadata's stages would
    add up to fewer steps than the weights saw."""
    stages = list(state.get("stages", []))
    missing = int(state["steps"]) - sum(int(stage["steps"]) for stage in stages)
    if missing > 0:
        seconds = float(state["wall_time_s"]) - sum(float(stage["wall_time_s"]) for stage in stages)
        stages.append({"steps": missing, "wall_time_s": round(max(seconds, 0.0), 1),
                       "note": "stopped after its last checkpoint, then resumed"})
    return {**state, "stages": stages}


def with_stage(stages: list, stage: dict) -> list:
    """The stages after a run: ``stage`` appended. A run that trained no step (resumed with no time left, only to
    write the preset of a stopped stage) adds none: the stopped stage takes its record of machine and backend."""
    if stage["steps"] or not stages:
        return [*stages, stage]
    machine = {k: v for k, v in stage.items() if k not in ("steps", "wall_time_s")}
    return [*stages[:-1], {**machine, **stages[-1]}]


def write_prior_preset(prior, recipe: PriorRecipe, autoencoder, directory, state, *, version="1.0.0",
                       labelled_fraction=None, metrics=None):
    """Save a trained prior as a preset: the autoencoder's input contract, labels and provenance.

    Weights are stored as float16 (half the size; the chest prior ships inside the wheel
    beside its VAE): measure a preset's figures on the stored weights, after loading it.
    """
    from medzoo.recipes.recipe import DATASETS
    from medzoo.zoo.presets import save_preset

    ae_meta = getattr(autoencoder, "zoo_metadata", {}) or {}
    datasets = [{"name": d, **DATASETS.get(d, {})} for d in recipe.datasets]
    training = {
        "recipe": recipe.name,
        "dataset": {"name": " + ".join(recipe.datasets), "components": datasets,
                    "description": f"{recipe.autoencoder}'s latents of the training splits, images at "
                                   f"{recipe.image_size} px",
                    "licence": "; ".join(sorted({c.get("licence", "?") for c in datasets})),
                    "citation": "; ".join(c.get("citation", "") for c in datasets)},
        "splits": {"train": "train", "metrics": "test", "model_selection": "none: the moving average at the end"},
        "autoencoder": {"name": recipe.autoencoder, "version": ae_meta.get("version")},
        "labels": prior.labels,
        "labelled_fraction": 1.0 if labelled_fraction is None else float(labelled_fraction),
        "mirrored": sorted(recipe.mirrored),
        "jittered": _expansion(recipe)["jittered"],
        "objective": "rectified flow (flow matching), logit-normal times, label dropout "
                     f"{prior.label_dropout}, EMA {recipe.ema_decay} of the weights",
        "sampling": {"steps": recipe.steps, "guidance": recipe.guidance, "solver": "euler"},
        "epochs": state["epochs"], "optimizer_steps": state["steps"], "batch_size_per_replica": recipe.batch_size,
        "replicas": 1, "learning_rate": recipe.learning_rate, "wall_time_s": round(state["wall_time_s"], 1),
        "stages": state["stages"], "hardware": state["stages"][-1]["hardware"] if state["stages"] else None,
        "backend": state["stages"][-1]["backend"] if state["stages"] else None, "seed": recipe.seed,
    }
    return save_preset(prior, directory, name=recipe.name, spec=autoencoder.preprocess_spec,
                       description=recipe.description, training=training, metrics=metrics or {}, version=version,
                       weights_dtype="float16")
