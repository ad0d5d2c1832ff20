"""Statistics behind the evaluation tasks: AUROC, ROC curves, bootstrap intervals, Bjontegaard deltas.

Pure numpy (scipy only for the optional piecewise-cubic Bjontegaard variant), so
each function can be checked against a hand-computed case.

* :func:`auroc` is the Mann-Whitney rank statistic: the probability that a random
  positive scores higher than a random negative, ties counting one half.
* :func:`bootstrap_ci` resamples images (stratified by class by default) and
  returns a percentile interval of any statistic.
* :func:`bd_rate` is the Bjontegaard delta rate (VCEG-M33): fit log-rate as a
  cubic polynomial of quality for both curves, integrate the difference over the
  quality interval the two curves share, report the mean rate change in percent.
  It reports NaN, with a reason, when the curves share no quality interval.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from medzoo.errors import DataError


# ------------------------------------------------------------------ ranks
def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    mean_rank = (starts + ends + 1) / 2.0  # ranks start + 1 .. end, averaged
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _check_binary(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise DataError(f"labels and scores differ in length: {labels.shape[0]} vs {scores.shape[0]}")
    if not np.all(np.isin(labels, (0, 1))):
        raise DataError(f"labels must be 0 (negative) or 1 (positive), got values {np.unique(labels)[:10]}")
    if not np.all(np.isfinite(scores)):
        raise DataError("scores contain NaN or infinite values")
    labels = labels.astype(np.int64)
    if labels.min(initial=1) == labels.max(initial=0):
        raise DataError("AUROC needs both classes among the labels")
    return labels, scores


def auroc(labels, scores) -> float:
    """Area under the ROC curve via the rank (Mann-Whitney U) statistic.

    Args:
        labels: 0 (negative, e.g. normal) or 1 (positive, e.g. pneumonia) per item.
        scores: higher means "more positive" (e.g. a reconstruction error).

    Returns:
        ``P(score_pos > score_neg) + 0.5 P(score_pos == score_neg)``, in [0, 1].
    """
    labels, scores = _check_binary(labels, scores)
    ranks = _average_ranks(scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    u = ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def macro_auroc(labels, probabilities) -> float:
    """Mean one-vs-rest AUROC over the classes of ``labels`` (0..K-1); ``probabilities`` (N, K).

    Each class's AUROC ranks the items by that class's probability, that class against the
    rest; the mean weights every class equally, however rare.
    """
    labels = np.asarray(labels).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise DataError(f"probabilities must be (N, K) for N = {len(labels)} labels, got {probabilities.shape}")
    classes = np.unique(labels)
    if len(classes) < 2 or classes.min() < 0 or classes.max() >= probabilities.shape[1]:
        raise DataError(f"labels must be class indices 0..{probabilities.shape[1] - 1}, at least two of them")
    return float(np.mean([auroc(labels == k, probabilities[:, k]) for k in classes]))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)``, from (0, 0) to (1, 1), one point per distinct score.

    Its trapezoidal area equals :func:`auroc` (ties give diagonal segments).
    """
    labels, scores = _check_binary(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[last_of_group]
    fps = (last_of_group + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, scores[last_of_group]]
    return fpr, tpr, thresholds


def bootstrap_ci(labels, scores, statistic=auroc, *, n_resamples=2000, level=0.95, seed=0,
                 stratified=True) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(labels, scores)`` over resampled items.

    Args:
        statistic: a function ``(labels, scores) -> float`` (default :func:`auroc`); ``scores``
            may be (N,) or (N, K) (e.g. class probabilities for :func:`macro_auroc`): items are rows.
        n_resamples: bootstrap replicates.
        level: coverage of the interval (0.95 gives the 2.5 and 97.5 percentiles).
        seed: seed of the resampling, so intervals are reproducible.
        stratified: resample positives and negatives separately, keeping the class counts
            (every replicate then has both classes, and the AUROC is always defined).

    Returns:
        ``(low, high)``.
    """
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores.reshape(-1) if scores.ndim < 2 or scores.shape[1:] == (1,) else scores
    if len(scores) != len(labels):
        raise DataError(f"labels and scores differ in length: {len(labels)} vs {len(scores)}")
    if not 0.0 < level < 1.0:
        raise DataError(f"level must be in (0, 1), got {level}")
    if n_resamples < 10:
        raise DataError(f"n_resamples must be at least 10, got {n_resamples}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratified else [np.arange(len(labels))]
    values = np.empty(n_resamples)
    for i in range(n_resamples):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        values[i] = statistic(labels[idx], scores[idx])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


# -------------------------------------------------------------- Bjontegaard
@dataclasses.dataclass(frozen=True)
class BDResult:
    """A Bjontegaard delta and the conditions it was computed under.

    Attributes:
        value: mean rate change of the test curve against the anchor, in percent
            (negative: the test codec needs fewer bits for the same quality); NaN
            when it cannot be computed (see ``note``).
        quality_range: the shared quality interval integrated over, or None.
        overlap: that interval's length as a fraction of the shorter curve's quality span.
        degree: polynomial degree used (3 unless a curve has fewer than 4 points).
        note: why the value is NaN or less trustworthy (empty when all is well).
    """

    value: float
    quality_range: tuple[float, float] | None
    overlap: float
    degree: int
    method: str
    note: str = ""

    def to_dict(self) -> dict:
        return {"value_percent": None if math.isnan(self.value) else round(self.value, 3),
                "quality_range": None if self.quality_range is None else [round(q, 4) for q in self.quality_range],
                "overlap": round(self.overlap, 4), "degree": self.degree, "method": self.method, "note": self.note}


def _curve(rates, quality, what) -> tuple[np.ndarray, np.ndarray]:
    rates = np.asarray(rates, dtype=np.float64).reshape(-1)
    quality = np.asarray(quality, dtype=np.float64).reshape(-1)
    if rates.shape != quality.shape or len(rates) < 2:
        raise DataError(f"{what}: need at least two (rate, quality) points of equal count")
    if np.any(rates <= 0) or not np.all(np.isfinite(rates)) or not np.all(np.isfinite(quality)):
        raise DataError(f"{what}: rates must be positive and all values finite")
    order = np.argsort(quality, kind="mergesort")
    return np.log(rates[order]), quality[order]


def _integral(log_rate, quality, low, high, method, degree):
    if method == "cubic":
        poly = np.polyint(np.polyfit(quality, log_rate, degree))
        return np.polyval(poly, high) - np.polyval(poly, low)
    from scipy.interpolate import PchipInterpolator

    unique_q, first = np.unique(quality, return_index=True)  # pchip needs strictly increasing x
    if len(unique_q) < 2:
        raise DataError("pchip needs at least two distinct quality values")
    return float(PchipInterpolator(unique_q, log_rate[first]).integrate(low, high))


def bd_rate(anchor_rates, anchor_quality, test_rates, test_quality, *, method="cubic") -> BDResult:
    """Bjontegaard delta rate of a test curve against an anchor curve, in percent.

    Args:
        anchor_rates, anchor_quality: the reference curve (e.g. JPEG 2000: bpp, PSNR).
        test_rates, test_quality: the curve being judged.
        method: ``"cubic"`` (the original VCEG-M33 cubic fit of log-rate over quality;
            with fewer than 4 points the degree drops to points - 1 and ``note`` says so)
            or ``"pchip"`` (piecewise cubic Hermite interpolation, as in later JVET
            practice; needs scipy).

    Returns:
        A :class:`BDResult`; ``value`` is NaN when the curves share no quality interval:
        a BD-rate then does not exist (it would be an extrapolation).

    Example:
        A test curve with exactly half the anchor's rate at every quality gives -50 %.
    """
    if method not in ("cubic", "pchip"):
        raise DataError(f"method must be 'cubic' or 'pchip', got {method!r}")
    log_a, q_a = _curve(anchor_rates, anchor_quality, "anchor curve")
    log_t, q_t = _curve(test_rates, test_quality, "test curve")
    degree = min(3, len(q_a) - 1, len(q_t) - 1)
    notes = []
    if degree < 3 and method == "cubic":
        notes.append(f"only {min(len(q_a), len(q_t))} points on a curve: polynomial degree {degree} instead of 3")
    low, high = max(q_a.min(), q_t.min()), min(q_a.max(), q_t.max())
    span = min(q_a.max() - q_a.min(), q_t.max() - q_t.min())
    if high <= low:
        return BDResult(float("nan"), None, 0.0, degree, method,
                        f"the curves share no quality interval (anchor {q_a.min():.3g}..{q_a.max():.3g}, "
                        f"test {q_t.min():.3g}..{q_t.max():.3g}); a BD-rate would be an extrapolation")
    overlap = (high - low) / span if span > 0 else 1.0
    if overlap < 0.5:
        notes.append(f"the curves overlap on only {100 * overlap:.0f}% of the shorter curve's quality range")
    mean_diff = (_integral(log_t, q_t, low, high, method, degree)
                 - _integral(log_a, q_a, low, high, method, degree)) / (high - low)
    return BDResult(float((math.exp(mean_diff) - 1.0) * 100.0), (float(low), float(high)), float(overlap), degree,
                    method, "; ".join(notes))


def rate_at_quality(rates, quality, target) -> float:
    """The rate a curve needs for quality ``target`` (log-rate interpolated linearly); NaN outside the curve.

    Used to compare a single rate point (one model) with a codec's curve.
    """
    log_rate, q = _curve(rates, quality, "curve")
    if not q.min() <= target <= q.max():
        return float("nan")
    unique_q, first = np.unique(q, return_index=True)
    return float(np.exp(np.interp(target, unique_q, log_rate[first])))


def quality_at_rate(rates, quality, target_rate) -> float:
    """The quality a curve reaches at ``target_rate`` (interpolated linearly over log-rate); NaN outside it."""
    log_rate, q = _curve(rates, quality, "curve")
    order = np.argsort(log_rate, kind="mergesort")
    log_rate, q = log_rate[order], q[order]
    target = math.log(target_rate) if target_rate > 0 else -math.inf
    if not log_rate.min() <= target <= log_rate.max():
        return float("nan")
    unique_r, first = np.unique(log_rate, return_index=True)
    return float(np.interp(target, unique_r, q[first]))
