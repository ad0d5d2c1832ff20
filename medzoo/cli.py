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


EVALUATION_TASKS = ("reconstruction", "compression", "anomaly", "probe", "denoise", "generation")


def _evaluate(args):
    import pathlib

    import medzoo

    options = {"seed": args.seed}
    if args.max_images is not None:
        options["max_images"] = args.max_images
    if args.dataset is not None:
        options["dataset"] = args.dataset
    if args.task != "probe":
        options["split"] = args.split
    model = args.model
    if args.task == "compression":
        others = args.compare if args.compare is not None else (
            [] if args.only else [m for m in medzoo.evaluate.zoo_vqvae_models(like=args.model) if m != args.model])
        model = [args.model, *others]
        options["kind"] = args.kind
        if args.codecs:
            options["codecs"] = args.codecs
    elif args.task == "denoise":
        model = [args.model, *(args.compare or [])]
        if args.sigmas:
            options["sigmas"] = tuple(args.sigmas)
        if args.no_baselines:
            options["classical"] = ()
    elif args.task in ("anomaly", "probe"):
        if args.no_baselines:
            options["baselines"] = ()
        if args.bootstrap is not None:
            options["n_bootstrap"] = args.bootstrap
        if args.task == "probe" and args.cnn_epochs is not None:
            options["cnn_epochs"] = args.cnn_epochs
    elif args.task == "generation" and args.samples is not None:
        options["n_samples"] = args.samples
    output = pathlib.Path(args.output or pathlib.Path("medzoo-eval") / pathlib.Path(args.model).name / args.task)
    result = medzoo.evaluate(model, args.task, **options)
    paths = result.save(output)
    print(result.table())
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))


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

    p = sub.add_parser("evaluate", help="evaluate a model on a task: prints a table, writes results.json and PNGs")
    p.add_argument("model", help="zoo name (see medzoo.list_models()) or preset directory")
    p.add_argument("--task", required=True, choices=EVALUATION_TASKS)
    p.add_argument("--output", help="folder for results.json and the figures (default medzoo-eval/MODEL/TASK)")
    p.add_argument("--split", default="test", help="split to evaluate on (default test; probe uses all three)")
    p.add_argument("--dataset", help="npz name or path (default: the dataset the model was trained on)")
    p.add_argument("--max-images", type=int, help="a stratified random subset per split (quick runs)")
    p.add_argument("--seed", type=int, default=0, help="seed of subsets, noise, bootstrap and sampling")
    p.add_argument("--compare", nargs="+", metavar="MODEL",
                   help="compression: the other VQ-VAEs of the rate curve (default: every zoo VQ-VAE); "
                        "denoise: more models to compare")
    p.add_argument("--only", action="store_true", help="compression: this model only, no zoo curve")
    p.add_argument("--codecs", nargs="+", help="compression: classical codecs (default: all available)")
    p.add_argument("--kind", default="context", choices=["iid", "position", "context"],
                   help="compression: entropy model of the streams (default context)")
    p.add_argument("--no-baselines", action="store_true", help="anomaly/probe/denoise: skip the baselines")
    p.add_argument("--bootstrap", type=int, help="anomaly/probe: bootstrap replicates of the AUROC intervals")
    p.add_argument("--cnn-epochs", type=int, help="probe: maximum epochs of the supervised CNN baseline")
    p.add_argument("--sigmas", type=float, nargs="+", help="denoise: noise levels (std of the [0, 1] range)")
    p.add_argument("--samples", type=int, help="generation: prior samples to draw")
    p.set_defaults(func=_evaluate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
