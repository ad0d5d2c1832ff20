"""``medzoo demo``: a bundled model on the sample chest X-rays shipped in the package, as a report folder.

Needs no network, no data folder and no plotting library: the model is the copy bundled
in the package (``vae-chestxray-f8c4`` by default: the zoo's chest X-ray VAE, any size), the
images are the 8 real X-rays of :func:`medzoo.data.sample_images` (4 normal, 4 pneumonia, CC BY
4.0), and the figures are pixel grids written with Pillow. Beside each reconstruction stands the
obvious alternative: a bicubic thumbnail that keeps as many numbers as the model's latent,
enlarged back. The report folder holds:

* ``reconstructions.png``: input, reconstruction, thumbnail and |error| of every sample image;
* ``samples.png``: images decoded from the prior (a VAE only);
* ``interpolation.png``: decoded latent interpolations from a normal to a pneumonia image;
* ``metrics.json``: PSNR / SSIM / MAE per image (with file, label and original name) and the
  thumbnail's PSNR, their means, per class, and the generation statistics; ``report.md``: all of it, readable.

Example:
    >>> result = medzoo.demo("medzoo-demo")
    >>> print(result.table())
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np

from medzoo.evaluate import plots
from medzoo.evaluate.common import CLASS_NAMES, family_of, jsonable, model_label, model_version, prepare
from medzoo.evaluate.common import resolve_model
from medzoo.evaluate.files import ERROR_RANGE, error_map, value_range_of
from medzoo.evaluate.generation import generation
from medzoo.evaluate.reconstruction import METRICS, reconstruction
from medzoo.evaluate.report import markdown_table, prepare_folder
from medzoo.metrics import bicubic_thumbnail

DEFAULT_MODEL = "vae-chestxray-f8c4"
_FAMILY_NAMES = {"vae": "VAE", "vqvae": "VQ-VAE", "autoencoder": "autoencoder"}


@dataclasses.dataclass(repr=False, eq=False)
class DemoResult:
    """What :func:`demo` measured and wrote: ``metrics`` (the content of metrics.json) and ``paths``."""

    metrics: dict
    paths: dict

    @property
    def report(self) -> pathlib.Path:
        return self.paths["report"]

    def table(self) -> str:
        from medzoo.evaluate.common import format_table

        rows = [[im["file"], im["class"], im["psnr"], im.get("thumbnail_psnr", "-"), im["ssim"], im["mae"]]
                for im in self.metrics["images"]]
        mean = self.metrics["mean"]
        rows.append(["mean", "", mean["psnr"], mean.get("thumbnail_psnr", "-"), mean["ssim"], mean["mae"]])
        return format_table(["image", "class", "PSNR dB", "thumbnail dB", "SSIM", "MAE"], rows,
                            title=f"{self.metrics['model']} {self.metrics['version']} on the "
                                  f"{len(self.metrics['images'])} sample chest X-rays shipped with medzoo")

    def __str__(self):
        return self.table()


def demo(output_dir="medzoo-demo", *, model=DEFAULT_MODEL, seed: int = 0, samples: int = 16) -> DemoResult:
    """Run a zoo model on the sample chest X-rays in the package and write a report folder.

    Args:
        output_dir: the report folder (created; the demo's files in it are replaced).
        model: a zoo name, preset path or model (default the bundled ``vae-chestxray-f8c4``).
        seed: seed of the prior samples.
        samples: prior samples to draw (VAE only).

    Returns:
        A :class:`DemoResult`; ``result.table()`` is the per-image table,
        ``result.paths`` the files written.
    """
    from medzoo.data import sample_images, sample_manifest

    start = time.perf_counter()
    out = prepare_folder(output_dir)
    manifest = sample_manifest()
    raw, labels = sample_images()
    model = resolve_model(model)
    x = prepare(model, raw)
    low, high = value_range_of(model)

    rec_result = reconstruction(model, images=x, labels=labels, examples=len(x))
    gen = generation(model, images=x, labels=labels, n_samples=samples, steps=8, pairs=2, seed=seed)
    rec = rec_result.examples[1]  # every image, in order
    baseline = rec_result.thumbnail  # None for a model whose latent is not a set of numbers (VQ-VAE codes)
    thumb = None if baseline is None else bicubic_thumbnail(x, baseline["numbers"], (low, high))[0]
    rows = [list(x), list(rec)] + ([list(thumb)] if thumb is not None else []) + [list(error_map(x, rec, (low, high)))]
    grid = plots.montage(rows, value_range=(low, high))
    paths = {"reconstructions": plots.save_png(grid, out / "reconstructions.png")}
    if gen.samples is not None:
        per_row = 8
        rows = [list(gen.samples[i:i + per_row]) for i in range(0, len(gen.samples), per_row)]
        paths["samples"] = plots.save_png(plots.montage(rows, value_range=(low, high)), out / "samples.png")
    paths["interpolation"] = plots.save_png(plots.montage([list(s) for s in gen.strips], value_range=(low, high)),
                                            out / "interpolation.png")

    per_image = rec_result.per_image
    thumb_psnr = None if baseline is None else baseline["psnr"]
    images = [{"file": item["file"], "label": int(item["label"]), "class": item["class"],
               "original_filename": item["original_filename"], **{m: float(per_image[m][i]) for m in METRICS},
               **({} if thumb_psnr is None else {"thumbnail_psnr": float(thumb_psnr[i])})}
              for i, item in enumerate(manifest["images"])]
    metrics = {
        "model": model_label(model), "version": model_version(model),
        "source": (getattr(model, "zoo_metadata", None) or {}).get("source"), "family": family_of(model),
        "published_test_metrics": (getattr(model, "zoo_metadata", None) or {}).get("metrics") or {},
        "data": "the sample chest X-rays in medzoo/samples (see ATTRIBUTION.md): " + manifest["citation"],
        "licence": manifest["licence"],
        "images": images,
        "mean": {**{m: float(np.mean(per_image[m])) for m in METRICS},
                 **({} if thumb_psnr is None else {"thumbnail_psnr": float(np.mean(thumb_psnr))})},
        "by_class": rec_result.by_class(),
        "thumbnail": None if baseline is None else {"numbers": int(baseline["numbers"]),
                                                    "size": [int(v) for v in baseline["size"]]},
        "generation": {k: v for k, v in gen.stats.items() if k != "per_sample_nn_mse"},
        "notes": gen.notes,
        "error_maps": f"|error| / value range, white at {ERROR_RANGE} and above",
        "seconds": round(time.perf_counter() - start, 2),
    }
    paths["metrics"] = out / "metrics.json"
    paths["metrics"].write_text(json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths["report"] = out / "report.md"
    paths["report"].write_text(_markdown(metrics, paths, manifest), encoding="utf-8")
    return DemoResult(jsonable(metrics), paths)


def _markdown(metrics: dict, paths: dict, manifest: dict) -> str:
    mean = metrics["mean"]
    rows = [[im["file"], im["class"], im["original_filename"], im["psnr"], im.get("thumbnail_psnr", "-"), im["ssim"],
             im["mae"]] for im in metrics["images"]]
    rows.append(["**mean**", "", "", mean["psnr"], mean.get("thumbnail_psnr", "-"), mean["ssim"], mean["mae"]])
    thumbnail = metrics.get("thumbnail")
    lines = [
        f"# medzoo demo: {metrics['model']} {metrics['version']}",
        "",
        f"The {_FAMILY_NAMES.get(metrics['family'], metrics['family'])} `{metrics['model']}` "
        f"(loaded from the {metrics['source']} copy) on the "
        f"{len(metrics['images'])} real pediatric chest X-rays shipped with medzoo ({manifest['licence']}; "
        f"{manifest['citation']}; data {manifest['dataset'].split(', ')[-1]}). "
        f"They come from the test split, which the zoo's models never trained on.",
        "",
        "## Reconstructions",
        "",
        "Rows: input (after the model's preprocessing), reconstruction, "
        + (f"the bicubic thumbnail that keeps as many numbers as the latent ({thumbnail['numbers']}, "
           f"{thumbnail['size'][0]}x{thumbnail['size'][1]} px) enlarged back, " if thumbnail else "")
        + f"and the reconstruction's |error| (white: {ERROR_RANGE:g} of the value range or more).",
        "",
        f"![reconstructions]({paths['reconstructions'].name})",
        "",
        markdown_table(["image", "class", "original file", "PSNR dB", "thumbnail PSNR dB", "SSIM", "MAE"], rows),
        "",
    ]
    published = metrics["published_test_metrics"]
    if isinstance(published.get("psnr"), (int, float)):
        count = published.get("test_images")
        lines += [f"For comparison, the model's published test-split figures"
                  + (f" ({count} images)" if count else "") + f": PSNR {published['psnr']:.2f} dB"
                  + (f", SSIM {published['ssim']:.3f}" if isinstance(published.get("ssim"), (int, float)) else "")
                  + ".", ""]
    by_class = metrics["by_class"]
    if by_class:
        lines += [markdown_table(["class", "n", "PSNR dB", "SSIM", "MAE"],
                                 [[c, v["n"], v["psnr"], v["ssim"], v["mae"]] for c, v in by_class.items()]), ""]
    gen = metrics["generation"]
    if "samples" in paths:
        lines += ["## Samples from the prior", "",
                  f"{gen.get('samples')} images decoded from z ~ N(0, I) (temperature {gen.get('temperature')}).",
                  "", f"![samples]({paths['samples'].name})", ""]
    lines += ["## Latent interpolation", "",
              f"From a {CLASS_NAMES[0]} to a {CLASS_NAMES[1]} image (first and last frames: their reconstructions).",
              "", f"![interpolation]({paths['interpolation'].name})", ""]
    lines += [f"Note: {note}" for note in metrics["notes"]]
    lines += ["", f"Made by `medzoo demo` in {metrics['seconds']:.1f} s. All numbers: `metrics.json`.", ""]
    return "\n".join(lines)
