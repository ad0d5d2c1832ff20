"""VAE prior samples and latent interpolation strips, with sample statistics against real images.

    python benchmarks/generation.py                       # vae-chestxray (and vae-chestxray-normal)
"""

import _common

import medzoo


def main(argv=None):
    p = _common.parser("generation", __doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    args = p.parse_args(argv)
    _common.setup_logging()
    models = _common.available(args.models or _common.zoo_names("vae"))
    summary = {}
    for name in models:
        result = medzoo.evaluate.generation(name, n_samples=args.samples, temperature=args.temperature,
                                            seed=args.seed, max_images=args.max_images or 256)
        result.save(args.output / _common.result_dir(name))
        print(result.table() + "\n")
        summary[result.model] = result.to_dict()
    _common.write(args.output, "summary", "\n".join(summary), summary)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
