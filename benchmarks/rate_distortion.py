"""Rate-distortion of the zoo's VQ-VAEs and hyperprior codecs (medzoo streams) against JPEG, JPEG 2000, WebP, JPEG XL.

    python benchmarks/rate_distortion.py                      # every zoo VQ-VAE, full test split
    python benchmarks/rate_distortion.py --models runs/codec-chestxray/preset   # a hyperprior codec's levels
    python benchmarks/rate_distortion.py --max-images 64      # quick run
    python benchmarks/rate_distortion.py --markdown           # also results.md (Markdown tables)

Every test image is compressed on its own; rates are whole files/streams in bits per
pixel of the model input; a hyperprior codec is one curve, a rate point per quality
level. Prints the RD table, entropy-model rates of the VQ-VAEs (raw log2 K, zlib, iid,
per-position, left/up context) and BD-rates against JPEG 2000;
writes results.json, compression.png (RD curves) and compression_examples.png; with
--markdown also results.md: each codec at every VQ-VAE rate point and the BD-rates, as
Markdown tables to paste into a README. The entropy model of each VQ-VAE is fitted on
its training split on first use and cached (medzoo cache, codec/).
"""

import pathlib

import _common

import medzoo


def build_parser():
    p = _common.parser("compression", __doc__.splitlines()[0])
    p.add_argument("--codecs", nargs="+", help="classical codecs (default: all available)")
    p.add_argument("--anchor", default="jpeg2000", help="BD-rate anchor codec (default jpeg2000)")
    p.add_argument("--kind", default="context", choices=["iid", "position", "context"])
    p.add_argument("--markdown", nargs="?", type=pathlib.Path, const=True, default=None, metavar="PATH",
                   help="also write the RD and BD-rate tables as Markdown (default PATH: OUTPUT/results.md)")
    return p


def run(args) -> tuple[list, str]:
    """Compress with every model and codec, save; returns ``[(result, paths)]`` and the table."""
    models = _common.available(args.models or _common.zoo_names("vqvae"))
    with _common.Timer() as t:
        result = medzoo.evaluate.compression(models, max_images=args.max_images, seed=args.seed, codecs=args.codecs,
                                             anchor=args.anchor, kind=args.kind)
    paths = result.save(args.output)
    text = result.table() + f"\n\n({t.seconds:.0f} s)"
    _common.write(args.output, "summary", text, result.to_dict())
    if args.markdown:
        path = args.output / "results.md" if args.markdown is True else args.markdown
        path.parent.mkdir(parents=True, exist_ok=True)
        figures = "\n".join(f"![{stem}]({_common.relative(p, path.parent)})" for stem, p in paths.items()
                            if stem != "results")
        path.write_text(f"## Compression\n\n{result.markdown()}\n\n{figures}\n", encoding="utf-8")
        paths["markdown"] = path
    return [(result, paths)], text


def main(argv=None):
    args = build_parser().parse_args(argv)
    _common.setup_logging()
    runs, text = run(args)
    print(text)
    if "markdown" in runs[0][1]:
        print(f"\n{runs[0][0].markdown()}\n\nwrote {runs[0][1]['markdown']}")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
