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
from medzoo.evaluate.common import format_table


def _normal_only(entry):
    return (entry.get("training") or {}).get("classes") == [0]


def main(argv=None):
    p = _common.parser("anomaly", __doc__.splitlines()[0])
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates (default 2000)")
    args = p.parse_args(argv)
    _common.setup_logging()
    models = _common.available(args.models or _common.zoo_names(predicate=_normal_only)
                               or ["ae-chestxray-normal", "vae-chestxray-normal"])
    rows, summary = [], {}
    for i, name in enumerate(models):
        baselines = {} if i == 0 else {"baselines": ()}  # the baselines do not depend on the model: once
        result = medzoo.evaluate.anomaly(name, max_images=args.max_images, seed=args.seed,
                                         n_bootstrap=args.bootstrap, **baselines)
        result.save(args.output / _common.result_dir(name))
        print(result.table() + "\n")
        summary[result.model] = result.to_dict()
        for score, m in result.metrics.items():
            rows.append([result.model if m["kind"] == "model" else "(baseline)", score, m["auroc"],
                         f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]"])
    text = format_table(["model", "score", "AUROC", "95% CI"], rows,
                        title="anomaly detection, pneumonia vs normal, test split")
    _common.write(args.output, "summary", text, summary)
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
