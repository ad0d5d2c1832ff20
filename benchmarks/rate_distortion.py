"""Rate-distortion of the zoo's VQ-VAEs and codecs (medzoo streams) against JPEG, JPEG 2000, HTJ2K, WebP, JPEG XL.

    python benchmarks/rate_distortion.py                      # every zoo VQ-VAE, full test split
    python benchmarks/rate_distortion.py --models runs/hyperprior-chestxray/preset   # a hyperprior codec's levels
    python benchmarks/rate_distortion.py --models ae-chestxray-f4c3 --dataset cxr_hannover_1024
                                                              # an autoencoder's latent levels, 1024 px
    python benchmarks/rate_distortion.py --max-images 64      # quick run
    python benchmarks/rate_distortion.py --markdown           # also results.md (Markdown tables)

Every test image is compressed on its own; rates are whole files/streams in bits per
pixel of the model input; a hyperprior codec is one curve, a rate point per quality
level. Prints the RD table, entropy-model rates of the VQ-VAEs (raw log2 K, zlib, iid,
per-position, left/up context), BD-rates against JPEG 2000, each curve's quality at the
radiology guidelines' 10:1 and 30:1 ratios, and encode / decode speed in megapixels per
second on this machine: one image per call (how an archive receives them) and the
--speed-images first images in one call, against each classical codec at its middle setting;
writes results.json, compression.png (RD curves) and compression_examples.png; with
--markdown also results.md: each codec at every VQ-VAE rate point and the BD-rates, as
Markdown tables to paste into a README. The entropy model of each VQ-VAE is fitted on
its training split on first use and cached (medzoo cache, codec/).
"""

import pathlib
import time

import _common

import medzoo
from medzoo.evaluate import classical
from medzoo.evaluate.common import format_table


def build_parser():
    p = _common.parser("compression", __doc__.splitlines()[0])
    p.add_argument("--dataset", help="the test split of this dataset (e.g. cxr_hannover_1024: native 1024 px "
                   "radiographs) instead of the first model's own")
    p.add_argument("--codecs", nargs="+", help="classical codecs (default: all available)")
    p.add_argument("--anchor", default="jpeg2000", help="BD-rate anchor codec (default jpeg2000)")
    p.add_argument("--kind", default="context", choices=["iid", "position", "context"])
    p.add_argument("--speed-images", type=int, default=32, help="images timed for the speed table (default 32)")
    p.add_argument("--markdown", nargs="?", type=pathlib.Path, const=True, default=None, metavar="PATH",
                   help="also write the RD and BD-rate tables as Markdown (default PATH: OUTPUT/results.md)")
    return p


def run(args) -> tuple[list, str]:
    """Compress with every model and codec, save; returns ``[(result, paths)]`` and the table."""
    models = _common.available(args.models or _common.zoo_names("vqvae"))
    with _common.Timer() as t:
        result = medzoo.evaluate.compression(models, max_images=args.max_images, seed=args.seed, codecs=args.codecs,
                                             anchor=args.anchor, kind=args.kind, dataset=args.dataset)
    paths = result.save(args.output)
    speed_rows, speed = speed_table(models, args.speed_images, args.seed, args.dataset, codecs=list(result.codecs))
    text = result.table() + "\n\n" + speed + f"\n\n({t.seconds:.0f} s)"
    _common.write(args.output, "summary", text, {**result.to_dict(), "speed_mp_s": speed_rows})
    if args.markdown:
        path = args.output / "results.md" if args.markdown is True else args.markdown
        path.parent.mkdir(parents=True, exist_ok=True)
        figures = "\n".join(f"![{stem}]({_common.relative(p, path.parent)})" for stem, p in paths.items()
                            if stem != "results")
        path.write_text(f"## Compression\n\n{result.markdown()}\n\n{figures}\n", encoding="utf-8")
        paths["markdown"] = path
    return [(result, paths)], text


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def speed_table(models, count, seed, dataset=None, codecs=("jpeg2000",)) -> tuple[list, str]:
    """Encode and decode megapixels per second: each medzoo model (a codec at its middle level) one image per
    call and ``count`` images in one call, and each classical codec of ``codecs`` at its middle setting for the
    stored bits, one image per call (the first model's images)."""
    from medzoo.evaluate.compression import stored_bits_of, stored_pixels

    rows, first = [], None
    for name in models:
        model = medzoo.codec.stream._resolve_coder(name)
        x, _, _ = medzoo.evaluate.common.given_or_loaded(model, None, None, "test", dataset=dataset,
                                                          max_images=count, seed=seed)
        first = first or (x, stored_bits_of(getattr(model, "preprocess_spec", None)))
        quality = {"quality": model.quality} if hasattr(model, "num_qualities") else {}
        mp = x.shape[1] * x.shape[2] / 1e6
        medzoo.decompress(medzoo.compress(x[:1], model, **quality), model)  # tables, compilation: once per model
        streams = []
        one_enc = _timed(lambda: streams.extend(medzoo.compress(x[i:i + 1], model, **quality) for i in range(len(x))))
        one_dec = _timed(lambda: [medzoo.decompress(s, model) for s in streams])
        batch = []
        all_enc = _timed(lambda: batch.append(medzoo.compress(x, model, **quality)))
        all_dec = _timed(lambda: medzoo.decompress(batch[0], model))
        rows.append({"coder": pathlib.Path(str(name)).name, "images": len(x), "encode_one": len(x) * mp / one_enc,
                     "decode_one": len(x) * mp / one_dec, "encode_batch": len(x) * mp / all_enc,
                     "decode_batch": len(x) * mp / all_dec})
    x, bits = first
    images, mp = stored_pixels(x, bits), x.shape[1] * x.shape[2] / 1e6
    for name in [c for c in codecs if c in classical.available_codecs(bits)]:
        codec = classical.get_codec(name)
        settings = codec.settings_for(bits)
        setting = settings[len(settings) // 2]
        files = []
        enc = _timed(lambda: files.extend(codec.encode(image, setting, bits) for image in images))
        dec = _timed(lambda: [codec.decode(f) for f in files])
        rows.append({"coder": f"{codec.label} ({codec.parameter} {setting}; {codec.library})", "images": len(images),
                     "encode_one": len(images) * mp / enc, "decode_one": len(images) * mp / dec,
                     "encode_batch": None, "decode_batch": None})
    table = format_table(["coder", "images", "encode MP/s (1 per call)", "decode MP/s (1 per call)",
                          "encode MP/s (1 call)", "decode MP/s (1 call)"],
                         [[r["coder"], r["images"], r["encode_one"], r["decode_one"], r["encode_batch"],
                           r["decode_batch"]] for r in rows], title="speed on this machine")
    return rows, table


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
