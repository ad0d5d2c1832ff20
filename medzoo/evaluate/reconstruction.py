"""Reconstruction quality over a split: PSNR, SSIM, MS-SSIM and MAE per image (and the error in HU for CT),
summaries, and an error-map grid."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from medzoo.evaluate import plots
from medzoo.evaluate.common import (
    CLASS_NAMES,
    Result,
    format_table,
    given_or_loaded,
    model_label,
    progress,
    resolve_model,
    summary,
)
from medzoo.metrics import batch_for, bicubic_thumbnail, mae, ms_ssim, psnr, rmse, ssim

METRICS = ("psnr", "ssim", "ms_ssim", "mae")


@dataclasses.dataclass(repr=False, eq=False)
class ReconstructionResult(Result):
    """PSNR (dB), SSIM, MS-SSIM and MAE of ``model.reconstruct`` against its inputs.

    Attributes:
        per_image: ``{"psnr": (N,), "ssim": (N,), "ms_ssim": (N,), "mae": (N,)}`` numpy arrays; for a
            model whose spec reads Hounsfield units also ``"mae_hu"`` and ``"rmse_hu"``.
        labels: (N,) class labels, or None.
        examples: ``(inputs, reconstructions)`` of a few images, for the figure.
        class_names: the name of each label value (``class_names[label]``), e.g. the class
            subfolders of ``--data DIR``; None: the chest X-ray classes (0 normal, 1 pneumonia).
        thumbnail: the obvious alternative for a continuous latent: a bicubic thumbnail keeping
            as many numbers as the latent, enlarged back (:func:`bicubic_thumbnail`):
            ``{"numbers", "size", "psnr": (N,), "ssim": (N,), "ms_ssim": (N,)}`` (and the HU errors
            for CT); None for discrete codes.
    """

    model: str
    source: str
    per_image: dict
    labels: np.ndarray | None
    examples: tuple
    class_names: tuple | None = None
    thumbnail: dict | None = None
    task = "reconstruction"

    def class_name(self, label) -> str:
        """The name of a label value: from :attr:`class_names` when known, else the chest X-ray class names."""
        label = int(label)
        if self.class_names is not None and 0 <= label < len(self.class_names):
            return str(self.class_names[label])
        return CLASS_NAMES.get(label, str(label))

    @property
    def metrics(self) -> tuple:
        """The measures of this result: :data:`METRICS`, plus the errors in HU for CT."""
        return METRICS + tuple(m for m in HU_METRICS if m in self.per_image)

    @property
    def summary(self) -> dict:
        return {m: summary(self.per_image[m]) for m in self.metrics}

    def by_class(self) -> dict:
        if self.labels is None or self.labels.ndim != 1:
            return {}
        out = {}
        for c in np.unique(self.labels):
            keep = self.labels == c
            out[self.class_name(c)] = {m: float(self.per_image[m][keep].mean()) for m in self.metrics} | {
                "n": int(keep.sum())}
        return out

    def to_dict(self, per_image=False) -> dict:
        d = {"task": self.task, "model": self.model, "data": self.source, "images": len(self.per_image["psnr"]),
             "metrics": self.summary, "by_class": self.by_class()}
        if self.class_names is not None:
            d["class_names"] = list(self.class_names)
        if self.thumbnail is not None:
            d["thumbnail"] = {"numbers": self.thumbnail["numbers"], "size": list(self.thumbnail["size"]),
                              **{m: summary(self.thumbnail[m]) for m in self.metrics if m in self.thumbnail and
                                 m != "mae"}}
        if per_image:
            d["per_image"] = {m: self.per_image[m] for m in self.metrics}
            if self.labels is not None:
                d["per_image"]["label"] = self.labels
        return d

    def table(self) -> str:
        rows = [[m, s["mean"], s["std"], s["median"], s["min"], s["max"]] for m, s in self.summary.items()]
        text = format_table(["metric", "mean", "std", "median", "min", "max"], rows,
                            title=f"reconstruction: {self.model} on {self.source} "
                                  f"({len(self.per_image['psnr'])} images)")
        if self.thumbnail is not None:
            t = self.thumbnail
            hu = f", MAE {np.mean(t['mae_hu']):.1f} HU" if "mae_hu" in t else ""
            text += (f"\nbicubic thumbnail keeping the latent's {t['numbers']} numbers ({t['size'][0]}x{t['size'][1]}): "
                     f"PSNR {np.mean(t['psnr']):.2f} dB, SSIM {np.mean(t['ssim']):.3f}, "
                     f"MS-SSIM {np.mean(t['ms_ssim']):.3f}{hu}")
        by_class = self.by_class()
        if by_class:
            text += "\n" + format_table(["class", "n", *self.metrics],
                                        [[c, v["n"], *(v[m] for m in self.metrics)] for c, v in by_class.items()])
        return text

    def plot(self, path) -> pathlib.Path:
        inputs, recs = self.examples
        err = np.abs(inputs - recs)
        vmax = max(float(np.percentile(err, 99.5)), 1e-6)  # a few outliers would make the maps black
        titles = [[f"{p:.1f} dB" for p in psnr(inputs, recs)], None, None]
        fig = plots.image_rows([("input", inputs), ("reconstruction", recs), ("|error|", err)], titles=titles,
                               cmaps={"|error|": "magma"}, vranges={"|error|": (0.0, vmax)})
        fig.suptitle(f"{self.model}: mean PSNR {self.summary['psnr']['mean']:.2f} dB, "
                     f"SSIM {self.summary['ssim']['mean']:.3f} (error maps: 0 to {vmax:.2f}, "
                     "the 99.5th percentile)", fontsize=9)
        return plots.save(fig, path)

    def extra_figures(self) -> dict:
        return {"reconstruction_histograms": self._plot_histograms}

    def _plot_histograms(self, path) -> pathlib.Path:
        fig = plots.figure(3.4 * len(METRICS), 2.8)
        axes = fig.subplots(1, len(METRICS))
        for ax, m in zip(axes, METRICS):
            values = self.per_image[m]
            if self.labels is not None and self.labels.ndim == 1 and len(np.unique(self.labels)) > 1:
                for i, c in enumerate(np.unique(self.labels)):
                    ax.hist(values[self.labels == c], bins=30, alpha=0.6, color=plots.PALETTE[i],
                            label=self.class_name(c))
                ax.legend(fontsize=7)
            else:
                ax.hist(values, bins=30, color=plots.PALETTE[0])
            ax.set_xlabel(m)
        axes[0].set_ylabel("images")
        return plots.save(fig, path)


def latent_numbers(model, x) -> int | None:
    """How many values one image's latent holds, or None for discrete codes (a VQ-VAE's code map)."""
    z = model.encode(x[:1])
    return None if np.issubdtype(z.dtype, np.integer) else int(np.prod(z.shape[1:]))


def reconstruction(model, images=None, labels=None, *, split="test", dataset=None, max_images=None, seed=0,
                   batch_size=64, examples=8, class_names=None, thumbnail=True) -> ReconstructionResult:
    """Reconstruct a split (or the given images) and measure PSNR, SSIM and MAE per image.

    Args:
        model: a zoo name, a preset path or a model.
        images, labels: arrays to use instead of loading ``split``.
        split, dataset: what to load (default: the test split of the model's training dataset).
        max_images: a stratified random subset, for quick runs.
        examples: images shown in the figure (spread over the split).
        class_names: names of the label values 0, 1, ... for the per-class table (default:
            the chest X-ray classes, 0 normal and 1 pneumonia).
        thumbnail: also measure the bicubic thumbnail that keeps as many numbers as a
            continuous latent (:func:`bicubic_thumbnail`).

    Returns:
        A :class:`ReconstructionResult`.
    """
    model = resolve_model(model)
    x, y, source = given_or_loaded(model, images, labels, split, dataset=dataset, max_images=max_images, seed=seed)
    batch_size = batch_for(x, batch_size)  # bounded memory: at most four 1024 px radiographs at once
    steps = range(0, len(x), batch_size)
    rec = np.concatenate([model.reconstruct(x[i:i + batch_size], batch_size=batch_size)
                          for i in progress(steps, f"reconstructing ({len(x)} images)", total=len(steps))])
    spec = getattr(model, "preprocess_spec", None)
    value_range = tuple(spec.value_range) if spec is not None else (0.0, 1.0)
    per_image = _measures(x, rec, spec, value_range)
    pick = np.unique(np.linspace(0, len(x) - 1, min(examples, len(x))).astype(int))
    names = None if class_names is None else tuple(str(c) for c in class_names)
    baseline = None
    numbers = latent_numbers(model, x) if thumbnail else None
    if numbers is not None:
        thumbs, size = bicubic_thumbnail(x, numbers, value_range)
        baseline = {"numbers": numbers, "size": size, **_measures(x, thumbs, spec, value_range)}
    return ReconstructionResult(model_label(model), source, per_image, y, (x[pick], rec[pick]), names, baseline)


#: the errors in Hounsfield units, for models whose spec reads CT in HU
HU_METRICS = ("mae_hu", "rmse_hu")


def _measures(x, rec, spec, value_range) -> dict:
    """Per image PSNR, SSIM, MS-SSIM and MAE over the model's value range; for a spec in Hounsfield units
    also the mean absolute and root-mean-square error in HU (the spec maps its ``input_range`` linearly)."""
    span = value_range[1] - value_range[0]
    out = {"psnr": psnr(x, rec, max_val=span), "ssim": ssim(x, rec, max_val=span),
           "ms_ssim": ms_ssim(x, rec, max_val=span), "mae": mae(x, rec)}
    if spec is not None and getattr(spec, "units", None) == "HU":
        out["mae_hu"] = out["mae"] * np.float32(spec.units_per_value)
        out["rmse_hu"] = rmse(x, rec) * np.float32(spec.units_per_value)
    return out
