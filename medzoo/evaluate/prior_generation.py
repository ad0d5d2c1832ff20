"""Generation by a latent prior, judged against real images and beside the references a user would compare with.

Every figure comes with its references, measured in the same run on the same split:

* **distribution distance**: a Fréchet distance in the features of a small classifier
  trained on the real training images (:mod:`medzoo.evaluate.judge`), and, where
  ``frd-score`` is installed, the Fréchet Radiomics Distance. References: real training
  images (the floor: two samples of the same distribution), the VAE's own N(0, I) samples
  (what ``vae.sample`` gives), and blurred real images;
* **label fidelity**: the share of samples the judge assigns to the label they were asked
  for, beside the judge's own accuracy on real test images;
* **train on synthetic, test on real** (TSTR): the same classifier, the same number of
  steps, trained on generated images, on as many real images, and on the whole real split;
* **memorisation**: each sample's nearest training image (in the judge's features and in
  pixels), against the same distance for real test images; a sample much closer to a
  training image than real test images are is a copy. Beside it, whether samples sit nearer
  the training images than to as many test images (:func:`trained_against_held_out`), which
  tells copying from drawing the distribution's dense middle;
* **augmentation at few labels**: classifiers trained on 1% / 10% / 100% of the labels,
  real only against real plus synthetic images at several ratios, where the synthetic
  images come from a prior that saw no more labels than the classifier;
* **speed**: images per second at the shipped number of steps.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import time

import numpy as np

from medzoo.evaluate import plots
from medzoo.evaluate.common import Result, format_table, interval, progress
from medzoo.evaluate.judge import frechet_distance, nearest_distances, train_classifier
from medzoo.evaluate.stats import auroc, bootstrap_ci, macro_auroc

#: labels of the datasets a prior may be judged on: npz name -> class names (index = stored label)
DATASET_CLASSES = {
    "kermany_pediatric_cxr_128": ("normal", "pneumonia"),
    "brain_tumor_figshare_128": ("meningioma", "glioma", "pituitary"),
    "busbra_256": ("benign", "malignant"),
}


def prior_labels_for(prior, dataset: str) -> list[int]:
    """The prior's label index for each class of ``dataset`` (``"pneumonia"`` or ``"chest x-ray/pneumonia"``)."""
    names = [n.lower() for n in prior.labels]
    out = []
    for cls in DATASET_CLASSES[dataset]:
        hits = [i for i, n in enumerate(names) if n == cls or n.endswith("/" + cls)]
        if len(hits) != 1:
            raise ValueError(f"the prior's labels {prior.labels} do not name the class {cls!r} of {dataset} once")
        out.append(hits[0])
    return out


def blur(images, sigma=2.0) -> np.ndarray:
    """Gaussian blur of ``(N, H, W, C)`` images (a reference: real anatomy without its detail)."""
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(x, sigma=(sigma, sigma, 0)) for x in np.asarray(images, np.float32)])


def _guidance_text(settings: dict) -> str:
    """``1.5``, or ``1.5 (chest x-ray/normal 0.9)`` where labels had their own scales."""
    own = settings.get("guidance_per_label") or {}
    extra = ", ".join(f"{name} {g:g}" for name, g in own.items())
    return f"{settings['guidance']:g}" + (f" ({extra})" if extra else "")


def generate_for_classes(prior, class_labels, dataset, *, seed, steps, guidance, batch_size=64,
                         show_progress=True) -> np.ndarray:
    """One image per entry of ``class_labels`` (dataset class indices), generated with the matching prior label."""
    mapping = prior_labels_for(prior, dataset)
    labels = np.asarray(class_labels)
    out = []
    chunks = range(0, len(labels), batch_size)
    for k, i in enumerate(progress(chunks, "generating", enabled=None if show_progress else False)):
        chunk = [mapping[int(c)] for c in labels[i:i + batch_size]]
        out.append(prior.generate(len(chunk), label=chunk, seed=seed + k, steps=steps, guidance=guidance,
                                  batch_size=batch_size))
    return np.concatenate(out)


def frd(a, b, workers=2) -> float | None:
    """The Fréchet Radiomics Distance (frd-score, v1) between two image sets; None where frd-score is missing."""
    try:
        import frd_score
    except ImportError:
        return None
    from medzoo.evaluate.plots import save_png

    with tempfile.TemporaryDirectory(prefix="medzoo-frd-") as tmp:
        dirs = []
        for name, images in (("a", a), ("b", b)):
            folder = pathlib.Path(tmp) / name
            folder.mkdir()
            for i, image in enumerate(images):
                save_png(np.clip(np.rint(np.asarray(image)[..., 0] * 255.0), 0, 255).astype(np.uint8),
                         folder / f"{i:05d}.png")
            dirs.append(str(folder))
        return float(frd_score.compute_frd(dirs, num_workers=workers))


def metrics_from_dict(result: dict) -> dict:
    """A preset's metrics from a :class:`PriorGenerationResult`'s ``to_dict()`` (or its saved ``results.json``)."""
    f, settings = result["figures"], result["settings"]
    t, memo = f["tstr"], f["memorisation"]
    metrics = {
        "feature_fd": f["feature_fd"],
        **({"frd": {k: v for k, v in f["frd"].items() if v is not None}} if f.get("frd") else {}),
        "label_fidelity": f["label_fidelity"], "judge_accuracy": f["judge_accuracy"],
        "tstr_auroc": {"synthetic": t["synthetic"], "real_same_n": t["real_same_n"], "real_all": t["real_all"],
                       "images": t["n"], "classifier_seeds": settings.get("classifier_repeats", 1)},
        "memorisation_ratio": {"features": memo["features_ratio"], "pixels": memo["pixels_ratio"]},
        **({"training_against_held_out": {
            "features_ratio": memo["held_out_features_ratio"], "pixels_ratio": memo["held_out_pixels_ratio"],
            "nearer_training_features": memo["nearer_training_features"],
            "nearer_training_pixels": memo["nearer_training_pixels"], "images": memo["held_out_images"]}}
           if "held_out_features_ratio" in memo else {}),
        "images_per_second": f["images_per_second"],
        "samples": settings["samples"], "test_images": settings["test_images"], "frd_images": settings["frd_images"],
    }
    augmentation = {}
    for row in result.get("augmentation") or ():  # manifest metrics are trees of numbers: one dict per label share
        share = augmentation.setdefault(f"labels_{row['fraction']:g}", {"labelled": row["labelled"]})
        share["real_only" if not row["ratio"] else f"synthetic_per_real_{row['ratio']:g}"] = row["auroc"]
    if augmentation:
        metrics["augmentation_auroc"] = augmentation
    return metrics


@dataclasses.dataclass(repr=False, eq=False)
class PriorGenerationResult(Result):
    """The figures of :func:`prior_generation`, the sample grid and the memorisation pairs."""

    model: str
    dataset: str
    rows: dict
    augmentation: list
    samples_by_label: dict
    vae_samples: np.ndarray
    closest_pairs: list
    settings: dict
    task = "prior_generation"

    def to_dict(self, per_image=False) -> dict:
        return {"task": self.task, "model": self.model, "data": self.dataset, "settings": self.settings,
                "figures": self.rows, "augmentation": self.augmentation}

    def preset_metrics(self) -> dict:
        """The figures a preset's metadata and the manifest carry (``medzoo info``), from this result."""
        return metrics_from_dict(self.to_dict())

    def table(self) -> str:
        r = self.rows
        fd, frd_ = r["feature_fd"], r.get("frd") or {}

        def f(v, digits=2):
            return "-" if v is None else f"{v:.{digits}f}"

        lines = [
            ["feature FD (judge), vs real test", f(fd["prior"]), f(fd["real_train"]), f(fd["vae_normal"]),
             f(fd["blurred_test"])],
            ["FRD (radiomics), vs real test", f(frd_.get("prior")), f(frd_.get("real_train")),
             f(frd_.get("vae_normal")), f(frd_.get("blurred_test"))],
        ]
        out = format_table(["distance", "prior samples", "real train (floor)", "VAE N(0, I)", "blurred test"], lines,
                           title=f"{self.model}: distribution distance on {self.dataset} (lower is closer)")
        t = r["tstr"]
        memo = r["memorisation"]
        versions = (["mirror"] if memo.get("with_mirrors") else []) + (
            [f"{memo['jittered_copies']} jittered copies"] if memo.get("jittered_copies") else [])
        nearest = "nearest-training" + (f" (or its {' or '.join(versions)})" if versions else "")
        rows = [
            ["label fidelity (judge agrees with the asked label)", f(r["label_fidelity"], 3),
             f"judge accuracy on real test {r['judge_accuracy']:.3f}"],
            [f"AUROC, trained on {t['n']} synthetic (mean of {self.settings.get('classifier_repeats', 1)} seeds)",
             f(t["synthetic"], 3),
             f"{t['n']} real: {t['real_same_n']:.3f}; all {t['n_all']} real: {t['real_all']:.3f}"],
            ["", interval(*t["synthetic_ci"]), interval(*t["real_same_n_ci"])],
            [f"median {nearest} distance, features (sample / test)", f(r["memorisation"]["features_ratio"], 3),
             f"{r['memorisation']['features_sample']:.3f} / {r['memorisation']['features_test']:.3f}"],
            [f"median {nearest} distance, pixels (sample / test)", f(r["memorisation"]["pixels_ratio"], 3),
             f"{r['memorisation']['pixels_sample']:.3f} / {r['memorisation']['pixels_test']:.3f}"],
            *([[f"median nearest distance to {memo['held_out_images']} training / as many test images, features",
                f(memo["held_out_features_ratio"], 3),
                f"nearer a training image: {memo['nearer_training_features']:.0%} of samples (no copying: 50%)"],
               ["... pixels", f(memo["held_out_pixels_ratio"], 3),
                f"nearer a training image: {memo['nearer_training_pixels']:.0%} of samples"]]
              if "held_out_features_ratio" in memo else []),
            ["sampling speed (images/s)", f(r["images_per_second"], 2),
             f"{self.settings['steps']} steps, guidance {_guidance_text(self.settings)}"],
        ]
        out += "\n\n" + format_table(["measure", "prior", "reference"], rows, title="fidelity, usefulness, copies")
        if self.augmentation:
            aug = [[f"{a['fraction']:.0%}", a["labelled"], a["ratio"], a["synthetic"], f"{a['auroc']:.3f}",
                    interval(*a["ci"]), f"{a['gain']:+.3f}" if a["ratio"] else ""] for a in self.augmentation]
            out += "\n\n" + format_table(["labels", "real images", "synthetic per real", "synthetic", "AUROC",
                                          "95% CI", "gain"], aug,
                                         title="augmentation: real labelled images plus synthetic ones (test AUROC, mean of "
                                               f"{self.settings.get('classifier_repeats', 1)} classifier seeds)")
        return out

    def markdown(self) -> str:
        return "```\n" + self.table() + "\n```"

    def plot(self, path) -> pathlib.Path:
        rows = [(f"prior: {label}", images[:8]) for label, images in self.samples_by_label.items()]
        rows.append(("VAE N(0, I)", self.vae_samples[:8]))
        fig = plots.image_rows(rows, scale=1.2)
        fd = self.rows["feature_fd"]
        fig.suptitle(f"{self.model}: samples per label, and the VAE's own N(0, I) samples; feature FD to real test "
                     f"{fd['prior']:.2f} (prior) vs {fd['vae_normal']:.2f} (N(0, I)), floor {fd['real_train']:.2f}",
                     fontsize=8)
        return plots.save(fig, path)

    def extra_figures(self) -> dict:
        def pairs(path):
            rows = [("sample", np.stack([p[0] for p in self.closest_pairs])),
                    ("nearest training", np.stack([p[1] for p in self.closest_pairs]))]
            fig = plots.image_rows(rows, scale=1.2)
            fig.suptitle("the 8 samples closest to a training image (pixels), above their nearest training image",
                         fontsize=8)
            return plots.save(fig, path)

        return {"closest_pairs": pairs} if self.closest_pairs else {}


def _resized(images, side) -> np.ndarray:
    """Real images area-averaged to the samples' size, so pixels and radiomics compare like with like."""
    from medzoo.data.batches import area_resize

    return np.stack([area_resize(image, side) for image in images])


def _class_scores(judge, images) -> np.ndarray:
    """What an AUROC is computed from: the positive class's probability, or every class's for more than two."""
    p = judge.predict(images)
    return p[:, 1] if p.shape[1] == 2 else p


def _mean_auroc(labels, scores) -> float:
    """Mean over classifiers (axis 1 of ``scores``) of the (macro) AUROC; 1-D scores are one binary classifier's
    (what :func:`~medzoo.evaluate.stats.bootstrap_ci` passes on for a single seed)."""
    if np.ndim(scores) == 1:
        return float(auroc(labels, scores))
    return float(np.mean([auroc(labels, scores[:, j]) if scores.ndim == 2 else macro_auroc(labels, scores[:, j])
                          for j in range(scores.shape[1])]))


def _trained_auroc(images, labels, x_test, y_test, *, steps, seed, repeats, resamples, first=None) -> dict:
    """Test AUROC of classifiers trained on ``(images, labels)`` with ``repeats`` seeds: mean, 95% interval, each seed.

    One classifier's AUROC moves by a few hundredths with its seed (on 48 labelled chest
    X-rays: 0.86 to 0.91), as much as the gains an augmentation table looks for, so every
    row is the mean of several trainings on the same images; the interval resamples the
    test images (each bootstrap replicate averages the classifiers' AUROCs). ``first``: an
    already trained classifier to count as the first seed.
    """
    judges = [first] if first is not None else []
    judges += [train_classifier(images, labels, steps=steps, seed=seed + 1000 * r)
               for r in range(len(judges), int(repeats))]
    scores = np.stack([_class_scores(j, x_test) for j in judges], axis=1)
    per_seed = [_mean_auroc(y_test, scores[:, j:j + 1]) for j in range(scores.shape[1])]
    ci = bootstrap_ci(y_test, scores, statistic=_mean_auroc, n_resamples=resamples, seed=seed)
    return {"auroc": float(np.mean(per_seed)), "ci": ci, "per_seed": per_seed}


def nearest_training(judge, samples, x_test, x_train, *, dataset=None, training=None) -> tuple[dict, list]:
    """Memorisation: the median distance of samples and of real test images to their nearest training image, in
    the judge's features and in pixels, and the eight closest (sample, training image) pairs.

    ``dataset`` and ``training`` (the prior's metadata ``training``): where the prior also trained on the
    training images' mirrors or jittered copies (:func:`medzoo.recipes.prior.seen_images`), they count as
    training images too (a sample that copies a mirrored or rotated slice is a copy), for samples and test
    images alike.
    """
    from medzoo.recipes.prior import seen_images

    training = training or {}
    seen = seen_images(x_train, dataset, training) if dataset is not None else np.asarray(x_train, np.float32)
    f_train = judge.features(seen)
    d_feat_s, _ = nearest_distances(judge.features(samples), f_train)
    d_feat_t, _ = nearest_distances(judge.features(x_test), f_train)
    d_pix_s, nearest = nearest_distances(samples, seen)
    d_pix_t, _ = nearest_distances(x_test, seen)
    memo = {"features_sample": float(np.median(d_feat_s)), "features_test": float(np.median(d_feat_t)),
            "pixels_sample": float(np.median(d_pix_s)), "pixels_test": float(np.median(d_pix_t)),
            "with_mirrors": dataset in set(training.get("mirrored") or ()),
            "jittered_copies": int((training.get("jittered") or {}).get(dataset, 0)), "reference_images": len(seen)}
    memo["features_ratio"] = memo["features_sample"] / memo["features_test"]
    memo["pixels_ratio"] = memo["pixels_sample"] / memo["pixels_test"]
    memo.update(trained_against_held_out(judge, samples, x_test, x_train, dataset=dataset, training=training))
    closest = np.argsort(d_pix_s)[:8]
    return memo, [(samples[i], seen[nearest[i]]) for i in closest]


def trained_against_held_out(judge, samples, x_test, x_train, *, dataset=None, training=None, seed=0) -> dict:
    """Are samples nearer the images the prior trained on than to as many images it never saw?

    The nearest-training ratio above compares samples with test images; a prior that draws the dense middle
    of a distribution (strong guidance, few modes) lands near training images without copying any. Here each
    sample's nearest image among ``k`` training images is set against its nearest among ``k`` test images
    (``k`` the smaller split's size, both expanded by the prior's mirrors and jittered copies alike): a prior
    that learnt the distribution and not its images is as near to either (ratio 1, half the samples nearer
    the training images); one that reproduces its training images is nearer to them.
    """
    from medzoo.recipes.prior import seen_images

    k = min(len(x_test), len(x_train))
    rng = np.random.default_rng(seed)
    sets = [np.asarray(x, np.float32)[rng.choice(len(x), size=k, replace=False)] for x in (x_train, x_test)]
    if dataset is not None:
        sets = [seen_images(x, dataset, training or {}) for x in sets]
    out = {"held_out_images": k}
    for space, queries, refs in (("features", judge.features(samples), [judge.features(x) for x in sets]),
                                 ("pixels", samples, sets)):
        (d_train, _), (d_held, _) = (nearest_distances(queries, r) for r in refs)
        out[f"held_out_{space}_ratio"] = float(np.median(d_train) / np.median(d_held))
        out[f"nearer_training_{space}"] = float(np.mean(d_train < d_held))
    return out


def prior_generation(prior, *, dataset="kermany_pediatric_cxr_128", n_samples=1200, steps=None, guidance=None,
                     classifier_steps=600, classifier_repeats=3, frd_images=300, augmentation_priors=None, ratios=None,
                     bootstrap=500, seed=0, data_dir=None, show_progress=True) -> PriorGenerationResult:
    """Judge a latent prior's samples on ``dataset``'s test split (see the module docstring).

    Args:
        prior: a loaded :class:`~medzoo.models.latent_prior.LatentPrior` (its autoencoder attached).
        n_samples: samples for the distances, fidelity, TSTR and memorisation (class shares
            as in the training split).
        steps, guidance: sampling settings (default: the preset's).
        classifier_steps: optimiser steps of every classifier trained here.
        classifier_repeats: classifiers (seeds) averaged in every AUROC of the TSTR and
            augmentation rows.
        frd_images: images per set for the radiomics distance (0 skips it).
        augmentation_priors: ``{labelled fraction: prior}``; each prior may have seen only
            that fraction of the labels (the same class-stratified draw as
            :func:`medzoo.recipes.prior.keep_labels` with seed 0). Empty: no augmentation table.
        ratios: ``{fraction: [synthetic images per real labelled image, ...]}``.
    """
    from medzoo.data import load_npz
    from medzoo.recipes.prior import keep_labels

    default_steps, default_guidance = prior.sampling_defaults()
    steps = int(steps or default_steps)
    guidance = None if guidance is None else float(guidance)  # None: the preset's, each label's own where set
    x_train, y_train = load_npz(dataset, "train", data_dir=data_dir)
    x_test, y_test = load_npz(dataset, "test", data_dir=data_dir)
    x_train = (x_train.astype(np.float32) / 255.0)[..., None]
    x_test = (x_test.astype(np.float32) / 255.0)[..., None]
    rng = np.random.default_rng(seed)

    judge = train_classifier(x_train, y_train, steps=classifier_steps, seed=seed)
    judge_accuracy = judge.accuracy(x_test, y_test)

    # samples, with the training split's class shares
    shares = np.bincount(y_train) / len(y_train)
    wanted = np.repeat(np.arange(len(shares)), np.round(shares * n_samples).astype(int))
    started = time.time()
    samples = generate_for_classes(prior, wanted, dataset, seed=seed, steps=steps, guidance=guidance,
                                   show_progress=show_progress)
    speed = len(samples) / (time.time() - started)
    if x_train.shape[1:3] != samples.shape[1:3]:  # a prior drawing 128 px images of a 256 px dataset
        x_train, x_test = (_resized(x, samples.shape[1]) for x in (x_train, x_test))
    ae = prior.autoencoder
    z_shape = (len(samples), *prior.latent_grid, prior.latent_channels)
    vae_samples = ae.decode(np.random.default_rng(seed).standard_normal(z_shape).astype(np.float32))
    train_subset = x_train[rng.choice(len(x_train), size=min(len(samples), len(x_train)), replace=False)]
    blurred = blur(x_test)

    f_test = judge.features(x_test)
    feature_fd = {name: frechet_distance(judge.features(images), f_test) for name, images in
                  (("prior", samples), ("real_train", train_subset), ("vae_normal", vae_samples),
                   ("blurred_test", blurred))}
    frd_values = None
    if frd_images:
        k = int(frd_images)
        frd_values = {name: frd(images[:k], x_test[:k]) for name, images in
                      (("prior", samples), ("real_train", train_subset), ("vae_normal", vae_samples),
                       ("blurred_test", blurred))}

    fidelity = float((judge.predict(samples).argmax(axis=1) == wanted).mean())

    # train on synthetic, test on real; against as many real images for as many steps
    n = len(samples)
    real_idx = rng.choice(len(x_train), size=min(n, len(x_train)), replace=False)
    tstr = {"n": n, "n_all": len(x_train)}
    trained = dict(steps=classifier_steps, repeats=classifier_repeats, resamples=bootstrap)
    for key, (xs, ys, first) in {"synthetic": (samples, wanted, None),
                                 "real_same_n": (x_train[real_idx], y_train[real_idx], None),
                                 "real_all": (x_train, y_train, judge)}.items():
        row = _trained_auroc(xs, ys, x_test, y_test, seed=seed + 1, first=first, **trained)
        tstr[key], tstr[f"{key}_ci"], tstr[f"{key}_per_seed"] = row["auroc"], row["ci"], row["per_seed"]

    memo, pairs = nearest_training(judge, samples, x_test, x_train, dataset=dataset,
                                   training=(getattr(prior, "zoo_metadata", None) or {}).get("training", {}))

    augmentation = []
    ratios = ratios or {0.01: [1, 4, 10], 0.1: [0.5, 1, 2], 1.0: [0.25]}
    for fraction, aug_prior in sorted((augmentation_priors or {}).items()):
        kept = keep_labels(y_train, fraction, seed=0)
        idx = np.flatnonzero(kept >= 0)
        xr, yr = x_train[idx], y_train[idx]
        row = _trained_auroc(xr, yr, x_test, y_test, seed=seed + 2, **trained)
        base = row["auroc"]
        augmentation.append({"fraction": fraction, "labelled": len(idx), "ratio": 0, "synthetic": 0,
                             "gain": 0.0, **row})
        fr_ratios = sorted(ratios.get(fraction, [1]))
        most = int(round(max(fr_ratios) * len(idx)))
        class_shares = np.bincount(yr, minlength=len(shares)) / len(yr)
        pool_labels = np.repeat(np.arange(len(shares)), np.round(class_shares * most).astype(int))
        pool_labels = pool_labels[np.random.default_rng(seed + 3).permutation(len(pool_labels))]
        if aug_prior is prior and len(pool_labels) <= len(samples):  # reuse the samples judged above
            perm = np.random.default_rng(seed + 4).permutation(len(samples))
            pool, pool_labels = samples[perm], wanted[perm]
        else:
            pool = generate_for_classes(aug_prior, pool_labels, dataset, seed=seed + 100, steps=steps,
                                        guidance=guidance, show_progress=show_progress)
        for ratio in fr_ratios:
            k = int(round(ratio * len(idx)))
            row = _trained_auroc(np.concatenate([xr, pool[:k]]), np.concatenate([yr, pool_labels[:k]]),
                                 x_test, y_test, seed=seed + 2, **trained)
            augmentation.append({"fraction": fraction, "labelled": len(idx), "ratio": ratio, "synthetic": k,
                                 "gain": row["auroc"] - base, **row})

    by_label = {}
    names = [prior.labels[i] for i in prior_labels_for(prior, dataset)]
    for c, name in enumerate(names):
        by_label[name] = samples[wanted == c]
    rows = {"feature_fd": feature_fd, "frd": frd_values, "label_fidelity": fidelity,
            "judge_accuracy": judge_accuracy, "tstr": tstr, "memorisation": memo, "images_per_second": speed}
    own = {name: g for name, g in prior.guidance_per_label.items() if name in names} if guidance is None else {}
    settings = {"steps": steps, "guidance": default_guidance if guidance is None else guidance, "samples": n,
                "guidance_per_label": own, "classifier_steps": classifier_steps,
                "classifier_repeats": classifier_repeats,
                "frd_images": frd_images, "judge_side_px": judge.side, "test_images": len(x_test), "seed": seed}
    label = f"{prior.zoo_metadata.get('name', 'prior')} {prior.zoo_metadata.get('version', '')}".strip() \
        if hasattr(prior, "zoo_metadata") else "prior"
    return PriorGenerationResult(label, dataset, rows, augmentation, by_label, vae_samples, pairs, settings)
