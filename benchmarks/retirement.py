"""Retiring zoo entries: does a newer entry beat the older one it would replace on every measure?

    python benchmarks/retirement.py                       # ae-chestxray -> -f4c3, vae-chestxray -> -f8c4
    python benchmarks/retirement.py --pairs ae-chestxray:ae-chestxray-f4c3 --denoiser dae-chestxray-f4c3
    python benchmarks/retirement.py --pairs OLD_PRESET_DIR:ae-chestxray-f4c3 --max-images 128

A retired name loads its replacement, so it cannot be the OLD of a pair: pass its preset folder (from an
older release or the repository's history) instead.

The zoo retires an entry (its name kept as an alias) only when a v2 entry is at least as good on
everything a user may have picked it for. Every measure is computed in this run, the same way for
both models, on the v1 entry's test split:

* reconstruction PSNR, SSIM (higher is better) and MAE (lower);
* features: linear-probe AUROC and balanced accuracy on the split's labels (frozen codes);
* denoising (autoencoders): PSNR of the reconstruction of noisy inputs at each noise level; with
  ``--denoiser``, the old entry is held against that model instead (the zoo's dedicated denoiser: a
  user who picked a plain autoencoder to denoise is better served by it than by any successor that
  reconstructs more faithfully, noise included);
* VAEs: negative ELBO in bits per dimension (lower; decoder sigma fitted on validation images) and
  how far prior samples sit from real images: the mean nearest-neighbour MSE of samples over that
  of held-out real images (1 is like real images; further from 1 in either direction is worse).

The probe's AUROC comes with its bootstrap interval: a v1 lead inside both intervals is within
noise, but it still counts as a lead (the rule is "every measure", not "every significant one").
"""

import math

import _common
import numpy as np

import medzoo
from medzoo.evaluate.common import dataset_of, family_of, format_table, load_split, resolve_model
from medzoo.metrics import fit_vae_sigma, vae_negative_elbo_bits
from medzoo.zoo.manifest import read_manifest, retired_record

PAIRS = ["ae-chestxray:ae-chestxray-f4c3", "vae-chestxray:vae-chestxray-f8c4"]
SIGMAS = (0.05, 0.1, 0.15, 0.2)


def build_parser():
    p = _common.parser("retirement", __doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=PAIRS, help="OLD:NEW zoo names or preset paths")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--denoiser", default=None,
                   help="zoo name or preset path: hold an old autoencoder's denoising against this model")
    return p


def _measures(name, model, dataset, args, cache) -> dict:
    """``{measure: (value, higher_is_better or "one", note)}`` of one model on ``dataset``'s test split."""
    if (name, dataset) in cache:
        return cache[(name, dataset)]
    out = {}
    rec = medzoo.evaluate.reconstruction(model, dataset=dataset, max_images=args.max_images, seed=args.seed,
                                         thumbnail=False)
    for key, higher in (("psnr", True), ("ssim", True), ("mae", False)):
        out[f"reconstruction {key}"] = (float(np.mean(rec.per_image[key])), higher, "")
    probe = medzoo.evaluate.probe(model, dataset=dataset, max_images=args.max_images, seed=args.seed, baselines=(),
                                  n_bootstrap=args.bootstrap)
    row = next(iter(probe.methods.values()))
    out["probe AUROC"] = (row["auroc"], True, f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
    out["probe balanced accuracy"] = (row["balanced_accuracy"], True, "")
    if family_of(model) == "vae":
        x, _ = load_split(model, "test", dataset=dataset, max_images=args.max_images, seed=args.seed)
        val, _ = load_split(model, "val", dataset=dataset, max_images=256, seed=args.seed)
        sigma = fit_vae_sigma(model, val)
        out["NELBO bits/dim"] = (float(vae_negative_elbo_bits(model, x, sigma).mean()), False, f"sigma {sigma}")
        gen = medzoo.evaluate.generation(model, n_samples=64, seed=args.seed, dataset=dataset, max_images=256)
        ratio = gen.stats["sample_nn_mse_mean"] / gen.stats["real_nn_mse_mean"]
        out["samples' NN-MSE / real"] = (ratio, "one", "")
    cache[(name, dataset)] = out
    return out


def _denoising(old_model, new_model, dataset, args, against: str = "") -> dict:
    """``{measure: ((old value, True, ""), (new value, True, ""))}``: both models on the same noisy images
    (``against`` names the second model in each measure where it is not the pair's new entry)."""
    result = medzoo.evaluate.denoise([old_model, new_model], sigmas=SIGMAS, classical=(), dataset=dataset,
                                     max_images=args.max_images, seed=args.seed)
    old_label, new_label = result.models
    values = {(r["sigma"], r["method"]): r["psnr"] for r in result.rows}
    suffix = f" ({against})" if against else ""
    return {f"denoised PSNR, sigma {s}{suffix}": ((values[(s, old_label)], True, ""),
                                                   (values[(s, new_label)], True, "")) for s in SIGMAS}


def _better(old, new, higher) -> bool:
    """Whether ``new`` is at least as good as ``old``."""
    if higher == "one":
        return abs(math.log(new)) <= abs(math.log(old))
    return new >= old if higher else new <= old


def compare(old, new, args, cache) -> tuple[list, dict]:
    """Rows ``[measure, old, new, v2 at least as good]`` and a summary of one pair (each model loaded once)."""
    old_model, new_model = resolve_model(old), resolve_model(new)
    # both on the old entry's test split, the images its users have: a successor trained on more
    # sets (a native-resolution stage adds its 1024 px set) names a mixture, not one split
    dataset = dataset_of(old_model)
    a, b = _measures(old, old_model, dataset, args, cache), _measures(new, new_model, dataset, args, cache)
    pairs = {measure: (a[measure], b[measure]) for measure in a}
    if family_of(old_model) == "autoencoder":
        denoiser = resolve_model(args.denoiser) if args.denoiser else new_model
        pairs.update(_denoising(old_model, denoiser, dataset, args, against=args.denoiser or ""))
    rows, summary, behind = [], {}, []
    for measure, ((value, higher, note), (other, _, other_note)) in pairs.items():
        ok = _better(value, other, higher)
        rows.append([measure, f"{value:.4f} {note}".strip(), f"{other:.4f} {other_note}".strip(),
                     "yes" if ok else "no"])
        summary[measure] = {"old": value, "new": other, "new_at_least_as_good": ok}
        behind += [] if ok else [measure]
    return rows, {"measures": summary, "retire": not behind, "old_ahead_on": behind}


def main(argv=None):
    args = build_parser().parse_args(argv)
    _common.setup_logging()
    cache, tables, summary = {}, [], {}
    for pair in args.pairs:
        old, sep, new = pair.partition(":")
        if not sep or not old or not new:
            raise SystemExit(f"--pairs takes OLD:NEW, got {pair!r}")
        if retired_record(read_manifest(), old) is not None:
            raise SystemExit(f"{old} is retired: its name loads its replacement; pass its preset folder as OLD")
        if len(_common.available([old, new], exit_if_none=False)) < 2:
            continue
        rows, result = compare(old, new, args, cache)
        verdict = ("retire: yes, the new entry is at least as good on every measure" if result["retire"] else
                   f"retire: no, {old} is ahead on {', '.join(result['old_ahead_on'])}")
        tables.append(format_table(["measure", old, new, "new at least as good"], rows,
                                   title=f"{old} -> {new} (test split)") + "\n" + verdict)
        summary[f"{old}:{new}"] = result
    text = "\n\n".join(tables)
    _common.write(args.output, "summary", text, summary)
    print(text + f"\n\nwrote {args.output}")


if __name__ == "__main__":
    main()
