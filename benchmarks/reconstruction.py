"""Reconstruction quality of every zoo model on the test split: PSNR, SSIM, MAE, against a bicubic thumbnail.

The thumbnail keeps as many numbers as the model's continuous latent (VQ-VAE code maps have none),
downscaled with an antialiased bicubic filter and enlarged back, on the same images. Zoo v2's bar:
a continuous latent beats its thumbnail by at least 3 dB. A model trained on several datasets
(the generalist) is measured on each one's test split, next to that dataset's specialist of the
same family and latent size when it is in the run (bar: within 1 dB), and on its own test split,
the datasets in equal shares (the mean of their means), where its 3 dB bar applies.

    python benchmarks/reconstruction.py
    python benchmarks/reconstruction.py --models ae-chestxray vqvae-chestxray --max-images 64
"""

import numpy as np

import _common

import medzoo
from medzoo.evaluate.common import format_table


def main(argv=None):
    p = _common.parser("reconstruction", __doc__.splitlines()[0])
    args = p.parse_args(argv)
    _common.setup_logging()
    models = _common.available(args.models or _common.zoo_names())
    rows, summary, psnrs = [], {}, {}
    for name in models:
        components = _common.training_datasets(name)
        means = []  # a multi-dataset model's (PSNR, SSIM, MAE, thumbnail PSNR) per dataset
        for dataset in components or [None]:
            result = medzoo.evaluate.reconstruction(name, dataset=dataset, max_images=args.max_images,
                                                    seed=args.seed)
            label = result.model if dataset is None else f"{result.model} @ {dataset}"
            result.save(args.output / _common.result_dir(label.replace(" @ ", "@")))
            s = result.summary
            t = result.thumbnail
            psnrs[(result.model, dataset or _common.training_datasets(name, single=True))] = s["psnr"]["mean"]
            gain = s["psnr"]["mean"] - float(np.mean(t["psnr"])) if t else None
            # a multi-dataset model's bar is on its own test split, the mixture (row below)
            thumb = [f"{t['size'][0]}x{t['size'][1]}", float(np.mean(t["psnr"])), gain,
                     "-" if components else _verdict(gain)] if t else ["-"] * 4
            rows.append([label, s["psnr"]["mean"], s["psnr"]["std"], s["ssim"]["mean"], s["mae"]["mean"], *thumb])
            summary[label] = result.to_dict()
            means.append([s["psnr"]["mean"], s["ssim"]["mean"], s["mae"]["mean"],
                          float(np.mean(t["psnr"])) if t else float("nan")])
        if components:
            rows.append(_mixture_row(result.model, len(components), np.mean(means, axis=0)))
    text = format_table(["model", "PSNR", "PSNR std", "SSIM", "MAE", "thumbnail", "thumbnail PSNR",
                         "model - thumbnail dB", ">= 3 dB"], rows, title="reconstruction, test split")
    versus = _generalist_rows(psnrs)
    if versus:
        text += "\n\n" + format_table(["generalist", "dataset", "generalist PSNR", "specialist", "specialist PSNR",
                                        "generalist - specialist dB"], versus,
                                       title="the generalist against each specialist (bar: within 1 dB)")
    _common.write(args.output, "summary", text, summary)
    print(text)
    print(f"\nwrote {args.output}")


def _mixture_row(model: str, count: int, mean) -> list:
    """A multi-dataset model on its own test split: the datasets in equal shares (mean of their means)."""
    value, ssim, mae, thumbnail = (float(v) for v in mean)
    gain = value - thumbnail
    thumb = ["-", thumbnail, gain, _verdict(gain)] if np.isfinite(thumbnail) else ["-"] * 4
    return [f"{model} @ its {count} datasets in equal shares", value, "-", ssim, mae, *thumb]


def _verdict(gain: float) -> str:
    """Zoo v2's bar: at least 3 dB over the thumbnail."""
    return "yes" if gain >= 3.0 else "NO"


def _generalist_rows(psnrs: dict) -> list:
    """Each multi-dataset model's PSNR on a dataset against the same-family specialist trained on it alone."""
    rows = []
    for (model, dataset), value in psnrs.items():
        if "generalist" not in model:
            continue
        suffix = model.split("generalist")[-1]  # e.g. "-f8c4": same family and latent size
        family = model.split("-generalist")[0]
        for (other, other_dataset), other_value in psnrs.items():
            if other != model and other_dataset == dataset and other.startswith(family) and other.endswith(suffix):
                rows.append([model, dataset, value, other, other_value, value - other_value])
    return rows


if __name__ == "__main__":
    main()
