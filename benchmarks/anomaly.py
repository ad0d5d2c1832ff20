"""Anomaly detection: pneumonia vs normal from models trained on normal images only, against linear baselines.

    python benchmarks/anomaly.py                          # ae-chestxray-normal, vae-chestxray-normal
    python benchmarks/anomaly.py --max-images 128 --bootstrap 500

Scores: reconstruction MSE, L1, 1 - SSIM, for the VAE the negative ELBO (bits/dim), and
the distance to the 5 nearest normal training images in the encoder's feature space;
baselines in the same run: distance to the mean normal image, PCA (32 components)
reconstruction error and the 5-nearest-neighbour distance in pixel space, all fitted on
the normal training images. AUROC with a stratified bootstrap 95% interval. For context: plain-autoencoder baselines on adult
chest X-ray anomaly benchmarks are usually quoted around AUROC 0.61-0.73.
"""

import _common

import medzoo
from medzoo.evaluate.anomaly import AnomalyResult
from medzoo.evaluate.common import format_table

#: the zoo's anomaly detectors; a missing one (not trained yet) is skipped with a note
MODELS = ["ae-chestxray-normal", "vae-chestxray-normal"]


def _normal_only(entry):
    return (entry.get("training") or {}).get("classes") == [0]


def default_models() -> list[str]:
    """:data:`MODELS` and any other zoo model trained on normal images only."""
    return list(dict.fromkeys(MODELS + _common.zoo_names(predicate=_normal_only)))


def build_parser():
    p = _common.parser("anomaly", __doc__.splitlines()[0])
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates (default 2000)")
    return p


def run(args) -> tuple[list, str]:
    """Evaluate each model (baselines with the first), save each result; returns ``[(result, paths)]`` and the table."""
    models = _common.available(args.models or default_models())
    runs, summary = [], {}
    for i, name in enumerate(models):
        baselines = {} if i == 0 else {"baselines": ()}  # the baselines do not depend on the model: once
        result = medzoo.evaluate.anomaly(name, max_images=args.max_images, seed=args.seed,
                                         n_bootstrap=args.bootstrap, **baselines)
        paths = result.save(args.output / _common.result_dir(name))
        print(result.table() + "\n")
        summary[result.model] = result.to_dict()
        runs.append((result, paths))
    text = format_table(AnomalyResult.SUMMARY_HEADERS, summary_rows([r for r, _ in runs]),
                        title="anomaly detection, pneumonia vs normal, test split")
    _common.write(args.output, "summary", text, summary)
    return runs, text


def summary_rows(results) -> list:
    """The rows of several anomaly results in one table: every model's scores first, then the baselines."""
    rows = [row for r in results for row in r.summary_rows()]
    return [row for row in rows if row[0] != "(baseline)"] + [row for row in rows if row[0] == "(baseline)"]


def main(argv=None):
    _common.run_and_print(build_parser(), run, argv)


if __name__ == "__main__":
    main()
