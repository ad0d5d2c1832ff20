"""Learned lossy coders on 10- to 16-bit images they were not trained on, beside JPEG 2000 at the same bits.

    python benchmarks/high_bit_depth.py                         # ae-chestxray-f4c3
    python benchmarks/high_bit_depth.py --models stages/codec-chestxray-s3/preset ae-chestxray-f4c3 --record

The zoo's lossy coders were trained on 8-bit images (or CT in Hounsfield units). Clinical
images store 10 to 16 bits: the NEMA WG04 images of ``pydicom-data`` (RG1 chest CR, 15 bits;
RG3 CR, 10 bits; MR2, 12 bits; the 693 CT, 16-bit signed) and the CT test split. Each image is
coded from its stored pixels (``medzoo.compress(pixels, model)``, which decodes to the same
dtype and bit depth) at each quality level, and JPEG 2000 (OpenJPEG, lossless-capable at the
stored bits) at the same bytes, its target PSNR bisected. PSNR is over the image's stored range
(its maximum minus its minimum), MS-SSIM on the image scaled by that range. A row whose PSNR
loses to JPEG 2000 says that a learned coder should not be used on such images.

``--record``: write each model's rows at its first quality into its zoo preset
(``metrics.high_bit_depth``) and the manifest; ``medzoo compress`` warns with them when an input
stores more than 8 bits.
"""

import math

import _common
import lossless
import numpy as np
import seams

#: the CT test slices (Hounsfield units, int16) coded beside the WG04 images
CT_SLICES = 4


def images() -> dict:
    """``{label: (stored pixels (H, W) integer, bits stored)}``: the grey WG04 images and CT test slices."""
    from medzoo.recipes.train import read_split

    out = {}
    for label, (pixels, about) in lossless.wg04_sets().items():
        image = pixels[0]
        if image.ndim == 2:
            out[label] = (image, int(about.split(", ")[-1].split()[0]))
    test, _ = read_split("ct_tcia_512", "test")
    for i in range(min(CT_SLICES, len(test))):
        out[f"CT test slice {i} (HU)"] = (np.rint(np.asarray(test[i], np.float64)).astype(np.int16).squeeze(), 12)
    return out


def scaled(pixels, low, span):
    return ((pixels.astype(np.float64) - low) / span).astype(np.float32)[None, ..., None]


def compare(model, quality, pixels, bits) -> dict:
    """One image at one level: bpp, PSNR and MS-SSIM over the stored range, and JPEG 2000's at the same bytes."""
    import medzoo
    from medzoo.metrics import ms_ssim

    stream = medzoo.compress(pixels, model, quality=quality)
    decoded = np.asarray(medzoo.decompress(stream, model)).reshape(pixels.shape)
    low, span = float(pixels.min()), max(float(pixels.max()) - float(pixels.min()), 1.0)
    # JPEG 2000 takes unsigned samples: a signed image (CT in HU) is coded from its minimum up
    shifted = (pixels.astype(np.int64) - int(low)).astype(np.uint16 if span > 255 else np.uint8)
    j2k_bytes, j2k = seams.jpeg2000_at(shifted, max(8, math.ceil(math.log2(span + 1))), len(stream))
    j2k = j2k.astype(np.float64) + low
    row = {"bits": bits, "bpp": 8 * len(stream) / pixels.size, "jpeg2000_bpp": 8 * j2k_bytes / pixels.size}
    for name, out in (("", decoded), ("jpeg2000_", j2k)):
        mse = float(((out.astype(np.float64) - pixels) ** 2).mean())
        row[f"{name}psnr"] = 10 * math.log10(span ** 2 / max(mse, 1e-12))
        row[f"{name}ms_ssim"] = float(np.asarray(ms_ssim(scaled(pixels, low, span), scaled(out, low, span)))[0])
    return row


def build_parser():
    p = _common.parser("high_bit_depth", __doc__.splitlines()[0])
    p.add_argument("--qualities", type=int, nargs="+", help="levels (default: each model's default and finest "
                                                            "offered level)")
    p.add_argument("--record", action="store_true", help="write each model's rows at its first level into its "
                                                         "zoo preset and the manifest")
    return p


def run(args) -> tuple[dict, str]:
    import medzoo
    from medzoo.codec.latent import levels_of
    from medzoo.evaluate.common import format_table

    pictures = images()
    rows, data = [], {}
    for name in args.models or ["ae-chestxray-f4c3"]:
        model = medzoo.load(name)
        offered = (model.zoo_metadata.get("metrics") or {}).get("qualities") or {}
        default = len(levels_of(model)) // 2
        finest = max(map(int, offered)) if offered else len(levels_of(model)) - 1
        for quality in args.qualities or sorted({default, finest}):
            for label, (pixels, bits) in pictures.items():
                row = compare(model, quality, pixels, bits)
                data.setdefault(name, {}).setdefault(str(quality), {})[label] = row
                wins = row["psnr"] >= row["jpeg2000_psnr"]
                rows.append([name, quality, label, bits, f"{row['bpp']:.3f}", f"{row['psnr']:.2f}",
                             f"{row['ms_ssim']:.4f}", f"{row['jpeg2000_bpp']:.3f}", f"{row['jpeg2000_psnr']:.2f}",
                             f"{row['jpeg2000_ms_ssim']:.4f}", "model" if wins else "JPEG 2000"])
                print(rows[-1], flush=True)
    text = format_table(["model", "q", "image", "bits", "bpp", "PSNR", "MS-SSIM", "J2K bpp", "J2K PSNR",
                         "J2K MS-SSIM", "PSNR winner"], rows,
                        title="learned coders on 10-16-bit images (stored pixels; PSNR over each image's stored "
                              "range) beside JPEG 2000 at the same bytes")
    if getattr(args, "record", False):
        record(data)
    return data, text


def main(argv=None):
    _common.run_and_write(build_parser(), run, argv)


def record(data: dict) -> None:
    """Each model's rows at its first measured level -> ``metrics.high_bit_depth`` of its checkout preset (a zoo
    name, whose manifest entry is refreshed too) or of the preset folder it was given as."""
    import pathlib

    from medzoo.zoo.manifest import add_to_manifest, get_entry
    from medzoo.zoo.presets import read_metadata, update_preset

    presets = pathlib.Path(__file__).resolve().parent.parent / "presets"
    for name, by_quality in data.items():
        quality = min(by_quality, key=int)
        given = pathlib.Path(name)
        folder = given if (given / "metadata.json").is_file() else presets / name
        metrics = dict(read_metadata(folder)["metrics"])
        metrics["high_bit_depth"] = {label: {"quality": int(quality), "bits": int(row["bits"]),
                                             **{k: round(float(v), 5) for k, v in row.items() if k != "bits"}}
                                     for label, row in by_quality[quality].items()}
        update_preset(folder, metrics=metrics)
        if folder.parent == presets:
            add_to_manifest(folder, bundle=bool(get_entry(name)["sources"]["bundled"]))
        print(f"recorded {len(by_quality[quality])} rows of {name} at quality {quality}")


if __name__ == "__main__":
    main()
