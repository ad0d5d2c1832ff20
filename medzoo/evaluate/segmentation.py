"""Segmentation quality over a split: Dice, IoU and HD95 per image, HC18's head circumference, best and worst overlays."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from medzoo.errors import ConfigError, DataError
from medzoo.evaluate import plots
from medzoo.evaluate.common import Result, dataset_of, format_table, model_label, resolve_model, summary
from medzoo.metrics import dice, ellipse_circumference, hd95, iou

METRICS = ("dice", "iou", "hd95")


@dataclasses.dataclass(repr=False, eq=False)
class SegmentationResult(Result):
    """Per-image Dice, IoU and HD95 (``hd95_unit``: "mm" where the pixel spacing is known, else "px").

    Attributes:
        per_image: ``{"dice", "iou", "hd95"}`` arrays (N,); HD95 is NaN where exactly one
            of the masks is empty; for HC18 also ``"hc_error_mm"``.
        examples: ``(images, references, predictions)`` of the worst and best images by Dice.
    """

    model: str
    source: str
    per_image: dict
    hd95_unit: str
    examples: tuple
    task = "segmentation"

    @property
    def summary(self) -> dict:
        return {m: summary(v[np.isfinite(v)]) for m, v in self.per_image.items() if np.isfinite(v).any()}

    def to_dict(self, per_image=False) -> dict:
        d = {"task": self.task, "model": self.model, "data": self.source, "images": len(self.per_image["dice"]),
             "hd95_unit": self.hd95_unit, "metrics": self.summary,
             "hd95_undefined": int(np.isnan(self.per_image["hd95"]).sum())}
        if per_image:
            d["per_image"] = {m: np.where(np.isfinite(v), v, -1.0) for m, v in self.per_image.items()}
        return d

    def table(self) -> str:
        labels = {"hd95": f"hd95 ({self.hd95_unit})", "hc_error_mm": "head circumference error (mm)"}
        rows = [[labels.get(m, m), s["mean"], s["std"], s["median"], s["min"], s["max"]]
                for m, s in self.summary.items()]
        return format_table(["metric", "mean", "std", "median", "min", "max"], rows,
                            title=f"segmentation: {self.model} on {self.source} ({len(self.per_image['dice'])} "
                                  f"images; HD95 undefined for {int(np.isnan(self.per_image['hd95']).sum())})")

    def plot(self, path) -> pathlib.Path:
        from medzoo.evaluate.files import overlay

        images, refs, preds = self.examples
        rows = [("reference", np.stack([overlay(x, r) for x, r in zip(images, refs)])),
                ("prediction", np.stack([overlay(x, p) for x, p in zip(images, preds)]))]
        titles = [[f"Dice {d:.2f}" for d in dice(refs, preds)], None]
        fig = plots.image_rows(rows, titles=titles)
        fig.suptitle(f"{self.model}: worst and best test images by Dice (mean {self.summary['dice']['mean']:.3f})",
                     fontsize=9)
        return plots.save(fig, path)


def segmentation(model, *, split="test", dataset=None, max_images=None, seed=0, examples=4,
                 pixel_spacing_mm=None, largest_region=False) -> SegmentationResult:
    """Segment a split of the model's dataset and measure it against the reference masks.

    Args:
        model: a segmenter (zoo name, preset path or model).
        dataset: the npz holding ``{split}_images`` and ``{split}_masks`` (default: the model's).
        max_images: a random subset of at most this many images.
        examples: how many worst and how many best images the figure shows.
        pixel_spacing_mm: mm per pixel for HD95 (default: per image for HC18, else pixels).
        largest_region: measure the masks with each class reduced to its largest connected
            region, holes filled (``Segmenter.segment(..., largest_region=True)``).
    """
    from medzoo.data import load_masks, load_npz, load_pixel_spacing
    from medzoo.models.segmenter import check_masks

    model = resolve_model(model)
    if not hasattr(model, "segment"):
        raise ConfigError(f"{model_label(model)} is not a segmentation model")
    name = dataset_of(model, dataset)
    images, _ = load_npz(name, split)
    if len(images) == 0:
        raise DataError(f"{name}: the {split!r} split is empty")
    masks = check_masks(load_masks(name, split), images, getattr(model, "classes", 1))
    keep = np.arange(len(images))
    if max_images is not None and max_images < len(keep):
        keep = np.sort(np.random.default_rng(seed).permutation(len(keep))[:max_images])
    x = model.preprocess(images[keep])
    refs = masks[keep]
    preds = model.segment(x, largest_region=largest_region)
    hc = load_pixel_spacing(name, split, side=images.shape[1])
    hc = None if hc is None else (hc[0][keep], hc[1][keep])
    spacing = pixel_spacing_mm if pixel_spacing_mm is not None else (hc[0] if hc is not None else None)
    per_image = {"dice": dice(refs, preds), "iou": iou(refs, preds),
                 "hd95": hd95(refs, preds, 1.0 if spacing is None else spacing)}
    if hc is not None:
        per_image["hc_error_mm"] = np.abs(ellipse_circumference(preds, hc[0]) - hc[1])
    order = np.argsort(per_image["dice"])
    shown = np.concatenate([order[:examples], order[-examples:]]) if len(order) > 2 * examples else order
    return SegmentationResult(model_label(model), f"{name}:{split}", per_image,
                              "px" if spacing is None else "mm", (x[shown], refs[shown], preds[shown]))
