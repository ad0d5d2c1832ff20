"""The ``medzoo`` command line: argument parsing only; every command calls the public API.

What needs no model answers without importing Keras or a backend: ``--help``, ``list``,
``info``, ``download`` and the errors found before a model is built (an unknown model name,
a missing input file, a bad flag). Warnings print as one line each, ``medzoo: warning: ...``,
once per message.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import warnings


def parse_override(item: str) -> tuple:
    """``FIELD=VALUE`` of ``medzoo train --set``: VALUE as JSON, else as a plain string (``dataset=/data/mine.npz``)."""
    from medzoo.errors import ConfigError

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set takes FIELD=VALUE (VALUE in JSON, or a plain string), got {item!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _train(args):
    _ready()
    from medzoo.recipes import train
    from medzoo.recipes.train import finish

    if args.finish:
        if not args.output:
            raise SystemExit("medzoo: error: --finish needs --output, the run directory to finish")
        inference = dict(parse_override(item) for item in args.set or [])
        if set(inference) - {"inference_tile"}:
            raise SystemExit("medzoo: error: with --finish only --set inference_tile=[TILE, OVERLAP] applies (how the "
                             "finished run is measured); the training settings are the run's own")
        preset = finish(args.output, weights=args.weights, **inference)
        print(json.dumps({"recipe": args.recipe, "preset": str(preset)}, indent=2))
        return
    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.max_images is not None:
        overrides["max_images"] = args.max_images
    overrides.update(parse_override(item) for item in args.set or [])
    result = train(args.recipe, output_dir=args.output, strategy=args.strategy, precision=args.precision,
                   resume=args.resume, deterministic=args.deterministic, verbose=args.verbose,
                   write_preset=not args.no_preset, time_budget_s=args.time_budget, data_workers=args.data_workers,
                   **overrides)
    print(json.dumps({"recipe": result.recipe.name, "epochs": result.epochs_completed,
                      "initial_epoch": result.initial_epoch,
                      "optimizer_steps": result.optimizer_steps,
                      "wall_time_s": round(result.wall_time_s, 1),
                      "preset": str(result.preset_dir) if result.preset_dir else None,
                      "metrics": result.metrics}, indent=2))


def _duration(text: str) -> float:
    """Seconds from ``540``, ``90s``, ``9m`` or ``2h``."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    scale = units.get(text[-1:], None)
    try:
        value = float(text[:-1] if scale else text) * (scale or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (give seconds, or 9m, 2h)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return value


EVALUATION_TASKS = ("reconstruction", "compression", "anomaly", "probe", "denoise", "generation", "prior_generation",
                    "segmentation")


def _task_options(args, task):
    """The keyword arguments of one evaluation task, from the command line."""
    import medzoo

    options = {"seed": args.seed}
    if task == "prior_generation":  # a latent prior judged on its dataset's test split (docs/generation.md)
        if args.samples is not None:
            options["n_samples"] = args.samples
        if args.bootstrap is not None:
            options["bootstrap"] = args.bootstrap
        return args.model, {**options, **({"dataset": args.dataset} if args.dataset else {})}
    if args.max_images is not None:
        options["max_images"] = args.max_images
    if args.dataset is not None:
        options["dataset"] = args.dataset
    if task != "probe":
        options["split"] = args.split
    model = args.model
    if task == "compression":
        others = args.compare if args.compare is not None else (
            [] if args.only else [m for m in medzoo.evaluate.zoo_vqvae_models(like=args.model) if m != args.model])
        model = [args.model, *others]
        options["kind"] = args.kind
        if args.codecs:
            options["codecs"] = args.codecs
    elif task == "denoise":
        model = [args.model, *(args.compare or [])]
        if args.sigmas:
            options["sigmas"] = tuple(args.sigmas)
        if args.no_baselines:
            options["classical"] = ()
    elif task in ("anomaly", "probe"):
        if args.no_baselines:
            options["baselines"] = ()
        if args.bootstrap is not None:
            options["n_bootstrap"] = args.bootstrap
        if task == "probe" and args.cnn_epochs is not None:
            options["cnn_epochs"] = args.cnn_epochs
    elif task == "generation" and args.samples is not None:
        options["n_samples"] = args.samples
    elif task == "segmentation" and args.largest_region:
        options["largest_region"] = True
    return model, options


def _evaluate(args):
    import pathlib
    import shlex

    _ready(args.model, [args.data] if args.data else [])
    import medzoo

    if args.data is not None and args.dataset is not None:
        raise medzoo.ConfigError("--data and --dataset name the same thing; give one")
    if args.report is not None and args.output is not None:
        raise medzoo.ConfigError("--report writes the report folder, --output one task's results folder; give one")
    tasks = list(dict.fromkeys(args.task or ["reconstruction"]))
    data = args.data
    if args.report is not None and data is None and args.dataset is None:
        data = medzoo.evaluate.files.default_data(args.model)
        if data is not None:
            print(f"medzoo: the dataset {args.model} was trained on is not on disk (set MEDZOO_DATA_DIR or pass "
                  "--data): the report uses the sample chest X-rays shipped with medzoo instead", file=sys.stderr)
    results = []
    for task in tasks:
        model, options = _task_options(args, task)
        result = medzoo.evaluate(model, task, data=data, **options)
        print(result.table() + "\n")
        results.append(result)
        if args.report is None:
            output = pathlib.Path(args.output) if args.output else pathlib.Path("medzoo-eval") / pathlib.Path(
                args.model).name / task
            if args.output and len(tasks) > 1:
                output = output / task
            paths = result.save(output)
            print("wrote " + ", ".join(str(p) for p in paths.values()) + "\n")
    if args.report is not None:
        notes = [f"Made by `{shlex.join(['medzoo', *args.argv])}`."]
        paths = medzoo.evaluate.write_report(results, args.report, notes=notes)
        print(f"report: {paths['report']} (metrics.json and {len(paths) - 2} figures next to it)")


def _list(args):
    import medzoo

    table = medzoo.list_models()
    print(json.dumps(list(table), indent=2) if args.json else table)


def _check_model(name) -> None:
    """Refuse an unknown zoo name before anything imports Keras (paths and hf:// references pass)."""
    import pathlib

    if name is None or str(name).startswith("hf://") or pathlib.Path(name).exists() or os.sep in str(name):
        return
    from medzoo.zoo.manifest import get_entry

    get_entry(name)


def _check_inputs(paths) -> None:
    """Refuse a missing input file or folder before a model is loaded."""
    import pathlib

    from medzoo.errors import DataError

    missing = [p for p in paths if not pathlib.Path(p).exists()]
    if missing:
        raise DataError(f"{missing[0]}: no such file or folder" + (f" (and {len(missing) - 1} more missing)"
                                                                   if len(missing) > 1 else ""))


def _ready(model=None, inputs=(), *, backend=True) -> None:
    """Before a command builds a model: the name and the inputs checked, then the backend imported quietly.

    ``backend=False`` for work that builds no model (lossless coding): it never imports Keras
    or TensorFlow, which would cost seconds and hundreds of MB for a 64x64 image.
    """
    _check_model(model)
    _check_inputs(inputs)
    if backend and logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        from medzoo.backend import import_tensorflow_quietly

        import_tensorflow_quietly()


def _info(args):
    import medzoo

    print(json.dumps(medzoo.info(args.model), indent=2) if args.json else medzoo.zoo.describe(args.model))


def _download(args):
    import medzoo
    from medzoo.errors import ConfigError

    names = list(args.models)
    if args.all:
        if names:
            raise ConfigError("--all downloads every zoo entry: name no model with it")
        names = [entry["name"] for entry in medzoo.list_models()]
    if not names:
        raise ConfigError("name the models to download (or --all)")
    options = dict(cache_dir=args.cache_dir, force_download=args.force, local_files_only=args.offline)
    if args.source:
        if not args.to:
            raise ConfigError("--from copies presets out of a checkout into a mirror: give the mirror with --to DIR")
        from medzoo.zoo.load import copy_from_checkout

        fetched = copy_from_checkout(names, args.source, args.to)
    elif args.to:
        fetched = medzoo.zoo.write_mirror(names, args.to, **options)
    else:
        fetched = [medzoo.zoo.fetch(name, **options) for name in names]
    where = {"mirror": "the offline mirror", "cache": "the medzoo cache",
             "bundled": "the copy bundled in the package (nothing to download)",
             "hub": "downloaded from the Hub into the medzoo cache"}
    for item in fetched:
        print(f"{item.name} {item.version or ''}".rstrip() + f": {len(item.files)} files, "
              f"{item.size_bytes / 1e6:.1f} MB, sha256 verified, in {where[item.source]}")
        for filename, digest in item.files.items():
            print(f"  {filename:<18} {digest}")
        print(item.folder)
    if args.to:
        print(f"\nmirror of {len(fetched)} model(s) in {args.to}: set MEDZOO_MIRROR={args.to} where there is no "
              "internet")


def _push(args):
    from medzoo.errors import ConfigError
    from medzoo.zoo.publish import publish

    if args.all == bool(args.models):
        raise ConfigError("name the models to publish, or --all (not both)")
    commits = publish(args.models or None, org=args.org, store=args.store, token=args.token)
    for name, commit in commits.items():
        print(f"{name}: hf://{args.org}/{name}@{commit}")
    print(f"\npinned {len(commits)} hub source(s) in the manifest: commit it, then build the wheel")


def _reconstruct(args):
    _ready(args.model, args.inputs)
    import medzoo
    from medzoo.evaluate.common import format_table

    records = medzoo.evaluate.reconstruct_files(args.model, args.inputs, args.output, batch_size=args.batch_size)
    keys = ["psnr", "ssim", "mae"] + (["mae_hu"] if "mae_hu" in records[0] else [])  # CT: the error in HU too
    rows = [[r["input"], *(r[k] for k in keys)] for r in records]
    if len(records) > 1:
        rows.append(["mean", *(sum(r[k] for r in records) / len(records) for k in keys)])
    print(format_table(["input", "PSNR dB", "SSIM", "MAE", "MAE HU"][:len(keys) + 1], rows))
    sizes = ", ".join(sorted({"x".join(map(str, r["size"])) for r in records}))
    white = sorted({r["error_white_at"] for r in records})
    print(f"\nwrote {len(records)} reconstruction(s) at {sizes} (NAME_reconstruction.png) and as many comparisons "
          f"(NAME_comparison.png: input | reconstruction | |error|, white at an error of "
          f"{white[0]:g}{'-' + format(white[-1], 'g') if len(white) > 1 else ''} of the value range) to {args.output}")


def _segment(args):
    _ready(args.model, args.inputs)
    import medzoo
    from medzoo.evaluate.common import format_table

    records = medzoo.evaluate.segment_files(args.model, args.inputs, args.output, pixel_spacing=args.pixel_spacing,
                                            circumference=args.circumference, threshold=args.threshold,
                                            largest_region=args.largest_region, exclude=args.exclude or ())
    extra = [k for k in ("area_mm2", "circumference_mm", "circumference_px") if any(k in r for r in records)]
    rows = [[r["input"], "x".join(map(str, r["size"])), r["area_px"], *(r.get(k, "-") for k in extra)]
            for r in records]
    print(format_table(["input", "size", "area px", *[k.replace("_", " ") for k in extra]], rows))
    print(f"\nwrote {len(records)} mask(s), overlay(s) and segment.csv to {args.output}")
    unmeasured = [r["input"] for r in records if "area_mm2" not in r]
    if unmeasured:
        print(f"no pixel spacing for {len(unmeasured)} image(s) (no DICOM PixelSpacing, no manifest.json stating "
              "it): their areas and circumferences are in pixels; pass --pixel-spacing MM for millimetres")


def _encode(args):
    _ready(args.model, args.inputs)
    import medzoo

    latents, refs = medzoo.evaluate.encode_files(args.model, args.inputs, args.output, batch_size=args.batch_size)
    if isinstance(latents, list):  # an any-size model: one latent per image, each of its own size
        for i, (ref, z) in enumerate(zip(refs, latents)):
            print(f"{i:4d}  {ref}  latent_{i} {z.dtype} {tuple(z.shape)}")
        print(f"\nwrote {args.output}: {len(latents)} latents (latent_0 ... latent_{len(latents) - 1}, files, sizes)")
        return
    for i, ref in enumerate(refs):
        print(f"{i:4d}  {ref}")
    print(f"\nwrote {args.output}: latents {latents.dtype} {tuple(latents.shape)} (one row per image above)")


def _split_model(items, default):
    """``[NAME] INPUT...``: the first item is a model name unless it is an existing path or an image file name."""
    import pathlib

    from medzoo.data.images import IMAGE_EXTENSIONS

    first = pathlib.Path(items[0])
    is_input = first.exists() or first.suffix.lower() in IMAGE_EXTENSIONS
    is_preset = first.is_dir() and (first / "model.weights.h5").is_file()
    if len(items) > 1 and (is_preset or not is_input):
        return items[0], items[1:]
    return default, items


_NAME_A_MODEL = "name one, e.g. medzoo compress ae-chestxray-f4c3 INPUT -o OUT.mzc, to code lossily"


def _compress(args):
    from medzoo.codec.stream import DEFAULT_KIND, NotIntegerPixelsError  # no Keras behind it
    from medzoo.errors import ConfigError

    model, inputs = _split_model(args.items, args.model)
    if args.model and model != args.model:
        raise ConfigError(f"the model is named twice: --model {args.model} and {model}")
    # no model named: every stored pixel kept, as a PACS user expects of `compress scan.dcm`; a lossy
    # default would code a radiograph as some model's thumbnail
    defaulted = model is None and not args.lossless
    lossless = args.lossless or defaulted
    setting = next((o for o in ("quality", "ratio", "kind") if getattr(args, o) is not None), None)
    if model is None and setting is not None:
        raise ConfigError(f"--{setting} is a model's setting, and no model was named (so the pixels are coded "
                          f"losslessly): {_NAME_A_MODEL}")
    if args.ratio is not None and (args.lossless or args.quality is not None):
        raise ConfigError("--ratio picks a lossy level: give it without "
                          + ("--lossless" if args.lossless else "--quality"))
    if args.ratio is not None and not (math.isfinite(args.ratio) and args.ratio > 1):  # before a model loads
        raise ConfigError(f"a compression ratio is a number above 1 (30 means 30:1), got {args.ratio:g}")
    _ready(model, inputs, backend=model is not None)
    import medzoo

    try:
        written = medzoo.evaluate.compress_files(inputs, args.output, model, kind=args.kind or DEFAULT_KIND,
                                                 quality=args.quality, lossless=lossless, ratio=args.ratio)
    except NotIntegerPixelsError as error:
        if not defaulted:
            raise
        raise NotIntegerPixelsError(f"{error}; no model was named, so medzoo compress coded losslessly: "
                                    f"{_NAME_A_MODEL}") from error
    header = written.header
    pixels = header.num_images * header.image_shape[0] * header.image_shape[1]
    coded = "" if written.given_pixels == pixels else \
        (f"; {header.bits_per_pixel:.4f} bits per pixel of the {pixels} pixels at "
         f"{'x'.join(map(str, header.image_shape))} the model coded and decompress gives back")
    print(f"{header.num_images} image(s) -> {args.output}: {header.total_bytes} bytes "
          f"({written.bits_per_given_pixel:.4f} bits per pixel of the {written.given_pixels} pixels given, header of "
          f"{header.header_bytes} bytes included{coded})")
    if header.kind in ("lossless", "lossless-colour", "hyperprior-lossless"):
        how = {"lossless": "the causal coder alone",
               "lossless-colour": "the causal coder alone, on luma and chroma"}.get(
            header.kind, f"on the prediction of {header.model_name or 'the codec'} at quality {header.quality}")
        print(f"lossless ({how}); medzoo decompress gives back the stored pixels exactly"
              + (f"\n(no model named, so lossless; {_NAME_A_MODEL})" if defaulted else ""))
    elif header.kind in ("hyperprior", "hyperprior-pixels", "autoencoder", "autoencoder-pixels"):
        print(f"model {header.model_name} {header.model_version}, quality {header.quality}"
              + (f", {written.ratio:.1f}:1 of the {written.stored_bits} stored bits (asked {args.ratio:g}:1)"
                 if args.ratio is not None else "")
              + ("; medzoo decompress gives back pixels of the stored type and bit depth"
                 if header.kind.endswith("-pixels") else ""))
    else:
        print(f"model {header.model_name} {header.model_version}, {header.kind} entropy model; "
              f"the pixels given would take {written.given_pixels * header.image_shape[2]} bytes at 8 bits")


def _decompress(args):
    import pathlib

    from medzoo.codec.stream import CAUSAL_KINDS, check_named_model, read_stream_file

    _check_inputs([args.stream])
    causal = False  # a lossless stream of the causal coder alone needs no model, so no Keras
    if args.model is None and pathlib.Path(args.stream).is_file():  # the model the stream names, before Keras
        _, header = read_stream_file(args.stream)
        causal = header.kind in CAUSAL_KINDS
        if not causal:
            check_named_model(header)
    _ready(args.model, [args.stream], backend=not causal)
    import medzoo
    from medzoo.codec.stream import LOSSY_PIXEL_MODES, PIXEL_MODES

    header, images, paths = medzoo.evaluate.decompress_file(args.stream, args.output, model=args.model,
                                                            output_format=args.format)
    made = f"{header.model_name} {header.model_version}" if header.model_name else "no named model"
    print(f"{args.stream}: {header.total_bytes} bytes, {header.bits_per_pixel:.4f} bits per pixel, {made}")
    suffix = paths[0].suffix.lower() if paths else ""
    where = paths[0] if len(paths) == 1 else args.output
    if suffix == ".dcm":
        how = "lossy pixels, marked Lossy Image Compression 01 and DERIVED, with new SOP Instance and Series UIDs" \
            if header.kind in LOSSY_PIXEL_MODES else "every stored pixel exactly"
        print(f"wrote {len(paths)} DICOM file(s) with their original headers ({how}) to {where}")
        return
    kind = "PNG(s)" if suffix == ".png" else "array(s) (.npy)"
    size = "x".join(map(str, header.image_shape))
    if header.kind in PIXEL_MODES:
        how = f"the codec's {images.dtype} pixels" if header.kind in LOSSY_PIXEL_MODES else \
            f"every stored pixel exactly ({images.dtype})"
        print(f"wrote {len(paths)} {kind} of {size}, {how}, to {where}")
    else:
        print(f"wrote {len(paths)} {kind} of {size} to {where}")


def _generate(args):
    _ready(args.model)
    import medzoo

    written = medzoo.evaluate.generate_files(args.model, args.output, n=args.n, label=args.label, seed=args.seed,
                                             steps=args.steps, guidance=args.guidance, dicom=args.dicom)
    kind = "DICOM Secondary Capture file(s) (ImageType DERIVED, marked synthetic)" if args.dicom else "PNG file(s)"
    print(f"wrote {len(written['files'])} synthetic {kind} of label {written['label']} ({written['steps']} steps, "
          f"guidance {written['guidance']:g}) and the contact sheet {written['sheet']} to {args.output}")


def _demo(args):
    import time

    import medzoo

    _ready(args.model)
    start = time.perf_counter()
    result = medzoo.demo(args.output, model=args.model, seed=args.seed)
    print(result.table())
    print(f"\nreport: {result.report} (with {', '.join(p.name for k, p in result.paths.items() if k != 'report')}); "
          f"{time.perf_counter() - start:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medzoo", description="Autoencoders for medical imaging, with pretrained weights.")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a zoo recipe and write its preset")
    p.add_argument("recipe", help="recipe name, e.g. vae-chestxray")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="images per replica per step")
    p.add_argument("--max-images", type=int, help="use at most this many images per split (quick runs)")
    p.add_argument("--strategy", default="auto", choices=["auto", "cpu", "mirrored", "multiworker"],
                   help="TensorFlow: tf.distribute strategy (auto: all GPUs, or TF_CONFIG's cluster); JAX: auto is "
                        "data-parallel over all visible devices")
    p.add_argument("--precision", default="float32", choices=["float32", "mixed", "bfloat16"],
                   help="mixed (float16) and bfloat16 compute need a GPU")
    p.add_argument("--time-budget", type=_duration, metavar="DURATION",
                   help="train for about this long (e.g. 540, 9m, 2h): the epochs that fit are measured first")
    p.add_argument("--data-workers", type=int, default=1, metavar="N",
                   help="threads cutting training crops ahead of the step (JAX and PyTorch; keeps a GPU fed)")
    p.add_argument("--finish", action="store_true",
                   help="turn the finished run in --output (e.g. trained on a GPU machine with --no-preset) into a "
                        "preset: test metrics measured here, the run's hardware and wall time kept")
    p.add_argument("--weights", default="best", choices=["best", "final"],
                   help="with --finish: the lowest-val_loss weights (default) or the last epoch's")
    p.add_argument("--output", help="run directory (default runs/RECIPE)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --output (one killed after training is measured, not retrained)")
    p.add_argument("--deterministic", action="store_true", help="seeded, deterministic ops")
    p.add_argument("--no-preset", action="store_true", help="do not write the preset (quick experiments)")
    p.add_argument("--verbose", default="auto", type=lambda v: v if v == "auto" else int(v),
                   help="Keras fit verbosity: auto (progress bar), 0, 1 or 2")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help='override a recipe field, value in JSON or a plain string, e.g. --set \'model={"filters": 8}\' '
                        '--set dataset=/data/mine.npz --set encoder=null')
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="evaluate a model on tasks: prints tables, writes results.json and PNGs "
                                        "or, with --report, a report folder")
    p.add_argument("model", help="zoo name (see medzoo list) or preset directory")
    p.add_argument("--task", action="append", choices=EVALUATION_TASKS,
                   help="task to run (repeat for several; default reconstruction)")
    p.add_argument("--output", help="folder for results.json and the figures (default medzoo-eval/MODEL/TASK; "
                                    "with several tasks, a subfolder per task)")
    p.add_argument("--report", metavar="DIR", help="write a report folder instead: metrics.json, every figure and "
                                                   "report.md (the tables and the figures)")
    p.add_argument("--data", metavar="NPZ_OR_DIR",
                   help="npz name or path, a folder of DICOM/PNG/JPEG files (class subfolders give labels), or "
                        "'samples' (the X-rays shipped with medzoo); default: the dataset the model was trained on "
                        "(with --report, the samples when that dataset is not on disk)")
    p.add_argument("--split", default="test",
                   help="split of the npz to evaluate on (default test; probe uses all three)")
    p.add_argument("--dataset", help="the same as --data with an npz")
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
    p.add_argument("--largest-region", action="store_true",
                   help="segmentation: keep each class's largest connected region, holes filled")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("list", help="the pretrained models of the zoo")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=_list)

    p = sub.add_parser("info", help="everything the zoo says about one model")
    p.add_argument("model", help="zoo name")
    p.add_argument("--json", action="store_true", help="print the full manifest entry as JSON")
    p.set_defaults(func=_info)

    p = sub.add_parser("download", help="make models' files available (the Hub -> the medzoo cache, or an offline "
                                        "mirror folder with --to), verify their sha256, and print where they are")
    p.add_argument("models", nargs="*", metavar="MODEL", help="zoo names, or hf://org/repo@revision")
    p.add_argument("--all", action="store_true", help="every entry of the zoo")
    p.add_argument("--to", metavar="DIR",
                   help="write an offline mirror: each preset into DIR/NAME/ (then MEDZOO_MIRROR=DIR loads offline)")
    p.add_argument("--from", dest="source", metavar="CHECKOUT",
                   help="copy the presets from a medzoo checkout (or its presets/ folder) instead of the Hub: for "
                        "entries with no Hub copy; needs --to")
    p.add_argument("--cache-dir", help="medzoo cache folder (default $MEDZOO_CACHE or ~/.cache/medzoo)")
    p.add_argument("--force", action="store_true", help="download again even if a verified copy is on disk")
    p.add_argument("--offline", action="store_true", help="never touch the network (check the local copies only)")
    p.set_defaults(func=_download)

    p = sub.add_parser("push", help="publish presets of the checkout's presets/ folder to the Hugging Face Hub, one "
                                    "repository per model, and pin each commit in the manifest (maintainers)")
    p.add_argument("models", nargs="*", metavar="MODEL", help="zoo names")
    p.add_argument("--all", action="store_true", help="every entry of the zoo")
    p.add_argument("--org", required=True, help="the Hub user or organisation that owns the repositories")
    p.add_argument("--store", help="folder of <name>/ presets (default: the checkout's presets/)")
    p.add_argument("--token", help="a Hugging Face token with write access (default: the logged-in one)")
    p.set_defaults(func=_push)

    inputs_help = "image files (DICOM by content, PNG, JPEG, NPY) or folders of them"
    p = sub.add_parser("reconstruct", help="reconstruct images; writes input | reconstruction | |error| PNGs and "
                                           "prints PSNR per image")
    p.add_argument("model", help="zoo name or preset directory")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=inputs_help)
    p.add_argument("-o", "--output", required=True, help="folder for the PNGs")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=_reconstruct)

    p = sub.add_parser("segment", help="segment images at native resolution; writes mask and overlay PNGs and a "
                                       "CSV of areas (and fetal head circumferences)")
    p.add_argument("model", help="zoo name or preset directory of a segmenter (seg-...)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=inputs_help)
    p.add_argument("-o", "--output", required=True, help="folder for the PNGs and segment.csv")
    p.add_argument("--pixel-spacing", type=float, default=None,
                   help="mm per pixel for files that do not state it (DICOM PixelSpacing is used otherwise)")
    p.add_argument("--circumference", action=argparse.BooleanOptionalAction, default=None,
                   help="report the fitted-ellipse circumference (default: on for fetal-head models)")
    p.add_argument("--threshold", type=float, default=0.5, help="foreground probability threshold (binary models)")
    p.add_argument("--exclude", action="append", metavar="GLOB",
                   help="leave out matching files (masks of other inputs, NAME_mask.png, are left out anyway)")
    p.add_argument("--largest-region", action=argparse.BooleanOptionalAction, default=None,
                   help="keep each class's largest connected region, holes filled (default: on for fetal-head "
                        "models)")
    p.set_defaults(func=_segment)

    p = sub.add_parser("encode", help="encode images into latents (.npy, or .npz with the file names); "
                                      "a VQ-VAE gives integer code maps")
    p.add_argument("model", help="zoo name or preset directory")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=inputs_help)
    p.add_argument("-o", "--output", required=True, help="latents file, .npy or .npz")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=_encode)

    p = sub.add_parser("compress", help="compress images into one medzoo stream (.mzc): losslessly when no model "
                                        "is named (exact stored pixels, DICOM 8-16 bit included), or with a "
                                        "VQ-VAE, a hyperprior codec or an any-size autoencoder (its rounded latent)",
                       usage="medzoo compress [-h] [MODEL] INPUT [INPUT ...] -o OUT.mzc [--quality Q | --ratio N] "
                             "[--lossless] [--kind KIND]")
    p.add_argument("items", nargs="+", metavar="[MODEL] INPUT",
                   help="optional model (zoo name or preset directory; none: lossless, every stored pixel "
                        "kept), then " + inputs_help)
    p.add_argument("-o", "--output", required=True, help="the stream file to write (.mzc)")
    p.add_argument("--model", help="the model, instead of naming it first")
    p.add_argument("--quality", type=int, help="a hyperprior codec's or autoencoder's quality level (0 = fewest "
                                               "bits; default the middle one)")
    p.add_argument("--ratio", type=float, metavar="N",
                   help="instead of --quality: the codec's level nearest N:1 of the stored bits (radiology "
                        "guidelines: 10:1 or 30:1 for CR/DX chest, 8:1 or 15:1 for CT), from the levels its "
                        "preset measured (medzoo info MODEL)")
    p.add_argument("--lossless", action="store_true",
                   help="code the pixels exactly as stored: the default when no model is named, and with a "
                        "hyperprior codec on its prediction (DICOM stored values, 8/16-bit PNG, NPY); "
                        "decompress writes them back as PNG (8-bit, 16-bit grey) or .npy (signed, wider, 16-bit "
                        "colour), or, "
                        "if DICOM files (and their headers) came in, as DICOM files with the same headers and "
                        "every pixel")
    p.add_argument("--kind", choices=["iid", "position", "context"],
                   help="a VQ-VAE's entropy model (default context)")
    p.set_defaults(func=_compress)

    p = sub.add_parser("decompress", help="decode a medzoo stream (.mzc) into one file per image: streams of "
                                          "DICOM files give DICOM files with their original headers; streams of "
                                          "stored pixels give them in the same dtype (exact if lossless) as PNG "
                                          "where a PNG holds them exactly (8-bit, 16-bit grey), else .npy; "
                                          "other streams give PNGs")
    p.add_argument("stream", help="the .mzc file")
    p.add_argument("-o", "--output", required=True,
                   help="a folder for the files, or for a stream of one image a file path: .dcm (a DICOM "
                        "stream), .png or .npy")
    p.add_argument("--format", default="auto", choices=["auto", "png", "npy"],
                   help="the files to write for a stream that is not DICOM (default auto: PNG where it holds the "
                        "pixels exactly, else .npy; npy: always .npy, the decoded floats for model images)")
    p.add_argument("--model", help="the model (default: the zoo model the stream names)")
    p.set_defaults(func=_decompress)

    p = sub.add_parser("generate", help="draw synthetic images from a latent prior (e.g. prior-chestxray-f8c4); "
                                        "writes PNGs (or DICOM with --dicom) and a contact sheet")
    p.add_argument("model", help="a latent prior: zoo name or preset directory")
    p.add_argument("-n", type=int, default=16, help="how many images (default 16)")
    p.add_argument("--label", help="a label of the prior (medzoo info NAME lists them); default: any")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same images (default 0)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the preset's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the preset's)")
    p.add_argument("--dicom", action="store_true", help="write DICOM Secondary Capture files marked synthetic")
    p.add_argument("-o", "--output", default="medzoo-generated", help="folder (default medzoo-generated)")
    p.set_defaults(func=_generate)

    p = sub.add_parser("demo", help="run a bundled model on the sample chest X-rays shipped with medzoo and "
                                    "write a report (no network or data needed)")
    p.add_argument("--output", default="medzoo-demo", help="report folder (default medzoo-demo)")
    p.add_argument("--model", default="vae-chestxray-f8c4",
                   help="zoo name or preset directory (default vae-chestxray-f8c4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior samples")
    p.set_defaults(func=_demo)
    return parser


class _OneLineWarnings:
    """``warnings.showwarning`` for the command line: ``medzoo: warning: MESSAGE``, each message once."""

    def __init__(self):
        self.seen = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if text in self.seen:
            return
        self.seen.add(text)
        print(f"medzoo: warning: {text}", file=sys.stderr if file is None else file)


#: a command's list of positional inputs, which options may split (``compress MODEL --ratio 30 scan.dcm``)
_INPUT_LISTS = ("items", "inputs")


def _parse(parser: argparse.ArgumentParser, argv: list) -> argparse.Namespace:
    """``parser.parse_args``, except that inputs given after an option join the command's input list.

    argparse fills a ``nargs="+"`` positional from the first run of plain words only, so
    ``medzoo compress ae-chestxray-f4c3 --quality 4 scan.dcm -o out.mzc`` would leave ``scan.dcm``
    "unrecognized"; every word argparse left over that is not an option goes to the list in order.
    """
    args, rest = parser.parse_known_args(argv)
    field = next((name for name in _INPUT_LISTS if isinstance(getattr(args, name, None), list)), None)
    if rest and field is not None and not any(word.startswith("-") and len(word) > 1 for word in rest):
        getattr(args, field).extend(rest)
        rest = []
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv=None) -> int:
    """Run one command; a medzoo error (bad name, missing file, ...) prints one line and returns 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(build_parser(), argv)
    args.argv = argv
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # TensorFlow's C++ start-up lines (CUDA probing, oneDNN) are not the user's business; set before TF loads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if level != "DEBUG" else "0")
    from medzoo.errors import MedzooError

    previous = warnings.showwarning
    if level != "DEBUG":
        warnings.showwarning = _OneLineWarnings()
    try:
        args.func(args)
    except (MedzooError, OSError) as exc:
        if level == "DEBUG":
            raise
        message = str(exc) or type(exc).__name__
        print(f"medzoo: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("medzoo: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous
    return 0


if __name__ == "__main__":
    sys.exit(main())
