"""Do lossy outputs show the tiles they were coded in? Block offsets and border jumps beside JPEG 2000 at the same bits.

    python benchmarks/seams.py              # RG1 (pydicom-data), the Hannover test split, one of them at 2048 px
    python benchmarks/seams.py --models ae-chestxray-f4c3 --qualities 2 4 6

A model that codes a large image in tiles normalised apart draws them: a constant offset per
tile, and a step at each tile border, which a radiologist's narrow window shows first. For
each image and quality level, on the stored pixels and over the stored range:

* ``block sd``: the standard deviation of the error's means over 128 px blocks (a flat
  offset per tile shows here; a coder without tiles stays near zero);
* ``border jump``: the mean |error step| between neighbouring pixel columns and rows that
  straddle a tile border, divided by the same mean elsewhere (1: no seam);
* PSNR over the stored range; bits per pixel.

JPEG 2000 (OpenJPEG, one tile) is coded at the same bits per pixel on each image (its target
PSNR bisected until its size matches) and measured the same way. Figures: each image's error
in a narrow window, model beside JPEG 2000.
"""

import argparse
import math
import pathlib

import _common
import numpy as np

BLOCK = 128


def block_sd(error, block=BLOCK) -> float:
    """Standard deviation of the means of ``error`` over whole ``block`` x ``block`` blocks."""
    h, w = (s // block * block for s in error.shape)
    means = error[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    return float(means.std())


def border_jump(error, borders_y, borders_x) -> float:
    """Mean |step| of ``error`` across tile borders over the mean |step| between other neighbours (1: no seam)."""
    dy, dx = np.abs(np.diff(error, axis=0)), np.abs(np.diff(error, axis=1))
    at_y = [b - 1 for b in borders_y if 0 < b < error.shape[0]]
    at_x = [b - 1 for b in borders_x if 0 < b < error.shape[1]]
    if not at_y and not at_x:
        return float("nan")
    across = np.concatenate([dy[at_y].ravel(), dx[:, at_x].ravel()])
    keep_y, keep_x = np.ones(len(dy), bool), np.ones(dx.shape[1], bool)
    keep_y[at_y], keep_x[at_x] = False, False
    elsewhere = np.concatenate([dy[keep_y].ravel(), dx[:, keep_x].ravel()])
    return float(across.mean() / max(elsewhere.mean(), 1e-12))


def tile_borders(length: int, tile: int, factor: int) -> list[int]:
    """Pixel positions (in the original image) where coded tiles meet, for tiles of ``tile`` px at 1/``factor``."""
    from medzoo.models.tiling import tile_starts

    reduced = math.ceil(length / factor)
    return sorted({int(round(s * factor)) for s in tile_starts(reduced, tile, 0)[1:]})


def jpeg2000_at(image, bits: int, target_bytes: int):
    """OpenJPEG at the size nearest ``target_bytes`` (bisecting its target PSNR): ``(bytes, decoded)``."""
    from medzoo.evaluate.classical import _j2k_encode, _pil_decode_any

    low, high, best = 10.0, 90.0, None
    for _ in range(14):
        db = (low + high) / 2
        data = _j2k_encode(image, db, bits=bits)
        if best is None or abs(len(data) - target_bytes) < abs(len(best) - target_bytes):
            best = data
        low, high = (db, high) if len(data) < target_bytes else (low, db)
    return len(best), _pil_decode_any(best).astype(image.dtype)


def measure(reference, decoded, value_range, borders) -> dict:
    error = decoded.astype(np.float64) - reference.astype(np.float64)
    mse = float((error ** 2).mean())
    return {"psnr": 10 * math.log10(value_range ** 2 / max(mse, 1e-12)), "block_sd": block_sd(error),
            "border_jump": border_jump(error, *borders), "error_rms": math.sqrt(mse)}


def images(args) -> dict:
    """``{label: (stored pixels (H, W) integer, bits stored)}``: RG1 and the Hannover test radiographs."""
    import pydicom
    from pydicom.data import get_testdata_file

    from medzoo.recipes.train import read_split

    out = {}
    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        print("(no RG1_UNCR.dcm: pip install pydicom-data; left out)")
    else:
        ds = pydicom.dcmread(path)
        out["RG1 CR chest 1841x1955"] = (ds.pixel_array, int(ds.BitsStored))
    test, _ = read_split("cxr_hannover_1024", "test")
    for i, image in enumerate(test[: args.max_images or len(test)]):
        out[f"Hannover test {i} 1024 px"] = (np.asarray(image), 8)
    if args.large:  # the first test radiograph enlarged (bicubic): a size no training crop came near
        from medzoo.metrics import resize_bicubic

        big = resize_bicubic(np.asarray(test[0], np.float32)[None, ..., None] / 255.0, args.large, args.large)
        out[f"Hannover test 0 enlarged to {args.large} px"] = (
            np.clip(np.rint(big[0, ..., 0] * 255.0), 0, 255).astype(np.uint8), 8)
    return out


def build_parser():
    p = _common.parser("seams", __doc__.splitlines()[0])
    p.add_argument("--qualities", type=int, nargs="+", help="quality levels (default: the model's default one)")
    p.add_argument("--large", type=int, default=2048, help="also the first test radiograph enlarged to this side "
                                                             "(0: not)")
    p.add_argument("--reconstruct", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure model.reconstruct's tiles, their means matched to the input's and not")
    return p


def run(args) -> tuple[dict, str]:
    import medzoo
    from medzoo.codec.latent import levels_of
    from medzoo.evaluate import plots
    from medzoo.evaluate.common import format_table

    rows, data, panels = [], {}, []
    pictures = images(args)  # read once: RG1 and the test radiographs serve every model, level and table
    for name in args.models or ["ae-chestxray-f4c3"]:
        model = medzoo.load(name)
        levels = levels_of(model)
        tile = int((getattr(model, "default_tile", None) or (128, 0))[0])
        for quality in args.qualities or [len(levels) // 2]:
            factor = levels[quality][0]
            for label, (pixels, bits) in pictures.items():
                stream = medzoo.compress(pixels, model, quality=quality)
                decoded = np.asarray(medzoo.decompress(stream, model)).reshape(pixels.shape)
                value_range = float(pixels.max()) - float(pixels.min())
                borders = (tile_borders(pixels.shape[0], tile, factor), tile_borders(pixels.shape[1], tile, factor))
                ours = measure(pixels, decoded, value_range, borders)
                bpp = 8 * len(stream) / pixels.size
                j2k_bytes, j2k = jpeg2000_at(pixels, bits, len(stream))
                theirs = measure(pixels, j2k, value_range, borders)
                key = f"{name} q{quality} | {label}"
                data[key] = {"bpp": bpp, "model": ours, "jpeg2000": {**theirs, "bpp": 8 * j2k_bytes / pixels.size}}
                rows.append([name, quality, label, f"{bpp:.3f}", f"{ours['psnr']:.2f}", f"{ours['block_sd']:.2f}",
                             f"{ours['border_jump']:.2f}", f"{8 * j2k_bytes / pixels.size:.3f}",
                             f"{theirs['psnr']:.2f}", f"{theirs['block_sd']:.2f}", f"{theirs['border_jump']:.2f}"])
                print(rows[-1], flush=True)
                if len(panels) < 4:
                    window = 4 * ours["error_rms"]
                    panels.append((key, [np.clip((decoded - pixels.astype(np.float64)) / window + 0.5, 0, 1),
                                         np.clip((j2k - pixels.astype(np.float64)) / window + 0.5, 0, 1)]))
    text = format_table(["model", "q", "image", "bpp", "PSNR", "block sd", "border jump", "J2K bpp", "J2K PSNR",
                         "J2K block sd", "J2K border jump"], rows,
                        title=f"tile seams: error means over {BLOCK} px blocks (sd, stored units) and the error's "
                              "step across tile borders over elsewhere (1 = none), beside JPEG 2000 at the same bits")
    if args.reconstruct:
        text += "\n\n" + _reconstruct_seams(args, pictures, data)
    if panels:
        fig = plots.image_rows([(f"{key}: error, model | JPEG 2000 (+-2 RMS)", np.stack(pair)[..., None])
                                for key, pair in panels], scale=4.0)
        plots.save(fig, pathlib.Path(args.output) / "errors.png")
    return data, text


def _reconstruct_seams(args, pictures, data) -> str:
    """The same measures for ``model.reconstruct`` (overlapping tiles, cross-faded), its tiles' means matched to
    the input's (the default) and as the network gives them; border jumps at the middle of each overlap."""
    import medzoo
    from medzoo.evaluate.common import format_table
    from medzoo.models.tiling import tile_starts

    rows = []
    for name in args.models or ["ae-chestxray-f4c3"]:
        model = medzoo.load(name)
        tile, overlap = (int(v) for v in (getattr(model, "default_tile", None) or (128, 0)))
        for label, (pixels, _) in pictures.items():
            low, value_range = float(pixels.min()), float(pixels.max()) - float(pixels.min())
            x = ((pixels - low) / value_range).astype(np.float32)[None, ..., None]
            borders = tuple([s + overlap // 2 for s in tile_starts(n + (-n) % model.downsample_factor, tile, overlap)[1:]]
                            for n in pixels.shape)
            for matched in (True, False):
                out = np.asarray(model.reconstruct(x, match_tile_means=matched))[0, ..., 0] * value_range + low
                m = measure(pixels, out, value_range, borders)
                data[f"{name} reconstruct{' matched' if matched else ''} | {label}"] = m
                rows.append([name, "yes" if matched else "no", label, f"{m['psnr']:.2f}", f"{m['block_sd']:.2f}",
                             f"{m['border_jump']:.2f}"])
                print(rows[-1], flush=True)
    return format_table(["model", "tile means matched", "image", "PSNR", "block sd", "border jump"], rows,
                        title=f"tile seams of reconstruct ({tile} px tiles, {overlap} px cross-faded): error means "
                              f"over {BLOCK} px blocks (sd, stored units), step at mid-overlap over elsewhere")


def main(argv=None):
    _common.run_and_write(build_parser(), run, argv)


if __name__ == "__main__":
    main()
