"""``medzoo demo``: a bundled model on the sample chest X-rays shipped in the package, as a report folder.

Needs no network, no data folder and no plotting library: the model is the copy bundled
in the package (``vae-chestxray-f8c4`` by default: the zoo's chest X-ray VAE, any size), the
images are the 8 real X-rays of :func:`medzoo.data.sample_images` (4 normal, 4 pneumonia, CC BY
4.0), and the figures are pixel grids written with Pillow. Beside each reconstruction stands the
obvious alternative: a bicubic thumbnail that keeps as many numbers as the model's latent,
enlarged back. The report folder holds:

* ``reconstructions.png``: input, reconstruction, thumbnail and |error| of every sample image;
* ``samples.png``: a VAE's generated images: one row per label from the zoo's latent prior for
  that VAE (``prior-chestxray-f8c4`` for the default model), above images decoded from the
  VAE's own N(0, I), with the published figures that tell the two apart;
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
    prior_info = None
    if gen.samples is not None:
        per_row = 8
        rows = [list(gen.samples[i:i + per_row]) for i in range(0, len(gen.samples), per_row)][:1]
        prior_info = _prior_samples(model, seed, per_row)
        if prior_info is not None:
            rows = [list(images) for images in prior_info.pop("rows").values()] + rows
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
        "prior": prior_info,
        "notes": gen.notes,
        "error_maps": f"|error| / value range, white at {ERROR_RANGE} and above",
        "seconds": round(time.perf_counter() - start, 2),
    }
    paths["metrics"] = out / "metrics.json"
    paths["metrics"].write_text(json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths["report"] = out / "report.md"
    paths["report"].write_text(_markdown(metrics, paths, manifest), encoding="utf-8")
    return DemoResult(jsonable(metrics), paths)


def _prior_samples(model, seed: int, per_label: int) -> dict | None:
    """The zoo's latent prior for ``model``: ``per_label`` samples of each label and its published figures.

    None when the zoo has no prior for this model or its files are not on this machine
    (the demo then shows the VAE's N(0, I) samples alone and says why).
    """
    import warnings

    from medzoo.errors import MedzooError
    from medzoo.zoo import load
    from medzoo.zoo.manifest import get_entry, priors_of

    name = (getattr(model, "zoo_metadata", None) or {}).get("name")
    names = priors_of(name) if name else []
    if not names:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prior = load(names[0], autoencoder=model, local_files_only=True)
    except MedzooError as exc:
        return {"name": names[0], "rows": {}, "unavailable": str(exc)}
    rows = {label: prior.generate(per_label, label=label, seed=seed) for label in prior.labels}
    entry = get_entry(names[0])
    return {"name": names[0], "version": entry["version"], "rows": rows, "labels": prior.labels,
            "metrics": entry["metrics"]}


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
    per_dataset = published.get("per_dataset") or {}
    if per_dataset:  # like with like: the samples are Kermany test images, so that split's figure, not a mean
        published, where = per_dataset.get("kermany_pediatric_cxr_128") or {}, "on the Kermany test split"
    else:
        where = "on its test split"
    if isinstance(published.get("psnr"), (int, float)):
        count = published.get("test_images")
        lines += [f"For comparison, the model's published figures {where}"
                  + (f" ({count} images)" if count else "") + f": PSNR {published['psnr']:.2f} dB"
                  + (f", SSIM {published['ssim']:.3f}" if isinstance(published.get("ssim"), (int, float)) else "")
                  + ".", ""]
    by_class = metrics["by_class"]
    if by_class:
        lines += [markdown_table(["class", "n", "PSNR dB", "SSIM", "MAE"],
                                 [[c, v["n"], v["psnr"], v["ssim"], v["mae"]] for c, v in by_class.items()]), ""]
    gen = metrics["generation"]
    if "samples" in paths:
        lines += ["## Generated images", ""]
        prior = metrics.get("prior")
        if prior and prior.get("labels"):
            m = prior["metrics"].get("kermany_test", prior["metrics"])
            fd = m.get("feature_fd", {})
            lines += [f"Rows 1-{len(prior['labels'])}: the latent prior `{prior['name']}` {prior['version']}, one row "
                      f"per label ({', '.join(prior['labels'])}), decoded by this VAE. Last row: the VAE's own prior, "
                      f"z ~ N(0, I), which is not where the VAE's encoder puts real images: texture, no anatomy.", ""]
            if fd:
                lines += [markdown_table(
                    ["published on the Kermany test split", "latent prior", "VAE N(0, I)",
                     "real images (the floor; the classifier's own accuracy)"],
                    [["Fréchet distance in a real-trained classifier's features", fd.get("prior"),
                      fd.get("vae_normal"), fd.get("real_train")],
                     ["label fidelity (classifier agrees with the asked label)", m.get("label_fidelity"), "-",
                      m.get("judge_accuracy")]]), ""]
            lines += ["Synthetic images carry no diagnosis: they are for augmentation, teaching and testing, "
                      "never for reading.", ""]
        else:
            why = (f"its files are not on this machine ({prior['unavailable']})" if prior and prior.get("unavailable")
                   else "the zoo has no latent prior for this model")
            lines += [f"Images decoded from the VAE's own prior, z ~ N(0, I): texture, not anatomy, because that is "
                      f"not where the encoder puts real images. A latent prior draws recognisable images; {why}.", ""]
        lines += [f"![samples]({paths['samples'].name})", ""]
    lines += ["## Latent interpolation", "",
              f"From a {CLASS_NAMES[0]} to a {CLASS_NAMES[1]} image (first and last frames: their reconstructions).",
              "", f"![interpolation]({paths['interpolation'].name})", ""]
    lines += [f"Note: {note}" for note in metrics["notes"]]
    lines += ["", f"Made by `medzoo demo` in {metrics['seconds']:.1f} s. All numbers: `metrics.json`.", ""]
    return "\n".join(lines)
