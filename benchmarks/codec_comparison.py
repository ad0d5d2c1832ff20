"""Compression in one run: lossy rate-distortion at native resolution, lossless, and speed, against classical codecs.

    python benchmarks/codec_comparison.py                      # every native test image; the lossless archive table
    python benchmarks/codec_comparison.py --max-images 2 --no-lossless   # quick look at the lossy side
    python benchmarks/codec_comparison.py --pairs ae-chestxray-f4c3@cxr_hannover_1024 --codecs jpeg2000 jpegxl

The measure of the codec issue (36), composed of the two scripts beside it, run in turn:

* lossy, for each MODEL@DATASET pair (default: ``ae-chestxray-f4c3`` on the 8-bit native chest
  radiographs of ``cxr_hannover_1024``, ``ae-ct-f4c3`` on the CT slices of ``ct_tcia_512`` in
  Hounsfield units): ``rate_distortion.py``'s comparison. Every image its own stream or file;
  PSNR, SSIM and MS-SSIM over the stored range, for CT also PSNR in a soft-tissue window (level
  40, width 400 HU); BD-rates against JPEG 2000 for each; quality at the guideline ratios of the
  stored bits (10:1 and 30:1 for CR/DX, 8:1 and 15:1 for CT's 12 bits); encode and decode
  megapixels per second, one image per call and ``--speed-images`` in one call, beside each
  classical codec. The classical codecs are every one installed that takes the stored bits:
  JPEG, JPEG 2000, HTJ2K, WebP and JPEG XL for 8 bits, JPEG 2000, HTJ2K and JPEG XL for CT
  (``medzoo.evaluate.classical`` names the library of each).
* seams (unless ``--no-seams``): ``seams.py`` with the first pair's model at its default level,
  on RG1 and two Hannover test radiographs (one also enlarged to 2048 px): the error's 128 px
  block means and its step across tile borders, beside JPEG 2000 at the same bits.
* high bit depth (unless ``--no-high-bit-depth``): ``high_bit_depth.py`` with the first pair's
  model, on the 10-16-bit WG04 images and CT test slices beside JPEG 2000 at the same bytes.
* lossless (unless ``--no-lossless``): ``lossless.py`` on the native test splits and the NEMA
  WG04 images of ``pydicom-data``, every image decoded back bit for bit.

Writes each part into a folder of ``--output`` (``lossy-MODEL-DATASET/``, ``lossless/``) and
the whole text into ``summary.txt``.
"""

import argparse

import _common
import high_bit_depth
import lossless
import rate_distortion
import seams

PAIRS = ["ae-chestxray-f4c3@cxr_hannover_1024", "ae-ct-f4c3@ct_tcia_512"]


def build_parser():
    p = _common.parser("compression", __doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=PAIRS, metavar="MODEL@DATASET",
                   help="an any-size autoencoder, hyperprior codec or VQ-VAE and the dataset whose test split it "
                        f"codes (default: {' '.join(PAIRS)})")
    p.add_argument("--codecs", nargs="+", help="classical codecs for the lossy side (default: all available that "
                   "take the stored bits)")
    p.add_argument("--speed-images", type=int, default=4, help="images timed for the speed tables (default 4)")
    p.add_argument("--no-lossless", action="store_true", help="leave out the lossless tables")
    p.add_argument("--no-seams", action="store_true", help="leave out the tile-seam table")
    p.add_argument("--no-high-bit-depth", action="store_true", help="leave out the 10-16-bit table")
    p.add_argument("--markdown", action="store_true", help="also a results.md (Markdown tables) per lossy pair")
    return p


def _pair(text) -> tuple[str, str]:
    model, sep, dataset = text.partition("@")
    if not sep or not model or not dataset:
        raise SystemExit(f"--pairs takes MODEL@DATASET, got {text!r}")
    return model, dataset


def run(args) -> tuple[dict, str]:
    pairs = [_pair(p) for p in args.pairs]
    args.max_images = args.max_images or None  # 0, as lossless.py takes it: every image
    results, texts = {}, []
    for model, dataset in pairs:
        if not _common.available([model], exit_if_none=False):
            continue
        part = argparse.Namespace(models=[model], dataset=dataset, codecs=args.codecs, anchor="jpeg2000",
                                  kind="context", speed_images=args.speed_images, max_images=args.max_images,
                                  seed=args.seed, markdown=True if args.markdown else None,
                                  output=args.output / f"lossy-{_common.result_dir(model)}-{dataset}")
        [(result, _)], text = rate_distortion.run(part)
        results[f"{model}@{dataset}"] = result.to_dict()
        texts.append(f"# lossy: {model} on {dataset}\n\n{text}")
        print(texts[-1] + "\n", flush=True)
    first = pairs[0][0]
    if not args.no_seams:
        part = argparse.Namespace(models=[first], qualities=None, large=2048, max_images=args.max_images or 2,
                                  output=args.output / "seams")
        results["seams"], text = seams.run(part)
        texts.append(f"# tile seams\n\n{text}")
        print(texts[-1] + "\n", flush=True)
    if not args.no_high_bit_depth:
        part = argparse.Namespace(models=[first], qualities=None, record=False)
        results["high_bit_depth"], text = high_bit_depth.run(part)
        texts.append(f"# 10-16-bit images\n\n{text}")
        print(texts[-1] + "\n", flush=True)
    if not args.no_lossless:
        part = argparse.Namespace(models=None, codecs=None, no_dicom=True, sets=["native", "wg04"],
                                  medzoo_versions=[2], max_images=args.max_images,
                                  output=args.output / "lossless")
        results["lossless"], text = lossless.run(part)
        texts.append(f"# lossless\n\n{text}")
    return results, "\n\n".join(texts)


def main(argv=None):
    _common.run_and_write(build_parser(), run, argv)


if __name__ == "__main__":
    main()
