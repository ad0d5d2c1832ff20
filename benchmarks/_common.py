"""Shared plumbing of the benchmark scripts: options, zoo model selection, writing tables and JSON."""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def parser(task: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--models", nargs="+", help="zoo names or preset paths (default: see the script)")
    p.add_argument("--max-images", type=int, help="stratified random subset per split, for quick runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=pathlib.Path, default=RESULTS / task,
                   help=f"folder for JSON, tables and figures (default benchmarks/results/{task})")
    return p


def zoo_names(family=None, predicate=None) -> list[str]:
    """Zoo models, optionally of one family and passing ``predicate(entry)``."""
    import medzoo
    from medzoo.zoo import info

    names = []
    for m in medzoo.list_models():
        if family and m["family"] != family:
            continue
        if predicate and not predicate(info(m["name"])):
            continue
        names.append(m["name"])
    return names


def available(wanted: list[str], exit_if_none: bool = True) -> list[str]:
    """The names in ``wanted`` that are zoo models or existing paths; says which are missing.

    With none available the script exits (``exit_if_none``) or, without it, gets an empty list.
    """
    import medzoo

    table = medzoo.list_models()
    zoo = {m["name"] for m in table}
    retired = {r["name"]: r["replaced_by"] for r in table.retired}
    found = [w for w in wanted if w in zoo or pathlib.Path(w).exists()]
    for name in [w for w in wanted if w in retired]:
        print(f"note: {name} is retired (it gives {retired[name]}), skipped", file=sys.stderr)
    missing = [w for w in wanted if w not in found and w not in retired]
    if missing:
        print(f"note: not in the zoo yet, skipped: {', '.join(missing)}", file=sys.stderr)
    if not found and exit_if_none:
        sys.exit(f"none of {wanted} is available; train them first (medzoo train NAME) or pass --models")
    return found


def write(output: pathlib.Path, name: str, text: str, data: dict) -> None:
    from medzoo.evaluate.common import jsonable

    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    (output / f"{name}.json").write_text(json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n",
                                         encoding="utf-8")


class Timer:
    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.time() - self.start


def run_and_print(parser, run, argv=None):
    """A benchmark's main: parse ``argv``, run it (``run(args) -> (results, text)``), print its table."""
    args = parser.parse_args(argv)
    setup_logging()
    _, text = run(args)
    print(text)
    print(f"\nwrote {args.output}")


def run_and_write(parser, run, argv=None):
    """A benchmark's main that writes ``summary.txt`` / ``summary.json`` of ``run(args) -> (results, text)``,
    the run's seconds appended to the text (what prints as it goes is up to ``run``)."""
    args = parser.parse_args(argv)
    setup_logging()
    with Timer() as t:
        results, text = run(args)
    text += f"\n\n({t.seconds:.0f} s)"
    write(args.output, "summary", text, results)
    print(f"\nwrote {args.output}")


def setup_logging():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def relative(path, start) -> str:
    """``path`` relative to the folder ``start`` (for links in a Markdown file there), with '/' separators."""
    return pathlib.Path(os.path.relpath(pathlib.Path(path).resolve(), pathlib.Path(start).resolve())).as_posix()


def training_datasets(name, single=False):
    """The datasets a zoo model was trained on when there were several (else []); ``single``: its one dataset."""
    import medzoo

    info = medzoo.info(name) if not str(name).startswith((".", "/")) else {}
    dataset = (info.get("training") or {}).get("dataset") or {}
    parts = [c["name"] for c in dataset.get("components", [])] if isinstance(dataset, dict) else []
    if single:
        return dataset.get("name") if isinstance(dataset, dict) else None
    return parts


def result_dir(name) -> str:
    """A folder name for a model's results: the zoo name, or the last part of a preset path."""
    return pathlib.Path(str(name)).name
