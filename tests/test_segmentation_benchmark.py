"""The label-efficiency benchmark's bookkeeping: equal step budgets and the paired Dice gain."""

import json

import numpy as np
import pytest
from conftest import import_benchmark


@pytest.fixture(scope="module")
def bench():
    return import_benchmark("segmentation")


def _steps(schedule, images, batch):
    return schedule["epochs"] * -(-images * schedule["crops_per_image"] // batch)


@pytest.mark.parametrize("images", [40, 98, 497, 2143])
def test_every_share_of_the_masks_gets_about_the_same_optimizer_steps(bench, images):
    schedule = bench.schedule_for_steps(600, images, batch_size=16)
    # one pass over the images is the finest step a run can stop at; no schedule is further off
    one_pass = -(-images // 16)
    best = min(abs(e * -(-images * c // 16) - 600) for e in range(1, 9) for c in range(1, 300))
    assert abs(_steps(schedule, images, 16) - 600) == best
    assert best <= one_pass


def test_the_gain_interval_comes_from_resampling_images_in_pairs(bench):
    rng = np.random.default_rng(0)
    random_init = rng.uniform(0.2, 0.9, size=200)  # images differ a lot in difficulty
    zoo = random_init + 0.02 + rng.normal(0, 0.01, size=200)  # a small, consistent gain
    gain, low, high = bench.paired_difference(zoo, random_init, n_resamples=500)
    assert gain == pytest.approx(np.mean(zoo - random_init))
    assert 0.0 < low < gain < high < 0.04  # the unpaired intervals (about +-0.03 each) would overlap
    same, lo, hi = bench.paired_difference(random_init, random_init, n_resamples=100)
    assert same == lo == hi == 0.0


def test_resume_reads_back_finished_runs_and_restarts_runs_with_other_settings(bench, tmp_path):
    args = bench.parser().parse_args(["--epochs", "2", "--crop-size", "64", "--bootstrap", "100"])
    settings = bench.run_settings("seg-brainmri-tumour", 0.25, False, args)
    assert settings["overrides"] == {"label_fraction": 0.25, "encoder": None, "crop_size": 64, "epochs": 2}
    run = tmp_path / "run"
    assert bench.finished_row(run, settings) is None  # never started
    run.mkdir()
    (run / bench.SETTINGS_FILE).write_text(json.dumps(settings))
    (run / "backup").mkdir()
    assert bench.finished_row(run, settings) is None and (run / "backup").is_dir()  # unfinished: kept, to resume
    (run / bench.ROW_FILE).write_text(json.dumps({"dice": 0.5, "ci": [0.4, 0.6]}))
    assert bench.finished_row(run, settings) == {"dice": 0.5, "ci": (0.4, 0.6)}
    args.crop_size = 96  # another budget: the old run must not be read back nor resumed
    assert bench.finished_row(run, bench.run_settings("seg-brainmri-tumour", 0.25, False, args)) is None
    assert not run.exists()


def _seed_finished_runs(bench, task, args, out, hc=False):
    """Rows as finished runs would leave them, so ``main --resume`` trains nothing."""
    rng = np.random.default_rng(len(task))
    for fraction in args.fractions:
        for pretrained in (True, False):
            settings = bench.run_settings(task, fraction, pretrained, args)
            run = out / "runs" / f"{task}-{'pretrained' if pretrained else 'scratch'}-{int(round(fraction * 100))}pct"
            run.mkdir(parents=True)
            scores = rng.uniform(0.3, 0.9, size=12)
            row = {"task": task, "fraction": fraction, "init": "zoo encoder" if pretrained else "random",
                   "train_images": 10, "dice": float(scores.mean()), "dice_per_image": scores.tolist(),
                   "ci": [float(scores.min()), float(scores.max())], "epochs": 2, "optimizer_steps": 20,
                   "wall_time_s": 1.0, **({"hc_mae_mm": 3.0} if hc else {})}
            (run / bench.SETTINGS_FILE).write_text(json.dumps(settings))
            (run / bench.ROW_FILE).write_text(json.dumps(row))


def test_each_dataset_keeps_its_table_when_a_later_run_covers_another(bench, tmp_path):
    argv = ["--output", str(tmp_path), "--resume", "--epochs", "2", "--bootstrap", "50", "--fractions", "0.05", "1"]
    args = bench.parser().parse_args(argv)
    _seed_finished_runs(bench, "seg-brainmri-tumour", args, tmp_path)
    _seed_finished_runs(bench, "seg-fetalus-head", args, tmp_path, hc=True)
    bench.main(argv + ["--tasks", "seg-brainmri-tumour"])
    bench.main(argv + ["--tasks", "seg-fetalus-head"])
    brain = (tmp_path / "seg-brainmri-tumour.txt").read_text()
    assert "5%" in brain and "100%" in brain and "HC error" not in brain
    assert "HC error mm, zoo" in (tmp_path / "seg-fetalus-head.txt").read_text()
    assert set(json.loads((tmp_path / "summary.json").read_text())) == {"seg-fetalus-head"}
    assert {p.name for p in tmp_path.glob("*.png")} == {"seg-brainmri-tumour.png", "seg-fetalus-head.png"}
    bench.main(argv + ["--tasks", "seg-brainmri-tumour", "seg-fetalus-head"])  # both read back: one figure
    assert set(json.loads((tmp_path / "summary.json").read_text())) == {"seg-brainmri-tumour", "seg-fetalus-head"}
    assert (tmp_path / "summary.png").stat().st_size > 0
