"""Anomaly detection: score test images by how badly a model of normal images explains them.

A model trained on normal images only (``ae-chestxray-normal``, ``vae-chestxray-normal``)
scores each test image: per-image reconstruction error (MSE, L1, 1 - SSIM), for a
VAE the negative ELBO in bits per dimension, and the mean distance of the image's
encoder features to its k nearest normal training images (``latent-knn``, still
label-free). Pneumonia is the positive class; AUROC (rank statistic) comes with a
stratified bootstrap interval.

Baselines computed in the same run on the same images, so the learned models have
something to beat:

* ``mean-image``: squared distance to the mean normal training image;
* ``pca``: reconstruction error of a linear subspace (principal components of the
  normal training images): a linear autoencoder;
* ``pixel-knn``: the k-nearest-neighbour distance in pixel space (32 x 32 pooled),
  the counterpart of ``latent-knn`` without the encoder.

A model that saw pneumonia images in training is still scored, but the result
says so: that is not an anomaly-detection setting.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from medzoo.evaluate import plots
from medzoo.evaluate.common import (
    Result,
    as_binary,
    format_table,
    given_or_loaded,
    interval,
    load_split,
    model_label,
    prepare,
    resolve_model,
    training_info,
)
from medzoo.metrics import fit_vae_sigma, ssim, vae_negative_elbo_bits
from medzoo.evaluate.report import markdown_table
from medzoo.evaluate.stats import auroc, bootstrap_ci, roc_curve

#: what each score measures (higher = more anomalous)
SCORE_DESCRIPTIONS = {
    "mse": "mean squared reconstruction error",
    "l1": "mean absolute reconstruction error",
    "ssim": "1 - SSIM of the reconstruction",
    "nelbo": "negative ELBO, bits per dimension (discretized Gaussian decoder)",
    "latent-knn": "mean distance to the k nearest normal training images in the encoder's feature space",
    "pixel-knn": "baseline: mean distance to the k nearest normal training images in pixel space (32 x 32 pooled)",
    "mean-image": "baseline: squared distance to the mean normal training image",
    "pca": "baseline: reconstruction error of the principal subspace of normal training images",
}


@dataclasses.dataclass(repr=False, eq=False)
class AnomalyResult(Result):
    """AUROC (with bootstrap interval) and ROC curve per score.

    Attributes:
        scores: ``{score name: (N,) scores}``; labels: (N,) 0 normal / 1 pneumonia.
        metrics: ``{score name: {"auroc", "ci_low", "ci_high", "kind": "model"|"baseline"}}``.
    """

    model: str
    source: str
    labels: np.ndarray
    scores: dict
    metrics: dict
    trained_on_normal_only: bool | None
    notes: list
    settings: dict
    task = "anomaly"

    def to_dict(self, per_image=False) -> dict:
        d = {"task": self.task, "model": self.model, "data": self.source,
             "images": {"normal": int((self.labels == 0).sum()), "pneumonia": int((self.labels == 1).sum())},
             "positive_class": "pneumonia (label 1)", "trained_on_normal_only": self.trained_on_normal_only,
             "metrics": self.metrics, "descriptions": {k: SCORE_DESCRIPTIONS.get(k, k) for k in self.scores},
             "settings": self.settings, "notes": self.notes}
        if per_image:
            d["per_image"] = {"label": self.labels, **self.scores}
        return d

    def table(self) -> str:
        rows = [[name, m["kind"], m["auroc"], f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]"]
                for name, m in self.metrics.items()]
        text = format_table(["score", "kind", "AUROC", f"{int(100 * self.settings['level'])}% CI"], rows,
                            title=f"anomaly detection: {self.model} on {self.source} "
                                  f"({int((self.labels == 0).sum())} normal / {int((self.labels == 1).sum())} "
                                  "pneumonia)")
        return text + "".join(f"\nnote: {n}" for n in self.notes)

    #: columns of :meth:`summary_rows` (and of :meth:`markdown`)
    SUMMARY_HEADERS = ("model", "score", "AUROC", "95% CI")

    def summary_rows(self) -> list:
        """One row per score: model (``(baseline)`` for the baselines), score, AUROC, interval (3 decimals).

        Rows of several results (e.g. an autoencoder's and a VAE's, the baselines computed once) stack
        into one table under :attr:`SUMMARY_HEADERS`.
        """
        return [[self.model if m["kind"] == "model" else "(baseline)", name, f"{m['auroc']:.3f}",
                 interval(m["ci_low"], m["ci_high"])] for name, m in self.metrics.items()]

    def caption(self) -> str:
        level = int(100 * self.settings["level"])
        return (f"Anomaly detection, pneumonia vs normal on {self.source} ({int((self.labels == 0).sum())} normal / "
                f"{int((self.labels == 1).sum())} pneumonia); AUROC with a stratified bootstrap {level}% interval "
                f"({self.settings['bootstrap']} resamples).")

    def markdown(self) -> str:
        headers = list(self.SUMMARY_HEADERS)
        headers[-1] = f"{int(100 * self.settings['level'])}% CI"
        return f"{self.caption()}\n\n{markdown_table(headers, self.summary_rows())}"

    def plot(self, path) -> pathlib.Path:
        fig = plots.figure(5.2, 5)
        ax = fig.subplots()
        for i, (name, m) in enumerate(self.metrics.items()):
            fpr, tpr, _ = roc_curve(self.labels, self.scores[name])
            ax.plot(fpr, tpr, "-" if m["kind"] == "model" else "--", color=plots.PALETTE[i % len(plots.PALETTE)],
                    lw=1.5, label=f"{name}: {m['auroc']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]")
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
        ax.set_xlabel("false positive rate (normal flagged)")
        ax.set_ylabel("true positive rate (pneumonia flagged)")
        ax.set_title(f"{self.model}: ROC, pneumonia vs normal", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_aspect("equal")
        return plots.save(fig, path)

    def extra_figures(self) -> dict:
        return {"anomaly_scores": self._plot_histograms}

    def _plot_histograms(self, path) -> pathlib.Path:
        names = list(self.scores)
        fig = plots.figure(3 * len(names), 2.6)
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names):
            values = self.scores[name]
            bins = np.linspace(values.min(), values.max(), 31)
            for c, label in ((0, "normal"), (1, "pneumonia")):
                ax.hist(values[self.labels == c], bins=bins, alpha=0.6, color=plots.PALETTE[c], label=label)
            ax.set_title(f"{name} (AUROC {self.metrics[name]['auroc']:.3f})", fontsize=8)
        axes[0].legend(fontsize=7)
        return plots.save(fig, path)


def knn_distance(queries, reference, k=5, chunk=256) -> np.ndarray:
    """Mean Euclidean distance of each query row to its ``k`` nearest ``reference`` rows."""
    q = np.asarray(queries, np.float64).reshape(len(queries), -1)
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    k = int(min(k, len(r)))
    r_sq = (r ** 2).sum(axis=1)
    out = []
    for i in range(0, len(q), chunk):
        block = q[i:i + chunk]
        d2 = np.maximum((block ** 2).sum(axis=1)[:, None] - 2.0 * block @ r.T + r_sq[None], 0.0)
        out.append(np.sqrt(np.partition(d2, k - 1, axis=1)[:, :k]).mean(axis=1))
    return np.concatenate(out)


class PCABaseline:
    """Principal subspace of (flattened) normal images; scores by the squared residual outside it."""

    def __init__(self, images, components=32):
        flat = np.asarray(images, np.float64).reshape(len(images), -1)
        self.mean = flat.mean(axis=0)
        centred = flat - self.mean
        k = int(min(components, len(flat) - 1))
        if k > 0:
            gram = centred @ centred.T  # (n, n): cheaper than an SVD of (n, pixels)
            values, vectors = np.linalg.eigh(gram)
            top = np.argsort(values)[::-1][:k]
            values, vectors = np.maximum(values[top], 1e-12), vectors[:, top]
            self.basis = (centred.T @ vectors) / np.sqrt(values)  # (pixels, k), orthonormal columns
        else:
            self.basis = np.zeros((flat.shape[1], 0))
        self.components = k

    def score(self, images) -> np.ndarray:
        centred = np.asarray(images, np.float64).reshape(len(images), -1) - self.mean
        residual = centred - (centred @ self.basis) @ self.basis.T
        return (residual ** 2).mean(axis=1)


def anomaly(model, images=None, labels=None, *, reference_images=None, split="test", dataset=None,
            max_images=None, max_reference=2000, seed=0, baselines=("mean-image", "pca", "pixel-knn"),
            pca_components=32, knn=5, n_bootstrap=2000, level=0.95, batch_size=64) -> AnomalyResult:
    """Score images with a model of normal anatomy; AUROC of pneumonia vs normal with bootstrap intervals.

    Args:
        model: ideally trained on normal images only (e.g. ``ae-chestxray-normal``).
        images, labels: arrays to score instead of loading ``split``.
        reference_images: normal images for the baselines and the VAE decoder scale
            (default: normal images of the training split for the baselines and of the
            validation split for the scale).
        max_images: stratified subset of the scored split.
        max_reference: at most this many reference images (random, seeded).
        baselines: any of ``"mean-image"``, ``"pca"``, ``"pixel-knn"`` (empty to skip).
        knn: neighbours of the k-nearest-neighbour scores (``latent-knn`` of the model's
            encoder features, ``pixel-knn`` baseline).
        n_bootstrap, level: the bootstrap interval of each AUROC.
    """
    model = resolve_model(model)
    x, y, source = given_or_loaded(model, images, labels, split, dataset=dataset, max_images=max_images, seed=seed,
                                   need_labels=True)
    y = as_binary(y)
    notes = []
    classes = training_info(model).get("classes")
    normal_only = None if not training_info(model) else (classes is not None and list(classes) == [0])
    if normal_only is False:
        notes.append("the model was trained on pneumonia images too (training classes "
                     f"{classes}); this is not an anomaly-detection setting and the AUROC is only indicative")
    elif normal_only is None:
        notes.append("the model carries no training record; it should have been trained on normal images only")

    if reference_images is not None:
        ref_train = ref_val = prepare(model, reference_images)
        ref_source = "reference images given by the caller"
    else:
        ref_train, _ = load_split(model, "train", dataset=dataset, classes=[0], max_images=max_reference, seed=seed)
        ref_val, _ = load_split(model, "val", dataset=dataset, classes=[0], max_images=256, seed=seed)
        ref_source = "normal images of the train (baselines) and val (VAE decoder scale) splits"

    rec = model.reconstruct(x, batch_size=batch_size)
    diff = (x - rec).reshape(len(x), -1)
    scores = {"mse": (diff ** 2).mean(axis=1), "l1": np.abs(diff).mean(axis=1), "ssim": 1.0 - ssim(x, rec)}
    settings = {"reference": ref_source, "reference_images": int(len(ref_train)), "bootstrap": n_bootstrap,
                "level": level, "seed": seed}
    if hasattr(model, "encode_distribution"):
        sigma = fit_vae_sigma(model, ref_val)
        scores["nelbo"] = vae_negative_elbo_bits(model, x, sigma, batch_size=batch_size, seed=seed)
        settings["vae_decoder_sigma"] = sigma
    from medzoo.evaluate.probe import encoder_features, pooled_pixels

    scores["latent-knn"] = knn_distance(encoder_features(model, x, batch_size),
                                        encoder_features(model, ref_train, batch_size), knn)
    settings["knn"] = knn
    kinds = {name: "model" for name in scores}
    for name in baselines:
        if name == "mean-image":
            scores[name] = PCABaseline(ref_train, 0).score(x)
        elif name == "pca":
            pca = PCABaseline(ref_train, pca_components)
            scores[name] = pca.score(x)
            settings["pca_components"] = pca.components
        elif name == "pixel-knn":
            scores[name] = knn_distance(pooled_pixels(x), pooled_pixels(ref_train), knn)
        else:
            from medzoo.errors import ConfigError

            raise ConfigError(f"unknown anomaly baseline {name!r}; known: 'mean-image', 'pca', 'pixel-knn'")
        kinds[name] = "baseline"

    metrics = {}
    for name, s in scores.items():
        low, high = bootstrap_ci(y, s, n_resamples=n_bootstrap, level=level, seed=seed)
        metrics[name] = {"auroc": auroc(y, s), "ci_low": low, "ci_high": high, "kind": kinds[name]}
        if high < 0.5:
            notes.append(f"{name}: AUROC below 0.5 with its whole interval: pneumonia images score as more "
                         "normal than normal images under this score (it is explained better, not worse)")
    return AnomalyResult(model_label(model), source, y, {k: np.asarray(v, np.float64) for k, v in scores.items()},
                         metrics, normal_only, notes, settings)
