"""Linear probes of the zoo's frozen encoders against a pixel probe and a supervised CNN, on each model's labels.

    python benchmarks/probe.py                            # ae-, vae-, vqvae-chestxray: pneumonia vs normal
    python benchmarks/probe.py --models vae-breastus-f8c4 ae-breastus-f4c3   # BUS-BRA: malignant vs benign
    python benchmarks/probe.py --models vae-brainmri-f8c4 ae-brainmri-f4c3   # brain MRI: tumour type, 3 classes
    python benchmarks/probe.py --max-images 400 --cnn-epochs 5   # quick look

The models of one run share a dataset (their training data's labelled splits).

Logistic regression (C chosen on the validation split) on standardised frozen
features; the baselines are trained in the same run on the same splits: the same
probe on 32 x 32 pooled pixels, and a small CNN trained end to end (early stopping on
validation AUROC). Test AUROC with bootstrap 95% interval, accuracy, balanced accuracy;
with more than two classes the AUROC is the mean one-vs-rest AUROC over the classes and the
accuracies are those of the most probable class.
"""

import _common

import medzoo
from medzoo.evaluate.common import format_table
from medzoo.evaluate.probe import ProbeResult

MODELS = ["ae-chestxray", "vae-chestxray", "vqvae-chestxray"]
TASK_NAMES = {"kermany_pediatric_cxr_128": "pneumonia vs normal", "busbra_256": "malignant vs benign (biopsy)",
              "brain_tumor_figshare_128": "tumour type: meningioma / glioma / pituitary (macro one-vs-rest AUROC)"}


def build_parser():
    p = _common.parser("probe", __doc__.splitlines()[0])
    p.add_argument("--cnn-epochs", type=int, default=30, help="maximum epochs of the CNN baseline (default 30)")
    p.add_argument("--bootstrap", type=int, default=1000)
    return p


def run(args) -> tuple[list, str]:
    """Probe each model (baselines with the first), save each result; returns ``[(result, paths)]`` and the table."""
    models = _common.available(args.models or MODELS)
    runs, summary = [], {}
    for i, name in enumerate(models):
        result = medzoo.evaluate.probe(name, max_images=args.max_images, seed=args.seed, cnn_epochs=args.cnn_epochs,
                                       n_bootstrap=args.bootstrap, baselines=("pixels", "cnn") if i == 0 else ())
        paths = result.save(args.output / _common.result_dir(name))
        print(result.table() + "\n")
        summary[result.model] = result.to_dict()
        runs.append((result, paths))
    dataset = str(runs[0][0].sources.get("test", "")).split(":")[0]
    what = TASK_NAMES.get(dataset, f"{dataset} labels 1 vs 0")
    text = format_table(ProbeResult.SUMMARY_HEADERS, summary_rows([r for r, _ in runs]),
                        title=f"{what}, test split (majority-class accuracy "
                              f"{runs[0][0].majority_accuracy:.3f}; accuracies "
                              + ("at validation-chosen thresholds)" if runs[0][0].num_classes == 2 else
                                 "of the most probable class)"))
    _common.write(args.output, "summary", text, summary)
    return runs, text


def summary_rows(results) -> list:
    """The rows of several probe results in one table, the models' probes first, then the baselines (run once),
    each compared with the CNN trained in the first run."""
    cnn = next((r.methods["cnn:supervised"] for r in results if "cnn:supervised" in r.methods), None)
    rows = [(row[0] == f"probe:{r.model}", row) for r in results for row in r.summary_rows(reference=cnn)]
    return [row for own, row in rows if own] + [row for own, row in rows if not own]


def main(argv=None):
    _common.run_and_print(build_parser(), run, argv)


if __name__ == "__main__":
    main()
