"""Put a rate-trained codec into the zoo, offering the levels where its real streams match or beat JPEG 2000.

    python benchmarks/codec_comparison.py --pairs STAGE/preset@DATASET --codecs jpeg2000 jpegxl --no-lossless \
        --no-seams --no-high-bit-depth --output OUT
    python tools/record_codec_qualities.py STAGE/preset OUT/summary.json

Reads the benchmark's streams of every level (each test image its own stream, header included)
and JPEG 2000's sweep of the same images, keeps the levels whose PSNR is at least JPEG 2000's at
the same bits (image by image at each image's bytes, where the benchmark compared them so), and writes them as the preset's ``metrics.qualities`` (bpp, PSNR, SSIM,
MS-SSIM, and JPEG 2000's PSNR and MS-SSIM at that bpp), with the BD-rates against JPEG 2000. Then
copies the preset to ``presets/NAME/``, re-renders its card and adds it to the manifest (not
bundled: the wheel keeps only the demo's models). ``medzoo compress --ratio N`` picks among these
levels.
"""

import argparse
import json
import math
import pathlib
import shutil

PRESETS = pathlib.Path(__file__).resolve().parent.parent / "presets"


def offered_rows(result: dict, anchor: str = "jpeg2000") -> tuple[dict, dict]:
    """A codec_comparison lossy result -> ``({quality: row} of the levels at or above ``anchor``, {quality: row}
    of the others)``, each row with the anchor's PSNR and MS-SSIM at the level's mean bpp.

    Where the benchmark compared the level with the anchor image by image at the bytes it spent on
    each (``single_points[...]["codecs"][anchor]["per_image"]``), that decides: the mean curves also
    credit how a codec spreads bits across images, which a user coding one image does not get.
    Otherwise the level's mean PSNR against the anchor's mean curve does.
    """
    import numpy as np

    from medzoo.evaluate.stats import quality_at_rate

    sweep = result["codecs"][anchor]
    each = {p["model"]: ((p.get("codecs") or {}).get(anchor) or {}).get("per_image") or {}
            for p in result.get("single_points") or []}
    offered, below = {}, {}
    for point in result["models"]:
        if "quality" not in point:
            continue
        row = {k: round(float(point[k]), 5) for k in ("step", "bpp", "psnr", "ssim", "ms_ssim") if k in point}
        if "factor" in point:
            row = {"factor": int(point["factor"]), **row}
        for metric in ("psnr", "ms_ssim"):
            value = quality_at_rate(sweep["bpp"], sweep[metric], point["bpp"]) if metric in sweep else None
            if value is not None and np.isfinite(value):
                row[f"{anchor}_{metric}"] = round(float(value), 5)
        same_bytes = (each.get(point["model"]) or {}).get("psnr") or {}
        if same_bytes.get("mean_difference") is not None:
            row[f"{anchor}_same_bytes_psnr_difference"] = round(float(same_bytes["mean_difference"]), 5)
            ahead = same_bytes["mean_difference"] >= 0
        else:
            ahead = row["psnr"] >= row.get(f"{anchor}_psnr", float("inf"))
        (offered if ahead else below)[str(int(point["quality"]))] = row
    return offered, below


def main(argv=None):
    from medzoo.zoo.manifest import add_to_manifest
    from medzoo.zoo.presets import read_metadata, update_preset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("preset", type=pathlib.Path, help="the codec's preset folder (a stage)")
    p.add_argument("summary", type=pathlib.Path, help="benchmarks/codec_comparison.py's summary.json for it")
    p.add_argument("--description", help="a new description for the zoo entry")
    args = p.parse_args(argv)
    metadata = read_metadata(args.preset)
    name = metadata["name"]
    lossy = {k: v for k, v in json.loads(args.summary.read_text()).items()
             if k.split("@")[0] in (name, str(args.preset)) and v.get("task") == "compression"}
    if len(lossy) != 1:
        raise SystemExit(f"{args.summary} should hold one lossy result of {name}; it holds {sorted(lossy)}")
    (pair, result), = lossy.items()
    offered, below = offered_rows(result)
    if not offered:
        raise SystemExit(f"no level of {name} is at or above JPEG 2000: nothing to offer")
    curve = next(iter(result["bd_rate_percent"].values()))
    metrics = dict(metadata["metrics"])
    for per in (metrics.get("per_dataset") or {}).values():
        per.pop("qualities", None)  # the training's own table: replaced by the benchmark's
    metrics["qualities"] = offered
    metrics["levels_below_jpeg2000"] = below
    metrics["bd_rate_vs_jpeg2000_percent"] = {m: round(float(v["value_percent"]), 2) for m, v in curve.items()
                                              if isinstance(v, dict) and v.get("value_percent") is not None
                                              and math.isfinite(v["value_percent"])}
    target = PRESETS / name
    if target.resolve() != args.preset.resolve():
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(args.preset, target)
    update_preset(target, metrics=metrics, description=args.description)
    add_to_manifest(target, bundle=False)
    print(f"{name}: offers levels {', '.join(offered)} ({pair}); below JPEG 2000: {', '.join(below) or 'none'}")


if __name__ == "__main__":
    main()
