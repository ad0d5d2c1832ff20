"""Reconstruction quality of every zoo model on the test split: PSNR, SSIM, MS-SSIM, MAE, against a bicubic thumbnail.

The thumbnail keeps as many numbers as the model's continuous latent (VQ-VAE code maps have none),
downscaled with an antialiased bicubic filter and enlarged back, on the same images. The bars: a
continuous latent beats its thumbnail by at least 3 dB on the stored 128-256 px test splits, and by
at least 2 dB on the native-resolution test splits (`cxr_hannover_1024`, `ct_tcia_512`), each image
at its stored size; CT rows add the error in Hounsfield units. A model trained on several datasets
is measured on each one's test split; the generalist also next to each dataset's specialist of the
same family and latent size when it is in the run (bar: within 1 dB), and on its own test split,
the datasets in equal shares (the mean of their means), where its 3 dB bar applies.

    python benchmarks/reconstruction.py
    python benchmarks/reconstruction.py --models ae-chestxray vqvae-chestxray --max-images 64
    python benchmarks/reconstruction.py --models ae-chestxray-f4c3 --datasets cxr_hannover_1024 kermany_pediatric_cxr_128
"""

import numpy as np

import _common

import medzoo
from medzoo.data import NATIVE_SETS
from medzoo.evaluate.common import format_table

#: the thumbnail bar in dB: native-resolution test splits, and the stored 128-256 px ones
NATIVE_BAR, STORED_BAR = 2.0, 3.0


def main(argv=None):
    p = _common.parser("reconstruction", __doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", help="test splits to measure every model on (default: each model's "
                   "training datasets), e.g. cxr_hannover_1024 ct_tcia_512")
    args = p.parse_args(argv)
    _common.setup_logging()
    models = _common.available(args.models or _common.zoo_names())
    rows, summary, psnrs = [], {}, {}
    for name in models:
        components = args.datasets or _common.training_datasets(name)
        generalist = "generalist" in str(name) and not args.datasets
        means = []  # a multi-dataset model's (PSNR, SSIM, MS-SSIM, MAE, thumbnail PSNR) per dataset
        for dataset in components or [None]:
            result = medzoo.evaluate.reconstruction(name, dataset=dataset, max_images=args.max_images,
                                                    seed=args.seed)
            label = result.model if dataset is None else f"{result.model} @ {dataset}"
            result.save(args.output / _common.result_dir(label.replace(" @ ", "@")))
            s = result.summary
            t = result.thumbnail
            own = dataset or _common.training_datasets(name, single=True)
            psnrs[(result.model, own)] = s["psnr"]["mean"]
            gain = s["psnr"]["mean"] - float(np.mean(t["psnr"])) if t else None
            bar = NATIVE_BAR if own in NATIVE_SETS else STORED_BAR
            # the generalist's bar is on its own test split, the mixture (row below)
            thumb = [f"{t['size'][0]}x{t['size'][1]}", float(np.mean(t["psnr"])), float(np.mean(t["ms_ssim"])), gain,
                     "-" if generalist else _verdict(gain, bar)] if t else ["-"] * 5
            hu = [s["mae_hu"]["mean"], float(np.mean(t["mae_hu"])) if t else "-"] if "mae_hu" in s else ["-", "-"]
            rows.append([label, result.to_dict()["images"], s["psnr"]["mean"], s["psnr"]["std"], s["ssim"]["mean"],
                         s["ms_ssim"]["mean"], s["mae"]["mean"], *hu, *thumb])
            summary[label] = result.to_dict()
            means.append([s["psnr"]["mean"], s["ssim"]["mean"], s["ms_ssim"]["mean"], s["mae"]["mean"],
                          float(np.mean(t["psnr"])) if t else float("nan")])
        if generalist and components:
            rows.append(_mixture_row(result.model, len(components), np.mean(means, axis=0)))
    text = format_table(["model", "images", "PSNR", "PSNR std", "SSIM", "MS-SSIM", "MAE", "MAE HU", "thumbnail MAE HU",
                         "thumbnail", "thumbnail PSNR", "thumbnail MS-SSIM", "model - thumbnail dB", "bar"], rows,
                        title="reconstruction, test split (bar: +3 dB over the thumbnail on stored 128-256 px "
                              "splits, +2 dB on native-resolution ones)")
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
    value, ssim, msssim, mae, thumbnail = (float(v) for v in mean)
    gain = value - thumbnail
    thumb = ["-", thumbnail, "-", gain, _verdict(gain, STORED_BAR)] if np.isfinite(thumbnail) else ["-"] * 5
    return [f"{model} @ its {count} datasets in equal shares", "-", value, "-", ssim, msssim, mae, "-", "-", *thumb]


def _verdict(gain: float, bar: float) -> str:
    return f"+{bar:g} dB: yes" if gain >= bar else f"+{bar:g} dB: NO"


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
