"""AUROC, ROC curves, bootstrap intervals and Bjontegaard deltas against cases with known answers."""

import math

import numpy as np
import pytest

from medzoo.errors import DataError, MedzooError
from medzoo.evaluate.common import stratified_indices
from medzoo.evaluate.stats import auroc, bd_rate, bootstrap_ci, quality_at_rate, rate_at_quality, roc_curve


def test_auroc_hand_computed_cases():
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3 of 4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert auroc([0, 0, 1], [1.0, 2.0, 3.0]) == 1.0
    assert auroc([1, 1, 0], [1.0, 2.0, 3.0]) == 0.0
    # ties across classes: pos {2, 2}, neg {1, 2}: (2>1)+(2=2)/2 for each positive -> 1.5 / 2
    assert auroc([1, 1, 0, 0], [2, 2, 1, 2]) == pytest.approx(0.75)


def test_auroc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounding makes many ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_curve_area_equals_auroc():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels, 1.0), 1)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thresholds) < 0)
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert area == pytest.approx(auroc(labels, scores), abs=1e-12)


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_data():
    rng = np.random.default_rng(2)

    def sample(n):
        labels = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
        return labels, rng.normal(labels * 0.8, 1.0)

    small, large = sample(60), sample(2000)
    lo_s, hi_s = bootstrap_ci(*small, n_resamples=500, seed=0)
    lo_l, hi_l = bootstrap_ci(*large, n_resamples=500, seed=0)
    assert lo_s <= auroc(*small) <= hi_s
    assert lo_l <= auroc(*large) <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # about 1/sqrt(33) as wide
    assert bootstrap_ci(*small, n_resamples=500, seed=0) == (lo_s, hi_s)  # seeded: reproducible
    assert bootstrap_ci([0, 0, 1, 1], [0.0, 0.1, 0.9, 1.0], n_resamples=100) == (1.0, 1.0)


def test_auroc_refuses_what_it_cannot_score():
    with pytest.raises(DataError, match="both classes"):
        auroc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="0 .* or 1"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(MedzooError, match="NaN"):
        auroc([0, 1], [0.1, float("nan")])


def _anchor():
    rates = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    return rates, 30.0 + 6.0 * np.log2(rates / 0.1) - 0.3 * np.log2(rates / 0.1) ** 2


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_bd_rate_of_half_and_double_rate_curves(method):
    rates, psnr = _anchor()
    assert bd_rate(rates, psnr, rates / 2, psnr, method=method).value == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(rates, psnr, rates * 2, psnr, method=method).value == pytest.approx(100.0, abs=1e-9)
    same = bd_rate(rates, psnr, rates, psnr, method=method)
    assert same.value == pytest.approx(0.0, abs=1e-9) and same.overlap == pytest.approx(1.0) and same.note == ""


def test_bd_rate_uses_only_the_shared_quality_range():
    rates = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    psnr = 30.0 + 6.0 * np.log2(rates / 0.1)  # log-rate linear in PSNR: every fit degree is exact
    # the test curve covers the upper part only, at 80 % of the rate
    result = bd_rate(rates, psnr, rates[2:] * 0.8, psnr[2:])
    assert result.value == pytest.approx(-20.0, abs=1e-6)
    assert result.quality_range == pytest.approx((psnr[2], psnr[-1]))
    assert "degree 2" in result.note  # three points cannot carry a cubic


def test_bd_rate_without_overlap_is_nan_with_a_reason():
    rates, psnr = _anchor()
    result = bd_rate(rates, psnr, rates / 10, psnr - 40.0)
    assert math.isnan(result.value) and result.quality_range is None
    assert "share no quality interval" in result.note
    assert result.to_dict()["value_percent"] is None


def test_rate_at_quality_interpolates_in_log_rate():
    rates, psnr = np.array([0.1, 0.4]), np.array([30.0, 40.0])
    assert rate_at_quality(rates, psnr, 35.0) == pytest.approx(0.2)  # geometric midpoint
    assert math.isnan(rate_at_quality(rates, psnr, 45.0))
    assert quality_at_rate(rates, psnr, 0.2) == pytest.approx(35.0)
    assert math.isnan(quality_at_rate(rates, psnr, 0.05))


def test_stratified_subsets_keep_both_classes_of_a_sorted_split():
    labels = np.r_[np.zeros(170, int), np.ones(343, int)]  # sorted by label, like the npz files
    keep = stratified_indices(labels, 30, seed=0)
    assert len(keep) == 30 and len(np.unique(keep)) == 30
    assert (labels[keep] == 0).sum() == 10  # 170/513 of 30
    assert np.array_equal(keep, stratified_indices(labels, 30, seed=0))
    assert len(stratified_indices(labels, None)) == 513


def test_image_by_image_at_the_same_bytes_undoes_what_spreading_bits_across_images_buys():
    """Mean curves credit a coder for how it spreads bits over images; at each image's own bytes it loses here."""
    from medzoo.evaluate.compression import same_bytes_per_image

    # a classical codec at two target qualities: the easy image 0 costs a tenth of image 1
    sweep = {"bpp": [0.55, 1.1], "psnr": [35.0, 38.0],
             "per_image": {"bpp": np.array([[0.1, 1.0], [0.2, 2.0]]), "psnr": np.array([[35.0, 35.0], [38.0, 38.0]])}}
    # a learned point half a dB behind it on each image, at the bytes it spent there
    point = {"bpp": 0.6, "psnr": 36.0, "per_image": {"bpp": np.array([0.2, 1.0]), "psnr": np.array([37.5, 34.5])}}
    assert point["psnr"] > quality_at_rate(sweep["bpp"], sweep["psnr"], point["bpp"]) + 0.5  # the means say ahead
    each = same_bytes_per_image(point, sweep, "psnr")
    assert each == {"mean_difference": pytest.approx(-0.5), "ahead": 0, "images": 2}
    outside = {**point, "per_image": {"bpp": np.array([0.05, 1.0]), "psnr": np.array([37.5, 35.5])}}
    assert same_bytes_per_image(outside, sweep, "psnr") == {"mean_difference": pytest.approx(0.5), "ahead": 1,
                                                            "images": 1}  # image 0 lies below the sweep
    assert same_bytes_per_image(point, sweep, "ms_ssim")["mean_difference"] is None
