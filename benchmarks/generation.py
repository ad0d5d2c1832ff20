"""Latent priors judged against real images; every figure beside its references, in one run.

    python benchmarks/generation.py                                   # every prior of the zoo
    python benchmarks/generation.py --models prior-chestxray-f8c4 --few-label 0.01 0.1 1.0 \\
        --few-label-budget 900                                        # with the augmentation table

For each prior, on each labelled dataset's test split its labels cover (Kermany for the
chest prior; Kermany, brain MRI and breast ultrasound for the generalist): the Fréchet
distance in the features of a small classifier trained on the real training images and
the Fréchet Radiomics Distance (``frd-score``, where installed), each against real
training images (the floor), the VAE's N(0, I) samples and blurred real images; label
fidelity; train on synthetic, test on real; memorisation; sampling speed. With
``--few-label``, priors that see only that share of the labels are trained (or reused
from ``--few-label-dir``) and their samples augment classifiers trained on as few labels
(on the first dataset). Every AUROC of a classifier trained here is the mean of
``--classifier-repeats`` seeds.

``--vae`` adds the VAE's own N(0, I) samples and interpolation strips (the older table).
"""

import pathlib

import _common

import medzoo


def _few_label_priors(prior, name, fractions, budget, folder, seed):
    """``{fraction: prior}``: the full prior for 1.0, priors trained on kept labels for the others."""
    from medzoo.recipes.prior import get_prior_recipe, train_prior

    priors = {}
    recipe_name = (prior.zoo_metadata.get("training") or {}).get("recipe", name)
    for fraction in fractions:
        if fraction >= 1.0:
            priors[1.0] = prior
            continue
        run = pathlib.Path(folder) / f"{recipe_name}-labels{fraction:g}"
        if not (run / "preset").exists():
            print(f"training a prior on {fraction:.0%} of the labels for {budget:.0f} s in {run}")
            train_prior(get_prior_recipe(recipe_name), run, time_budget_s=budget, labelled_fraction=fraction,
                        resume=(run / "checkpoint").exists())
        priors[fraction] = medzoo.load(str(run / "preset"), autoencoder=prior.autoencoder)
    return priors


def _datasets_of(prior) -> list[str]:
    """The labelled datasets whose every class the prior has a label for (the chest prior: Kermany)."""
    from medzoo.evaluate.prior_generation import DATASET_CLASSES, prior_labels_for

    out = []
    for dataset in DATASET_CLASSES:
        try:
            prior_labels_for(prior, dataset)
        except ValueError:
            continue
        out.append(dataset)
    return out


def main(argv=None):
    p = _common.parser("generation", __doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=1200, help="samples per prior (default 1200)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the preset's)")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the preset's)")
    p.add_argument("--classifier-steps", type=int, default=600, help="optimiser steps of every classifier")
    p.add_argument("--classifier-repeats", type=int, default=3,
                   help="classifier seeds averaged in every train-on-synthetic and augmentation AUROC")
    p.add_argument("--datasets", nargs="+",
                   help="test splits to judge on (default: every labelled dataset the prior's labels name)")
    p.add_argument("--frd-images", type=int, default=300, help="images per set for FRD (0: skip)")
    p.add_argument("--few-label", type=float, nargs="*", default=[],
                   help="labelled fractions for the augmentation table, e.g. 0.01 0.1 1.0")
    p.add_argument("--few-label-budget", type=float, default=900.0,
                   help="seconds to train each few-label prior that --few-label-dir does not hold yet")
    p.add_argument("--few-label-dir", type=pathlib.Path, default=_common.RESULTS / "few-label-priors")
    p.add_argument("--bootstrap", type=int, default=500)
    p.add_argument("--vae", action="store_true", help="also the VAEs' N(0, I) samples and interpolation strips")
    args = p.parse_args(argv)
    _common.setup_logging()
    names = _common.available(args.models or _common.zoo_names("prior"))
    summary, texts = {}, []
    for name in names:
        prior = medzoo.load(name)
        priors = _few_label_priors(prior, name, args.few_label, args.few_label_budget, args.few_label_dir,
                                   args.seed) if args.few_label else None
        datasets = args.datasets or _datasets_of(prior)
        for k, dataset in enumerate(datasets):
            result = medzoo.evaluate.prior_generation(
                prior, dataset=dataset, n_samples=args.samples, steps=args.steps, guidance=args.guidance,
                classifier_steps=args.classifier_steps, classifier_repeats=args.classifier_repeats,
                frd_images=args.frd_images, augmentation_priors=priors if k == 0 else None,
                bootstrap=args.bootstrap, seed=args.seed)
            folder = _common.result_dir(name) + ("" if len(datasets) == 1 else f"-{dataset}")
            result.save(args.output / folder)
            print(result.table() + "\n")
            texts.append(result.table())
            summary[result.model if len(datasets) == 1 else f"{result.model} on {dataset}"] = result.to_dict()
    if args.vae:
        for name in _common.available(_common.zoo_names("vae")):
            result = medzoo.evaluate.generation(name, n_samples=32, seed=args.seed, max_images=args.max_images or 256)
            result.save(args.output / _common.result_dir(name))
            texts.append(result.table())
            summary[result.model] = result.to_dict()
    _common.write(args.output, "summary", "\n\n".join(texts), summary)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
