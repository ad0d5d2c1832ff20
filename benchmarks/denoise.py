"""Denoising: the denoising autoencoder (and the plain one) against Gaussian blur and non-local means.

    python benchmarks/denoise.py                          # dae-chestxray-f4c3, ae-chestxray-f4c3
    python benchmarks/denoise.py --max-images 64 --sigmas 0.05 0.1 0.2

Additive Gaussian noise at several levels (the denoiser trained at sigma 0.1; the plain
autoencoder it was fine-tuned from shows what that training bought); classical
filters tuned per level on validation images. PSNR / SSIM table, denoise.png
(one image at every level) and denoise_curves.png.
"""

import _common

import medzoo

MODELS = ["dae-chestxray-f4c3", "ae-chestxray-f4c3"]


def build_parser():
    p = _common.parser("denoise", __doc__.splitlines()[0])
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2])
    return p


def run(args) -> tuple[list, str]:
    """Denoise with every model and the classical filters, save; returns ``[(result, paths)]`` and the table."""
    models = _common.available(args.models or MODELS)
    with _common.Timer() as t:
        result = medzoo.evaluate.denoise(models, sigmas=tuple(args.sigmas), max_images=args.max_images, seed=args.seed)
    paths = result.save(args.output)
    text = result.table() + f"\n\n({t.seconds:.0f} s)"
    _common.write(args.output, "summary", text, result.to_dict())
    return [(result, paths)], text


def main(argv=None):
    _common.run_and_print(build_parser(), run, argv)


if __name__ == "__main__":
    main()
