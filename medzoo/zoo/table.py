"""The README's zoo table, generated from ``weights_manifest.json``.

The table sits in README.md between two markers and is never edited by hand::

    <!-- zoo-table:start -->
    ...
    <!-- zoo-table:end -->

Regenerate it after changing the manifest (``tests/test_readme.py`` fails while
the two disagree)::

    python -m medzoo.zoo.table --write README.md

``python -m medzoo.zoo.table`` prints the table, ``--check README.md`` exits with
status 1 when the README's table is stale. The rows come from
:func:`~medzoo.zoo.manifest.list_models` (the same strings ``list_models()`` prints);
this module only adds the modality, the headline test metrics and the Markdown.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from medzoo.errors import ConfigError
from medzoo.zoo.manifest import list_models, read_manifest

START = "<!-- zoo-table:start -->"
END = "<!-- zoo-table:end -->"
COMMAND = "python -m medzoo.zoo.table --write README.md"
NOTE = f"<!-- generated from weights_manifest.json by `{COMMAND}`; do not edit by hand -->"
EMPTY = "_No pretrained models in the zoo yet._"

#: imaging modality of the training datasets medzoo knows (a dataset entry's own
#: ``"modality"`` field, when the manifest has one, takes precedence)
MODALITIES = {
    "kermany_pediatric_cxr": "chest X-ray (pediatric)",
    "brain_tumor_figshare": "brain MRI (T1-CE)",
    "busbra": "breast ultrasound",
    "hc18": "fetal head ultrasound",
    "cxr_hannover": "chest X-ray (adult, native size)",
    "ct_tcia": "CT (Hounsfield units)",
    "pneumoniamnist": "chest X-ray (pediatric)",
    "chestmnist": "chest X-ray",
    "breastmnist": "breast ultrasound",
    "octmnist": "retinal OCT",
    "retinamnist": "fundus photograph",
    "pathmnist": "histopathology",
    "bloodmnist": "blood cell microscopy",
    "tissuemnist": "kidney cortex microscopy",
    "organamnist": "abdominal CT (axial)",
    "organcmnist": "abdominal CT (coronal)",
    "organsmnist": "abdominal CT (sagittal)",
}

#: the headline test metrics, in display order: manifest key -> format (others are left out)
METRICS = {
    "psnr": "PSNR {:.2f} dB",
    "ssim": "SSIM {:.3f}",
    "thumbnail_psnr": "(bicubic thumbnail of as many numbers {:.2f} dB)",
    "mae_hu": "MAE {:.1f} HU",
    "denoised_psnr": "denoised PSNR {:.2f} dB",
    "noisy_input_psnr": "(noisy input {:.2f} dB)",
    "nelbo_bits_per_dim": "NELBO {:.3f} bits/dim",
    "raw_bits_per_pixel": "{:.3f} bpp raw codes",
    "perplexity": "perplexity {:.0f}",
    "dice": "Dice {:.3f}",
    "iou": "IoU {:.3f}",
    "hd95_mm": "HD95 {:.2f} mm",
    "hc_error_mm": "head circumference error {:.2f} mm",
    "label_fidelity": "label fidelity {:.3f}",
}

COLUMNS = ("model", "family", "modality", "input", "params", "test metrics", "licence")


def _modality(dataset: dict) -> str:
    if dataset.get("modality"):
        return str(dataset["modality"])
    if dataset.get("components"):  # a mixture: its members' modalities
        return " + ".join(dict.fromkeys(_modality(c) for c in dataset["components"]))
    name = str(dataset.get("name", ""))
    for prefix, modality in MODALITIES.items():
        if name.startswith(prefix):
            return modality
    return "?"


def _variant(family: str, config: dict) -> str:
    """The family, with the autoencoder variant its config trains (denoising, sparse)."""
    options = config.get("config") or {}
    variants = [name for name, on in (("denoising", options.get("noise", "none") != "none"),
                                      ("sparse", bool(options.get("sparsity")))) if on]
    return f"{family} ({', '.join(variants)})" if variants else family


def _metrics(metrics: dict) -> str:
    """The headline figures of an entry's metrics (flat, or nested under ``"test"``); a model trained on
    several datasets (``per_dataset``) reports the mean of their means, says so, and gives each
    dataset's PSNR against its thumbnail (a mean over 128 px thumbnails and 1024 px radiographs
    would hide the native figure)."""
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else metrics
    parts = _headline(test)
    text = ", ".join(parts).replace(", (", " (") or "—"
    per_dataset = test.get("per_dataset")
    if isinstance(per_dataset, dict) and not parts:  # a latent prior judged on each dataset: no mean, each apart
        each = [f"{_modality({'name': name})}: " + ", ".join(_headline(m)).replace(", (", " (")
                for name, m in per_dataset.items() if isinstance(m, dict) and _headline(m)]
        return "; ".join(each) or "—"
    if not (isinstance(per_dataset, dict) and parts):
        return text
    each = [f"{_modality({'name': name})} {m['psnr']:.2f} dB"
            + (f" (thumbnail {m['thumbnail_psnr']:.2f})" if isinstance(m.get("thumbnail_psnr"), (int, float)) else "")
            for name, m in per_dataset.items() if isinstance(m, dict) and isinstance(m.get("psnr"), (int, float))]
    return f"mean over {len(per_dataset)} datasets: {text}" + (f"; each: {', '.join(each)}" if each else "")


def _headline(test: dict) -> list[str]:
    """The :data:`METRICS` figures of one flat set of metrics, a latent prior's Fréchet distance first."""
    parts = [fmt.format(test[key]) for key, fmt in METRICS.items()
             if isinstance(test.get(key), (int, float)) and not isinstance(test.get(key), bool)]
    fd = test.get("feature_fd")
    if isinstance(fd, dict) and {"prior", "vae_normal", "real_train"} <= set(fd):  # a latent prior's samples
        parts.insert(0, f"feature Fréchet distance {fd['prior']:.2f} (the VAE's N(0, I) {fd['vae_normal']:.2f}, "
                        f"real images {fd['real_train']:.2f})")
    return parts


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(manifest=None) -> str:
    """The zoo as a Markdown table: model, family, modality, input, params, test metrics, licence.

    Args:
        manifest: path of a weights manifest (default: the one shipped in the package).

    Returns:
        The table (no trailing newline), or a one-line note when the zoo is empty.
    """
    table = list_models(manifest_path=manifest)
    if not table:
        return EMPTY
    entries = {entry["name"]: entry for entry in read_manifest(manifest)["models"]}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for model, row in zip(table, table.rows()):
        entry = entries[model["name"]]
        cells = (f"`{row['name']}`", _variant(row["family"], entry["config"]), _modality(entry["training"]["dataset"]),
                 row["input"], row["params"], _metrics(model["metrics"]), row["licence"])
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    kept = [(name, entry["kept_because"]) for name, entry in entries.items() if entry.get("kept_because")]
    if kept:
        lines += ["", "Kept although a newer entry reconstructs better, each for what it still leads on:"]
        lines += [f"- `{name}`: {_cell(reason)}" for name, reason in kept]
    if table.retired:
        lines += ["", "Retired names, kept as aliases (each loads its replacement, with a warning): "
                  + "; ".join(f"`{r['name']}` (last version {r['last_version']}) → `{r['replaced_by']}`"
                              for r in table.retired) + "."]
    return "\n".join(lines)


def _split(text: str, where: str) -> tuple[str, str, str]:
    """``(before, inside, after)`` of the marked block; ConfigError when the markers are missing or out of order."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ConfigError(f"{where} needs one {START} line followed by one {END} line around the zoo table")
    head, rest = text.split(START)
    inside, tail = rest.split(END)
    return head + START, inside, END + tail


def block(manifest=None) -> str:
    """What goes between the markers (with its leading and trailing newline)."""
    return f"\n{NOTE}\n{markdown_table(manifest)}\n"


def current_block(text: str, where: str = "README.md") -> str:
    """What is between the markers of ``text`` now."""
    return _split(text, where)[1]


def render(text: str, manifest=None, where: str = "README.md") -> str:
    """``text`` with the zoo table between the markers replaced by a fresh one."""
    head, _, tail = _split(text, where)
    return head + block(manifest) + tail


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medzoo.zoo.table",
                                     description="Print the README's zoo table, or update/check it in place.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="README", help="replace the table between the markers of this file")
    group.add_argument("--check", metavar="README", help="exit with status 1 if this file's table is stale")
    parser.add_argument("--manifest", help="weights manifest (default: the one in the package)")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        print(markdown_table(args.manifest))
        return 0
    path = pathlib.Path(args.write or args.check)
    text = path.read_text(encoding="utf-8")
    fresh = render(text, args.manifest, where=str(path))
    if args.check:
        if fresh != text:
            print(f"{path}: the zoo table differs from the weights manifest; run: {COMMAND}", file=sys.stderr)
            return 1
        print(f"{path}: the zoo table is up to date")
        return 0
    if fresh != text:
        path.write_text(fresh, encoding="utf-8")
        print(f"{path}: zoo table updated")
    else:
        print(f"{path}: zoo table already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
