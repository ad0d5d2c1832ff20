"""The prior's evaluation runs end to end on a tiny prior and a tiny labelled split: every figure is there,
each classifier row averages its seeds, augmentation gains are measured against their real-only row, and
the preset's metrics are built from the result (what tools/record_prior_metrics.py writes)."""

import json

import numpy as np

import medzoo
from medzoo.evaluate.prior_generation import metrics_from_dict, prior_generation
from tests.test_latent_prior import tiny_prior


def _split(rng, n):
    """64 px images of two classes told apart by brightness, as the Kermany npz stores them (uint8)."""
    labels = np.arange(n) % 2
    base = np.where(labels == 0, 70, 170)[:, None, None]
    return np.clip(base + rng.normal(0, 25, (n, 64, 64)), 0, 255).astype(np.uint8), labels


def test_prior_generation_measures_every_figure_on_a_tiny_split(tmp_path):
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = _split(rng, 40), _split(rng, 20)
    np.savez(tmp_path / "kermany_pediatric_cxr_128.npz", train_images=x_train, train_labels=y_train,
             test_images=x_test, test_labels=y_test)
    prior = tiny_prior(latent_channels=4, latent_size=(8, 8), labels=["normal", "pneumonia"])
    prior.attach(medzoo.load("vae-chestxray-f8c4"))
    result = prior_generation(prior, data_dir=tmp_path, n_samples=16, steps=2, classifier_steps=3,
                              classifier_repeats=2, frd_images=0, bootstrap=10,
                              augmentation_priors={0.5: prior}, ratios={0.5: [1]},
                              show_progress=False)
    rows = result.rows
    assert set(rows["feature_fd"]) == {"prior", "real_train", "vae_normal", "blurred_test"}
    assert all(np.isfinite(v) and v >= 0 for v in rows["feature_fd"].values())
    assert 0.0 <= rows["label_fidelity"] <= 1.0 and rows["frd"] is None
    tstr = rows["tstr"]
    for key in ("synthetic", "real_same_n", "real_all"):
        assert len(tstr[f"{key}_per_seed"]) == 2 and np.isclose(tstr[key], np.mean(tstr[f"{key}_per_seed"]))
        low, high = tstr[f"{key}_ci"]
        assert 0.0 <= low <= high <= 1.0
    assert [(a["fraction"], a["ratio"]) for a in result.augmentation] == [(0.5, 0), (0.5, 1)]
    base, mixed = result.augmentation
    assert base["labelled"] == 20 and mixed["synthetic"] == 20 and len(mixed["per_seed"]) == 2
    assert np.isclose(mixed["gain"], mixed["auroc"] - base["auroc"])
    assert "mean of 2" in result.table()
    metrics = result.preset_metrics()
    assert metrics["tstr_auroc"]["classifier_seeds"] == 2 and metrics["samples"] == 16
    assert metrics["memorisation_ratio"]["pixels"] > 0 and metrics["augmentation_auroc"] == {
        "labels_0.5": {"labelled": 20, "real_only": base["auroc"], "synthetic_per_real_1": mixed["auroc"]}}
    # the saved results.json gives the same metrics (what the tool reads back)
    assert metrics_from_dict(json.loads(json.dumps(result.to_dict(), default=list))) == json.loads(
        json.dumps(metrics, default=list))


def test_one_classifier_seed_gets_its_auroc_and_an_interval():
    """classifier_repeats=1: the bootstrap hands the mean-AUROC statistic one seed's scores as a flat array."""
    from medzoo.evaluate.prior_generation import _mean_auroc
    from medzoo.evaluate.stats import auroc, bootstrap_ci

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    scores = labels + rng.normal(0, 0.8, size=80)
    one = scores[:, None]  # (N, 1 classifier), as _trained_auroc stacks them
    assert _mean_auroc(labels, one) == _mean_auroc(labels, scores) == auroc(labels, scores)
    low, high = bootstrap_ci(labels, one, statistic=_mean_auroc, n_resamples=50)
    assert low < auroc(labels, scores) < high
    two = np.stack([scores, labels + rng.normal(0, 0.8, size=80)], axis=1)
    assert _mean_auroc(labels, two) == (auroc(labels, two[:, 0]) + auroc(labels, two[:, 1])) / 2


def test_a_prior_trained_on_mirror_images_and_jittered_copies_is_judged_against_them_too():
    """Samples that copy mirrored or jittered training images are copies: with the prior's training record they sit
    at distance 0 and are paired with the version they copy; without it the same samples would pass for new images."""
    from medzoo.data.jitter import jittered_copies, name_seed
    from medzoo.evaluate.prior_generation import nearest_training

    class Judge:  # features: the column means, which a left-right mirror reverses
        def features(self, images):
            return images.mean(axis=(1, 3))

    rng = np.random.default_rng(0)
    x_train, x_test = (rng.random(shape).astype(np.float32) for shape in ((12, 8, 8, 1), (6, 8, 8, 1)))
    copies = x_train[:4, :, ::-1]
    plain, _ = nearest_training(Judge(), copies, x_test, x_train)
    record = {"mirrored": ["brain"], "jittered": {}, "seed": 0}
    memo, pairs = nearest_training(Judge(), copies, x_test, x_train, dataset="brain", training=record)
    assert plain["pixels_ratio"] > 0.5 and not plain["with_mirrors"]
    assert memo["with_mirrors"] and memo["pixels_sample"] == 0.0 and memo["features_sample"] < 1e-6
    assert memo["pixels_test"] <= plain["pixels_test"]  # test images may sit nearer a mirror too
    assert len(pairs) == 4 and all(np.array_equal(sample, seen) for sample, seen in pairs)
    # a jittered copy the prior saw (the second copy of image 5, as the recipe makes them) is a copy too
    jitter = {"mirrored": ["brain"], "jittered": {"brain": 2}, "seed": 3}
    seen_copy = jittered_copies(x_train, 2, name_seed("brain", 3), flip=True)[12 + 5]
    alone, _ = nearest_training(Judge(), seen_copy[None], x_test, x_train, dataset="brain", training=record)
    memo, pairs = nearest_training(Judge(), seen_copy[None], x_test, x_train, dataset="brain", training=jitter)
    assert alone["pixels_sample"] > 0.1 and memo["pixels_sample"] == 0.0
    assert memo["jittered_copies"] == 2 and memo["reference_images"] == 12 * 4
    assert np.array_equal(pairs[0][1], seen_copy)


def test_samples_that_copy_training_images_sit_nearer_them_than_to_held_out_images():
    """Copies of training images are nearer the training images than to as many test images; fresh draws of the
    same distribution are nearer either about half the time."""
    from medzoo.evaluate.prior_generation import trained_against_held_out

    class Judge:
        def features(self, images):
            return images.mean(axis=(1, 3))

    rng = np.random.default_rng(1)
    x_train, x_test = (rng.random(shape).astype(np.float32) for shape in ((300, 6, 6, 1), (100, 6, 6, 1)))
    copies = x_train[:200] + rng.normal(0, 0.01, (200, 6, 6, 1)).astype(np.float32)
    fresh = rng.random((200, 6, 6, 1)).astype(np.float32)
    copied = trained_against_held_out(Judge(), copies, x_test, x_train, seed=0)
    new = trained_against_held_out(Judge(), fresh, x_test, x_train, seed=0)
    assert copied["held_out_images"] == new["held_out_images"] == 100
    # a third of the copies' originals are among the 100 training images drawn: those sit at almost no distance
    assert copied["nearer_training_pixels"] > 0.3 and new["nearer_training_pixels"] < 0.65
    assert copied["nearer_training_pixels"] > new["nearer_training_pixels"] + 0.1
    assert 0.8 < new["held_out_pixels_ratio"] < 1.2 and 0.8 < new["held_out_features_ratio"] < 1.25
    # with the prior's record, the mirrored training images count on both sides alike
    mirrored = trained_against_held_out(Judge(), fresh, x_test, x_train, dataset="brain",
                                        training={"mirrored": ["brain"], "jittered": {}, "seed": 0})
    assert 0.8 < mirrored["held_out_pixels_ratio"] < 1.2
