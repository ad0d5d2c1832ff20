"""The ``medzoo`` command line: argument parsing only; every command calls the public API."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _train(args):
    from medzoo.recipes import train

    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.max_images is not None:
        overrides["max_images"] = args.max_images
    for item in args.set or []:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    result = train(args.recipe, output_dir=args.output, strategy=args.strategy, precision=args.precision,
                   resume=args.resume, deterministic=args.deterministic, verbose=args.verbose,
                   write_preset=not args.no_preset, **overrides)
    print(json.dumps({"recipe": result.recipe.name, "epochs": result.epochs_completed,
                      "initial_epoch": result.initial_epoch,
                      "optimizer_steps": result.optimizer_steps,
                      "preset": str(result.preset_dir) if result.preset_dir else None,
                      "metrics": result.metrics}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medzoo", description="Autoencoders for medical imaging, with pretrained weights.")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a zoo recipe and write its preset")
    p.add_argument("recipe", help="recipe name, e.g. vae-chestxray")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="images per replica per step")
    p.add_argument("--max-images", type=int, help="use at most this many images per split (quick runs)")
    p.add_argument("--strategy", default="auto", choices=["auto", "cpu", "mirrored", "multiworker"])
    p.add_argument("--precision", default="float32", choices=["float32", "mixed"])
    p.add_argument("--output", help="run directory (default runs/RECIPE)")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --output")
    p.add_argument("--deterministic", action="store_true", help="seeded, deterministic ops")
    p.add_argument("--no-preset", action="store_true", help="do not write the preset (quick experiments)")
    p.add_argument("--verbose", default="auto", type=lambda v: v if v == "auto" else int(v),
                   help="Keras fit verbosity: auto (progress bar), 0, 1 or 2")
    p.add_argument("--set", action="append", metavar="FIELD=JSON",
                   help='override a recipe field, e.g. --set \'model={"filters": 8}\'')
    p.set_defaults(func=_train)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
