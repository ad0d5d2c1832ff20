"""Reconstruction quality of every zoo model on the test split: PSNR, SSIM, MAE (mean and std).

    python benchmarks/reconstruction.py
    python benchmarks/reconstruction.py --models ae-chestxray vqvae-chestxray --max-images 64
"""

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
        rows.append([result.model, s["psnr"]["mean"], s["psnr"]["std"], s["ssim"]["mean"], s["ssim"]["std"],
                     s["mae"]["mean"]])
        summary[result.model] = result.to_dict()
    text = format_table(["model", "PSNR", "PSNR std", "SSIM", "SSIM std", "MAE"], rows,
                        title="reconstruction, test split")
    _common.write(args.output, "summary", text, summary)
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
