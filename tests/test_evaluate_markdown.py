"""Markdown tables of the evaluation results (to paste into a README), on hand-made results: no models, fast."""

import numpy as np

from medzoo.evaluate.anomaly import AnomalyResult
from medzoo.evaluate.common import Result, interval
from medzoo.evaluate.denoise import DenoiseResult
from medzoo.evaluate.probe import ProbeResult
from medzoo.evaluate.report import markdown_table


def _table_lines(md):
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in lines}) == 1, md  # as many columns as the header
    return lines


def test_interval_has_three_decimals_and_dashes_for_missing_bounds():
    assert interval(0.51234, 0.9) == "[0.512, 0.900]" and interval(float("nan"), None) == "[-, -]"


def test_a_result_without_its_own_markdown_gives_its_text_table_fenced():
    class Plain(Result):
        def table(self):
            return "a  b\n-  -"

    assert Plain().markdown() == "```\na  b\n-  -\n```"


def _metric(auroc, kind="model"):
    return {"auroc": auroc, "ci_low": auroc - 0.05, "ci_high": min(1.0, auroc + 0.05), "kind": kind}


def test_anomaly_rows_of_several_models_stack_under_one_header():
    labels = np.array([0, 0, 1, 1])
    ae = AnomalyResult("ae-normal", "test split", labels, {"mse": np.zeros(4), "pca": np.zeros(4)},
                       {"mse": _metric(0.61), "pca": _metric(0.7, "baseline")}, True, [],
                       {"level": 0.9, "bootstrap": 100})
    vae = AnomalyResult("vae-normal", "test split", labels, {"nelbo": np.zeros(4)}, {"nelbo": _metric(0.655)}, True,
                        [], {"level": 0.9, "bootstrap": 100})
    lines = _table_lines(ae.markdown())
    assert lines[0] == "| model | score | AUROC | 90% CI |"
    assert lines[2:] == ["| ae-normal | mse | 0.610 | [0.560, 0.660] |",
                         "| (baseline) | pca | 0.700 | [0.650, 0.750] |"]
    assert "2 normal / 2 pneumonia" in ae.markdown() and "100 resamples" in ae.markdown()
    both = markdown_table(AnomalyResult.SUMMARY_HEADERS, ae.summary_rows() + vae.summary_rows())
    assert _table_lines(both)[-1] == "| vae-normal | nelbo | 0.655 | [0.605, 0.705] |"


def _method(auroc, bal, what="frozen code (16-d)", params=17):
    return {"what": what, "trained_parameters": params, "auroc": auroc, "ci_low": auroc - 0.1,
            "ci_high": auroc + 0.05, "accuracy": bal + 0.01, "balanced_accuracy": bal}


def test_probe_rows_compare_with_the_supervised_cnn():
    labels = np.array([0, 1, 1])
    first = ProbeResult("ae", {}, labels, {}, {"probe:ae": _method(0.8, 0.7),
                                                "cnn:supervised": _method(0.9, 0.85, "images, end to end", 98001)},
                        2 / 3, {})
    second = ProbeResult("vae", {}, labels, {}, {"probe:vae": _method(0.75, 0.72)}, 2 / 3, {})
    rows = {r[0]: r for r in first.summary_rows()}
    assert rows["probe:ae"][3:] == ["0.800 [0.700, 0.850]", "0.710", "0.700", "-0.100", "-0.150"]
    assert rows["cnn:supervised"][-2:] == [None, None]
    assert second.summary_rows()[0][-2:] == [None, None]  # no CNN in this run, none given
    cnn = first.methods["cnn:supervised"]
    assert second.summary_rows(reference=cnn)[0][-2:] == ["-0.150", "-0.130"]
    lines = _table_lines(first.markdown())
    assert lines[0].startswith("| method | features | trained params | AUROC [95% CI] | accuracy | balanced accuracy")
    assert "majority-class accuracy 0.667" in first.markdown()


def test_denoise_markdown_is_sigma_by_method_with_the_best_psnr_in_bold():
    rows = [{"sigma": s, "method": m, "psnr": p, "ssim": q} for s, m, p, q in (
        (0.1, "noisy", 20.0, 0.4), (0.1, "nlm", 28.0, 0.8), (0.1, "dae", 29.5, 0.85),
        (0.2, "noisy", 14.0, 0.2), (0.2, "nlm", 25.25, 0.7), (0.2, "dae", 24.0, 0.72))]
    result = DenoiseResult(["dae"], "test split", 8, (0.1, 0.2), rows, {}, {})
    lines = _table_lines(result.markdown())
    assert lines[0] == "| sigma | noisy | nlm | dae |"
    assert lines[2] == "| 0.1 | 20.00 / 0.400 | 28.00 / 0.800 | **29.50 / 0.850** |"
    assert lines[3] == "| 0.2 | 14.00 / 0.200 | **25.25 / 0.700** | 24.00 / 0.720 |"
    assert "(8 images)" in result.markdown()
