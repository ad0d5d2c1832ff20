"""Choose a latent prior's guidance on the validation split: label fidelity and memorisation per guidance.

    MEDZOO_DATA_DIR=DATA python tools/prior_guidance_sweep.py PRESET --datasets kermany_pediatric_cxr_128 \
        --guidance 0.5 1.0 1.5 2.0 --samples 300

For each dataset, a judge (the benchmark's small classifier) is trained on the real training
split; then, per guidance, as many samples as ``--samples`` in the training split's class shares
are drawn (seed 0, the preset's steps) and printed: label fidelity (the judge's share of samples
assigned their label, beside its accuracy on the real validation images) and the memorisation
ratio in the judge's features (median distance of samples to their nearest training image over
the same median for the validation images; mirrors count as training images where the prior saw
them). Guidance buys fidelity with closeness to the training set; this prints the trade-off on
images the benchmark's test figures never see.
"""

import argparse
import time

import numpy as np


def main(argv=None):
    import medzoo
    from medzoo.data import load_npz
    from medzoo.data.batches import area_resize
    from medzoo.evaluate.judge import nearest_distances, train_classifier
    from medzoo.evaluate.prior_generation import generate_for_classes
    from medzoo.recipes.prior import seen_images

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("preset", help="a prior's zoo name or preset folder")
    p.add_argument("--datasets", nargs="+", required=True, help="labelled datasets the prior's labels name")
    p.add_argument("--guidance", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
    p.add_argument("--samples", type=int, default=300, help="samples per guidance and dataset")
    p.add_argument("--judge-steps", type=int, default=600)
    args = p.parse_args(argv)
    prior = medzoo.load(args.preset)
    training = prior.zoo_metadata.get("training", {})
    for dataset in args.datasets:
        x_train, y_train = load_npz(dataset, "train")
        x_val, y_val = load_npz(dataset, "val")
        x_train, x_val = ((x.astype(np.float32) / 255.0)[..., None] for x in (x_train, x_val))
        judge = train_classifier(x_train, y_train, steps=args.judge_steps, seed=0)
        accuracy = judge.accuracy(x_val, y_val)
        shares = np.bincount(y_train) / len(y_train)
        wanted = np.repeat(np.arange(len(shares)), np.round(shares * args.samples).astype(int))
        reference = None
        for guidance in args.guidance:
            start = time.time()
            samples = generate_for_classes(prior, wanted, dataset, seed=0, steps=None, guidance=guidance,
                                           show_progress=False)
            if reference is None:  # the real images at the samples' size, once
                side = samples.shape[1]
                if x_train.shape[1] != side:
                    x_train, x_val = (np.stack([area_resize(x, side) for x in xs]) for xs in (x_train, x_val))
                reference = judge.features(seen_images(x_train, dataset, training))
                val_distance = np.median(nearest_distances(judge.features(x_val), reference)[0])
            fidelity = float((judge.predict(samples).argmax(1) == wanted).mean())
            ratio = np.median(nearest_distances(judge.features(samples), reference)[0]) / val_distance
            print(f"{dataset} guidance {guidance:g}: label fidelity {fidelity:.3f} (judge on real val "
                  f"{accuracy:.3f}), memorisation ratio in features {ratio:.3f} ({time.time() - start:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
