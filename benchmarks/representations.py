"""What the learned representations are good for: anomaly detection, linear probes and denoising, in one run.

    python benchmarks/representations.py                  # full test split, the three tasks' default models
    python benchmarks/representations.py --max-images 48 --cnn-epochs 1 --bootstrap 50 --sigmas 0.1   # smoke test

Runs benchmarks/anomaly.py, probe.py and denoise.py (their ``run`` functions, with the
same defaults and the same per-task output folders under ``--output``), prints their
three summary tables, and writes ``results.md``: Markdown tables to paste into the
README (anomaly: model, score, AUROC, 95% CI; probe: features, AUROC [CI], accuracy,
balanced accuracy and the differences to the supervised CNN; denoise: noise level x
method, PSNR / SSIM) with links to the figures. A zoo model that does not exist yet
(one still training) is skipped with a note, and a task whose models are all missing
is skipped as a whole.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import _common
import anomaly
import denoise
import probe

TASKS = {"anomaly": anomaly, "probe": probe, "denoise": denoise}
TITLES = {"anomaly": "Anomaly detection", "probe": "Linear probes of the frozen encoders", "denoise": "Denoising"}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument("--max-images", type=int, help="stratified random subset per split, for quick runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int,
                   help="bootstrap replicates of the AUROC intervals (default: anomaly 2000, probe 1000)")
    p.add_argument("--cnn-epochs", type=int, help="maximum epochs of the probe's CNN baseline (default 30)")
    p.add_argument("--sigmas", type=float, nargs="+", help="denoising noise levels (default 0.05 0.1 0.15 0.2)")
    p.add_argument("--anomaly-models", nargs="+", help=f"default {' '.join(anomaly.MODELS)} (and any other zoo "
                                                       "model trained on normal images only)")
    p.add_argument("--probe-models", nargs="+", help=f"default {' '.join(probe.MODELS)}")
    p.add_argument("--denoise-models", nargs="+", help=f"default {' '.join(denoise.MODELS)}")
    p.add_argument("--output", type=pathlib.Path, default=_common.RESULTS / "representations",
                   help="folder for results.md, summary.txt/json and one subfolder per task "
                        "(default benchmarks/results/representations)")
    return p


def _default_models(task):
    return anomaly.default_models() if task == "anomaly" else TASKS[task].MODELS


def _task_argv(task, args, models) -> list[str]:
    """The task script's command line: its own parser supplies every default not given here."""
    argv = ["--seed", str(args.seed), "--output", str(args.output / task), "--models", *models]
    if args.max_images:
        argv += ["--max-images", str(args.max_images)]
    if args.bootstrap and task in ("anomaly", "probe"):
        argv += ["--bootstrap", str(args.bootstrap)]
    if args.cnn_epochs and task == "probe":
        argv += ["--cnn-epochs", str(args.cnn_epochs)]
    if args.sigmas and task == "denoise":
        argv += ["--sigmas", *map(str, args.sigmas)]
    return argv


def _markdown(task, results) -> str:
    """One task's table as Markdown: the rows of all its results (baselines once) under one header."""
    from medzoo.evaluate.anomaly import AnomalyResult
    from medzoo.evaluate.probe import ProbeResult
    from medzoo.evaluate.report import markdown_table

    first = results[0]
    if task == "anomaly":
        rows = anomaly.summary_rows(results)
        return f"{first.caption()}\n\n{markdown_table(AnomalyResult.SUMMARY_HEADERS, rows)}"
    if task == "probe":
        return f"{first.caption()}\n\n{markdown_table(ProbeResult.SUMMARY_HEADERS, probe.summary_rows(results))}"
    return first.markdown()


def _figures(runs, folder: pathlib.Path) -> list[str]:
    links = []
    for result, paths in runs:
        label = getattr(result, "model", None) or ", ".join(getattr(result, "models", []))
        links += [f"![{label}: {stem}]({_common.relative(path, folder)})" for stem, path in paths.items()
                  if stem != "results"]
    return links


def main(argv=None):
    args = build_parser().parse_args(argv)
    _common.setup_logging()
    sections = [f"<!-- benchmarks/representations.py {' '.join(sys.argv[1:] if argv is None else argv)} -->",
                "# What the representations are good for", ""]
    texts, summary = [], {"settings": {k: str(v) if isinstance(v, pathlib.Path) else v
                                       for k, v in vars(args).items()}, "skipped": {}, "tasks": {}}
    for task in args.tasks:
        wanted = getattr(args, f"{task}_models") or _default_models(task)
        models = _common.available(wanted, exit_if_none=False)
        missing = [m for m in wanted if m not in models]
        sections += [f"## {TITLES[task]}", ""]
        if missing:
            summary["skipped"][task] = missing
        if not models:
            print(f"note: {task} skipped: none of {', '.join(wanted)} is available", file=sys.stderr)
            sections += [f"Skipped: none of {', '.join(f'`{m}`' for m in wanted)} is in the zoo yet.", ""]
            continue
        with _common.Timer() as t:
            runs, text = TASKS[task].run(TASKS[task].build_parser().parse_args(_task_argv(task, args, models)))
        results = [r for r, _ in runs]
        texts.append(text)
        summary["tasks"][task] = {"seconds": t.seconds, "results": {str(i): r.to_dict() for i, r in enumerate(results)}}
        sections += [_markdown(task, results), ""]
        if missing:
            sections += [f"Not in the zoo yet, skipped: {', '.join(f'`{m}`' for m in missing)}.", ""]
        sections += _figures(runs, args.output) + [""]

    text = "\n\n".join(texts)
    _common.write(args.output, "summary", text, summary)
    markdown = args.output / "results.md"
    markdown.write_text("\n".join(sections), encoding="utf-8")
    print("\n" + text)
    print(f"\nwrote {markdown} (Markdown tables and figure links) and {args.output}")


if __name__ == "__main__":
    main()
