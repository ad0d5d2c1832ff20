"""Rate-distortion of the zoo's VQ-VAEs (medzoo streams) against JPEG, JPEG 2000, WebP and JPEG XL.

    python benchmarks/compression.py                      # every zoo VQ-VAE, full test split
    python benchmarks/compression.py --max-images 64      # quick run

Every test image is compressed on its own; rates are whole files/streams in bits per
pixel of the 128 x 128 model input. Prints the RD table, entropy-model rates (raw
log2 K, zlib, iid, per-position, left/up context) and BD-rates against JPEG 2000;
writes results.json, compression.png (RD curves) and compression_examples.png.
The entropy model of each VQ-VAE is fitted on its training split on first use and
cached (medzoo cache, codec/).
"""

import _common

import medzoo


def main(argv=None):
    p = _common.parser("compression", __doc__.splitlines()[0])
    p.add_argument("--codecs", nargs="+", help="classical codecs (default: all available)")
    p.add_argument("--anchor", default="jpeg2000", help="BD-rate anchor codec (default jpeg2000)")
    p.add_argument("--kind", default="context", choices=["iid", "position", "context"])
    args = p.parse_args(argv)
    _common.setup_logging()
    models = _common.available(args.models or _common.zoo_names("vqvae"))
    with _common.Timer() as t:
        result = medzoo.evaluate.compression(models, max_images=args.max_images, seed=args.seed, codecs=args.codecs,
                                             anchor=args.anchor, kind=args.kind)
    result.save(args.output)
    text = result.table() + f"\n\n({t.seconds:.0f} s)"
    _common.write(args.output, "summary", text, result.to_dict())
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
