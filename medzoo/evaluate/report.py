"""A report folder from evaluation results: ``metrics.json``, every figure, and ``report.md``.

``medzoo evaluate MODEL --report DIR`` writes one; so can a script::

    results = [medzoo.evaluate(model, task, max_images=64) for task in ("reconstruction", "generation")]
    medzoo.evaluate.write_report(results, "report")

``report.md`` is plain Markdown that embeds the PNGs next to it, so the folder reads
well on GitHub, in an editor's preview, or converted with any Markdown tool.
"""

from __future__ import annotations

import json
import math
import pathlib

from medzoo.errors import ConfigError
from medzoo.evaluate.common import jsonable
from medzoo.version import __version__

REPORT_FILES = ("metrics.json", "report.md")


def markdown_table(headers, rows) -> str:
    """A GitHub-flavoured Markdown table; floats get 4 significant digits, None prints as '-'."""
    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _summary_table(summary: dict) -> str | None:
    """``{metric: {mean, std, median, min, max, n}}`` (what reconstruction reports) as a Markdown table."""
    keys = ("mean", "std", "median", "min", "max")
    if not summary or not all(isinstance(v, dict) and set(keys) <= set(v) for v in summary.values()):
        return None
    return markdown_table(["metric", *keys], [[m, *(s[k] for k in keys)] for m, s in summary.items()])


def _models(d: dict) -> list[str]:
    """The model name(s) of a result's ``to_dict()`` (``model``, or ``models`` for the comparisons)."""
    models = d.get("models", d.get("model"))
    models = models if isinstance(models, (list, tuple)) else [models]
    return [str(m.get("model", m.get("name")) if isinstance(m, dict) else m) for m in models if m is not None]


def prepare_folder(output_dir) -> pathlib.Path:
    """Create ``output_dir`` for a report; refuse a preset directory (results never go next to weights)."""
    out = pathlib.Path(output_dir)
    if (out / "metadata.json").is_file() and (out / "model.weights.h5").is_file():
        raise ConfigError(f"{out} is a preset directory; write the report somewhere else")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_report(results, output_dir, *, title: str | None = None, notes=()) -> dict:
    """Write ``metrics.json`` (every result, per-image values included), each result's figures, and ``report.md``.

    Args:
        results: task results (``medzoo.evaluate(...)`` return values), at most one per task.
        output_dir: the report folder (created).
        title: the report's heading (default: "<model>: <tasks>").
        notes: lines printed under the heading (e.g. the command that made the report).

    Returns:
        ``{"metrics": path, "report": path, <figure stem>: path, ...}``.
    """

    results = list(results)
    if not results:
        raise ConfigError("write_report needs at least one result")
    tasks = [r.task for r in results]
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"one result per task, got {tasks}")
    out = prepare_folder(output_dir)
    models = list(dict.fromkeys(name for r in results for name in _models(r.to_dict())))
    title = title or f"{', '.join(models)}: {', '.join(tasks)}"

    paths, figures = {}, {}
    for result in results:
        figures[result.task] = [(result.task, result.plot(out / f"{result.task}.png"))]
        figures[result.task] += [(stem, draw(out / f"{stem}.png")) for stem, draw in result.extra_figures().items()]
        paths.update(dict(figures[result.task]))
    metrics = {"title": title, "medzoo_version": __version__,
               "results": {r.task: r.to_dict(per_image=True) for r in results}}
    paths["metrics"] = out / "metrics.json"
    paths["metrics"].write_text(json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8")

    lines = [f"# {title}", ""] + [f"{note}  " for note in notes] + ([""] if notes else [])
    lines += [f"medzoo {__version__}. Every number below is in `metrics.json` (per image too).", ""]
    for result in results:
        d = result.to_dict()
        lines += [f"## {result.task}", "", f"{', '.join(f'`{m}`' for m in _models(d))} on `{d.get('data', '?')}`.", ""]
        table = _summary_table(d.get("metrics"))
        if table:
            lines += [table, ""]
        lines += [result.markdown(), ""]
        lines += [f"![{stem}]({path.name})" for stem, path in figures[result.task]] + [""]
    paths["report"] = out / "report.md"
    paths["report"].write_text("\n".join(lines), encoding="utf-8")
    return paths
