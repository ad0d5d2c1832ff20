"""Reconstruction quality of every zoo model on the test split: PSNR, SSIM, MAE, against a bicubic thumbnail.

The thumbnail keeps as many numbers as the model's continuous latent (VQ-VAE code maps have none),
downscaled with an antialiased bicubic filter and enlarged back, on the same images.

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
    rows, summary = [], {}
    for name in models:
        result = medzoo.evaluate.reconstruction(name, max_images=args.max_images, seed=args.seed)
        result.save(args.output / _common.result_dir(name))
        s = result.summary
        t = result.thumbnail
        thumb = [f"{t['size'][0]}x{t['size'][1]}", float(np.mean(t["psnr"])), s["psnr"]["mean"] - float(
            np.mean(t["psnr"]))] if t else ["-", "-", "-"]
        rows.append([result.model, s["psnr"]["mean"], s["psnr"]["std"], s["ssim"]["mean"], s["ssim"]["std"],
                     s["mae"]["mean"], *thumb])
        summary[result.model] = result.to_dict()
    text = format_table(["model", "PSNR", "PSNR std", "SSIM", "SSIM std", "MAE", "thumbnail", "thumbnail PSNR",
                         "model - thumbnail dB"], rows,
                        title="reconstruction, test split")
    _common.write(args.output, "summary", text, summary)
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
