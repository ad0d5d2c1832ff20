"""Linear probes of the zoo's frozen encoders against a pixel probe and a supervised CNN, pneumonia vs normal.

    python benchmarks/probe.py                            # ae-, vae-, vqvae-chestxray
    python benchmarks/probe.py --max-images 400 --cnn-epochs 5   # quick look

Logistic regression (C chosen on the validation split) on standardised frozen
features; the baselines are trained in the same run on the same splits: the same
probe on 32 x 32 pooled pixels, and a small CNN trained end to end (early stopping on
validation AUROC). Test AUROC with bootstrap 95% interval, accuracy, balanced accuracy.
"""

import _common

import medzoo
from medzoo.evaluate.common import format_table


def main(argv=None):
    p = _common.parser("probe", __doc__.splitlines()[0])
    p.add_argument("--cnn-epochs", type=int, default=30, help="maximum epochs of the CNN baseline (default 30)")
    p.add_argument("--bootstrap", type=int, default=1000)
    args = p.parse_args(argv)
    _common.setup_logging()
    models = _common.available(args.models or ["ae-chestxray", "vae-chestxray", "vqvae-chestxray"])
    rows, summary = [], {}
    for i, name in enumerate(models):
        result = medzoo.evaluate.probe(name, max_images=args.max_images, seed=args.seed, cnn_epochs=args.cnn_epochs,
                                       n_bootstrap=args.bootstrap, baselines=("pixels", "cnn") if i == 0 else ())
        result.save(args.output / _common.result_dir(name))
        print(result.table() + "\n")
        summary[result.model] = result.to_dict()
        for method, m in result.methods.items():
            rows.append([method, m["what"], m["trained_parameters"], m["auroc"],
                         f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]", m["accuracy"], m["balanced_accuracy"]])
    text = format_table(["method", "features", "trained params", "AUROC", "95% CI", "accuracy", "bal. acc."], rows,
                        title=f"pneumonia vs normal, test split (majority-class accuracy "
                              f"{result.majority_accuracy:.3f}; accuracies at validation-chosen thresholds)")
    _common.write(args.output, "summary", text, summary)
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
