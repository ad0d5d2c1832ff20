"""Put a latent prior into the zoo with the figures benchmarks/generation.py measured on its stored weights.

    python benchmarks/generation.py --models RUN/preset --output OUT ...
    python tools/record_prior_metrics.py RUN/preset OUT/summary.json [--bundle]

Copies the preset to ``presets/NAME/``, writes the figures into its metadata (one dataset:
flat; several, as a generalist prior is judged on each: ``per_dataset``), re-renders its
card and adds it to the manifest (``--bundle``: also into the wheel, as the demo's prior is).
"""

import argparse
import json
import pathlib
import shutil

PRESETS = pathlib.Path(__file__).resolve().parent.parent / "presets"


def main(argv=None):
    from medzoo.evaluate.prior_generation import metrics_from_dict
    from medzoo.zoo.manifest import add_to_manifest
    from medzoo.zoo.presets import read_metadata, update_preset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("preset", type=pathlib.Path, help="the trained prior's preset folder")
    p.add_argument("summary", type=pathlib.Path, help="benchmarks/generation.py's summary.json for that preset")
    p.add_argument("--bundle", action="store_true", help="ship it inside the wheel too")
    args = p.parse_args(argv)
    name = read_metadata(args.preset)["name"]
    results = [r for r in json.loads(args.summary.read_text()).values()
               if r.get("task") == "prior_generation" and r["model"].split()[0] in (name, str(args.preset))]
    if not results:
        raise SystemExit(f"{args.summary} holds no prior_generation result of {name}")
    if len(results) == 1:
        metrics = metrics_from_dict(results[0])
    else:
        metrics = {"per_dataset": {r["data"]: metrics_from_dict(r) for r in results}}
    target = PRESETS / name
    if target.resolve() != args.preset.resolve():
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(args.preset, target)
    update_preset(target, metrics=metrics)
    entry = add_to_manifest(target, bundle=args.bundle)
    print(json.dumps(entry["metrics"], indent=1))


if __name__ == "__main__":
    main()
