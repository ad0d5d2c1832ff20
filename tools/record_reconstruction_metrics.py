"""Re-measure zoo presets' reconstruction figures on their whole test splits and record them.

    python tools/record_reconstruction_metrics.py ae-ct-f4c3 vae-ct-f8c4 [--dry-run]

For when inference changes and the weights do not (``reconstruct`` matching each tile's mean to
its input's): on each dataset a preset's metrics hold (one dataset: flat; several: ``per_dataset``),
``medzoo.evaluate.reconstruction`` measures PSNR, SSIM and MAE (MAE and RMSE in Hounsfield units on
CT) per image as training's ``test_metrics`` does, and the figures it recorded under those names are
replaced; the others (thumbnail, NELBO, codec levels) stay. A per-dataset preset's headline figures
become the equal-share means of its datasets' again. Then its card is re-rendered and its manifest
entry refreshed. Prints every changed figure, old and new.
"""

import argparse
import pathlib

import numpy as np

PRESETS = pathlib.Path(__file__).resolve().parent.parent / "presets"
#: the figures a reconstruction measures, by their names in a preset's metrics
MEASURED = ("psnr", "ssim", "mae", "mae_hu", "rmse_hu")
#: a figure measured again within this of the recorded one is kept: the last digit moves between runs (TensorFlow)
NOISE = 5e-5


def remeasure(name: str) -> tuple[dict, list]:
    """``name``'s metrics with its reconstruction figures measured again, and ``(dataset, key, old, new)`` rows."""
    import copy

    import medzoo

    model = medzoo.load(name)
    metrics = copy.deepcopy(medzoo.info(name)["metrics"])
    per = metrics.get("per_dataset")
    datasets = per or {medzoo.info(name)["training"]["dataset"]["name"]: metrics}
    changes = []
    for dataset, figures in datasets.items():
        result = medzoo.evaluate.reconstruction(model, dataset=dataset, thumbnail=False)
        if len(result.per_image["psnr"]) != figures["test_images"]:
            raise SystemExit(f"{name} on {dataset}: {len(result.per_image['psnr'])} test images, "
                             f"its metrics say {figures['test_images']}")
        for key in MEASURED:
            if key in figures:
                new = round(float(np.mean(result.per_image[key])), 5)
                if abs(new - figures[key]) > NOISE:
                    changes.append((dataset, key, figures[key], new))
                    figures[key] = new
    if per:  # the headline: each dataset's mean counts once, as training records it
        first = next(iter(per.values()))
        for key in [k for k in first if k != "test_images" and isinstance(first[k], float)]:
            metrics[key] = round(float(np.mean([m[key] for m in per.values()])), 5)
    return metrics, changes


def main(argv=None):
    import medzoo
    from medzoo.zoo.manifest import add_to_manifest
    from medzoo.zoo.presets import update_preset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+", help="zoo presets (folders under presets/)")
    p.add_argument("--dry-run", action="store_true", help="measure and print, record nothing")
    args = p.parse_args(argv)
    for name in args.names:
        metrics, changes = remeasure(name)
        for dataset, key, old, new in changes:
            print(f"{name} | {dataset} | {key}: {old} -> {new}", flush=True)
        if not changes:
            print(f"{name}: every figure as recorded")
        if args.dry_run or not changes:
            continue
        folder = PRESETS / name
        bundled = bool(medzoo.info(name)["sources"].get("bundled"))  # the demo's model travels in the wheel
        update_preset(folder, metrics=metrics)
        add_to_manifest(folder, bundle=bundled)


if __name__ == "__main__":
    main()
