"""What every evaluation task shares: resolving a model, loading a split as model inputs, result objects.

A task takes a model (a zoo name, a preset path or a model instance) and either
arrays (``images=``, ``labels=``) or a dataset split to load (by default the
dataset the model was trained on, from its preset metadata). Images are
prepared with the model's own :class:`~medzoo.data.PreprocessSpec`: arrays that
already are model inputs (float, right shape, inside the value range) are used
as they are, anything else is resized and normalised first.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np

from medzoo.errors import ConfigError, DataError
from medzoo.progress import progress  # noqa: F401  (re-exported for the tasks)
from medzoo.zoo.identity import model_label, model_version, prepare, resolve_model, training_info  # noqa: F401

#: dataset used when a model's metadata does not name one
DEFAULT_DATASET = "kermany_pediatric_cxr_128"
#: class names of the chest X-ray labels
CLASS_NAMES = {0: "normal", 1: "pneumonia"}


# ------------------------------------------------------------------ models
def dataset_of(model, dataset=None) -> str:
    """``dataset`` if given, else the dataset the model was trained on (the first of a mixture, as its recipe
    lists them: for the native chest stages the labelled Kermany set), else :data:`DEFAULT_DATASET`."""
    if dataset is not None:
        return dataset
    info = training_info(model).get("dataset") or {}
    if not isinstance(info, dict):
        return DEFAULT_DATASET
    components = info.get("components") or []
    if components and isinstance(components[0], dict) and components[0].get("name"):
        return components[0]["name"]
    return info.get("name") or DEFAULT_DATASET


def family_of(model) -> str:
    if hasattr(model, "quantizer"):
        return "vqvae"
    if hasattr(model, "encode_distribution"):
        return "vae"
    return "autoencoder"


# -------------------------------------------------------------------- data
def stratified_indices(labels, n, seed=0) -> np.ndarray:
    """At most ``n`` indices, drawn at random with each class keeping its share (sorted)."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n < 1:
        raise DataError(f"max_images must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    keys = labels if labels.ndim == 1 else np.zeros(len(labels), dtype=int)
    classes, counts = np.unique(keys, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    if n >= len(classes):
        take = np.maximum(take, 1)
    for i in np.argsort(-(quota - np.floor(quota)), kind="stable"):
        if take.sum() >= n:
            break
        take[i] += 1
    while take.sum() > n:
        take[np.argmax(take)] -= 1
    chosen = [rng.permutation(np.flatnonzero(keys == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def load_split(model, split="test", *, dataset=None, classes=None, max_images=None, seed=0,
               preprocess=True) -> tuple[np.ndarray, np.ndarray]:
    """One split of the model's dataset as ``(model inputs, labels)``.

    Args:
        classes: keep only these labels (e.g. ``[0]`` for normal images).
        max_images: a stratified random subset of at most this many images
            (the npz files are sorted by label, so taking the first N would be one class).
        preprocess: apply the model's spec (False returns the raw stored images).
    """
    from medzoo.data import load_npz
    from medzoo.data.folder_sets import is_folder_dataset, load_dataset, stack_if_uniform

    name = dataset_of(model, dataset)
    if is_folder_dataset(name):  # a folder with a splits.csv (the native sets): images at their stored size
        raw, labels = stack_if_uniform(load_dataset(name, split)[0]), None
        if isinstance(raw, list):
            raise DataError(f"the {split} images of {name} differ in size "
                            f"({', '.join(sorted({'x'.join(map(str, a.shape[:2])) for a in raw})[:4])}); evaluate "
                            "them one size at a time (images=)")
    else:
        raw, labels = load_npz(name, split)
    if labels is None:  # an unlabelled split (HC18): images only
        if classes is not None:
            raise DataError(f"split {split!r} of {dataset_of(model, dataset)} has no labels to keep classes from")
        keep = stratified_indices(np.zeros(len(raw), int), max_images, seed)
        return (prepare(model, raw[keep]) if preprocess else raw[keep]), None
    if classes is not None:
        keep = np.isin(labels, list(classes))
        raw, labels = raw[keep], labels[keep]
        if len(raw) == 0:
            raise DataError(f"split {split!r} has no images of classes {list(classes)}")
    keep = stratified_indices(labels, max_images, seed)
    raw, labels = raw[keep], labels[keep]
    return (prepare(model, raw) if preprocess else raw), np.asarray(labels)


def given_or_loaded(model, images, labels, split, *, dataset, max_images, seed, classes=None, need_labels=False):
    """Use the arrays a caller gave, or load ``split``; returns ``(inputs, labels or None, source)``."""
    if images is not None:
        x = prepare(model, images)
        y = None if labels is None else np.asarray(labels).reshape(len(x), *np.shape(labels)[1:])
        if y is not None and y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if need_labels and y is None:
            raise DataError("this task needs labels= with the images")
        if max_images is not None and len(x) > max_images:
            keep = stratified_indices(y if y is not None else np.zeros(len(x)), max_images, seed)
            x, y = x[keep], (None if y is None else y[keep])
        return x, y, "arrays given by the caller"
    x, y = load_split(model, split, dataset=dataset, classes=classes, max_images=max_images, seed=seed)
    return x, y, f"{dataset_of(model, dataset)}:{split}"


def as_binary(labels, what="labels") -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if not np.all(np.isin(labels, (0, 1))):
        raise DataError(f"{what} must be 0 (normal) / 1 (abnormal), got {np.unique(labels)[:10]}")
    return labels.astype(np.int64)


# ----------------------------------------------------------------- results
def jsonable(value):
    """Numpy arrays and scalars -> lists and floats, NaN/inf -> None, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, pathlib.Path):
        return str(value)
    return value


def summary(values) -> dict:
    """mean, std, median, min, max and n of per-image values."""
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "median": float(np.median(values)), "min": float(values.min()), "max": float(values.max()),
            "n": int(len(values))}


def format_table(headers, rows, title=None) -> str:
    """A plain-text table; floats get 4 significant digits, None prints as '-'."""
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
        return str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in body)) if body else len(str(h)) for i, h in enumerate(headers)]
    lines = [title] if title else []
    lines.append("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines)


def interval(low, high, digits=3) -> str:
    """``[low, high]`` with ``digits`` decimals ('-' for a missing bound)."""
    def bound(v):
        return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"

    return f"[{bound(low)}, {bound(high)}]"


class Result:
    """Base of the task results: ``to_dict()``, ``plot(path)``, ``table()`` and ``save(folder)``."""

    task = "task"

    def to_dict(self, per_image: bool = False) -> dict:
        raise NotImplementedError

    def plot(self, path) -> pathlib.Path:
        raise NotImplementedError

    def table(self) -> str:
        raise NotImplementedError

    def markdown(self) -> str:
        """The result's tables as GitHub Markdown, e.g. to paste into a README (here: :meth:`table`, fenced)."""
        return "```\n" + self.table() + "\n```"

    def extra_figures(self) -> dict:
        """Further figures written by :meth:`save`: ``{file stem: function(path)}``."""
        return {}

    def save(self, output_dir, per_image: bool = True) -> dict:
        """Write ``results.json`` and the PNG figures into ``output_dir``; returns ``{what: path}``."""
        out = pathlib.Path(output_dir)
        if (out / "metadata.json").is_file() and (out / "model.weights.h5").is_file():
            raise ConfigError(f"{out} is a preset directory; write evaluation results somewhere else")
        out.mkdir(parents=True, exist_ok=True)
        paths = {"results": out / "results.json"}
        paths["results"].write_text(json.dumps(jsonable(self.to_dict(per_image=per_image)), indent=2,
                                               allow_nan=False) + "\n", encoding="utf-8")
        paths[self.task] = self.plot(out / f"{self.task}.png")
        for stem, draw in self.extra_figures().items():
            paths[stem] = draw(out / f"{stem}.png")
        return paths

    def __str__(self):
        return self.table()

    def __repr__(self):
        return f"<{type(self).__name__}\n{self.table()}\n>"
