"""Label efficiency: a zoo encoder against the same network from random weights, with 5%, 25% and 100% of the masks.

For each segmentation recipe (``seg-breastus-lesion``, ``seg-brainmri-tumour``,
``seg-fetalus-head``) and each share of the training masks, two runs with the same
recipe, budget and seed: the segmenter on its modality's zoo VAE encoder, and the same
architecture from random initialisation (``encoder=None``). Test-split Dice per image
with a bootstrap 95% interval of the mean; for HC18 also the head circumference of the
ellipse fitted to each predicted mask against the reference, mean absolute error in mm
(each image's pixel size on the stored 256 px grid, from the file). One table and one plot
per dataset, all in one run: ``<output>/<task>.txt``, ``.json`` and ``.png`` per dataset, and
``summary.txt`` / ``summary.json`` (and ``summary.png``, a panel per dataset) for every task of
the run.

    python benchmarks/segmentation.py                                # full recipes (GPU territory)
    KERAS_BACKEND=torch python benchmarks/segmentation.py --steps 500 --crop-size 96 --resume   # README table (CPU)
    python benchmarks/segmentation.py --time-budget 600              # ten minutes per run
    python benchmarks/segmentation.py --tasks seg-brainmri-tumour --epochs 2 --max-images 200   # quick look

With ``--resume`` a killed benchmark goes on where it stopped: runs finished with the same
settings are read back from ``<output>/runs/*/row.json`` and an unfinished one continues from
its last epoch, so an 18-run curve can be spread over several sessions on a slow machine.
"""

import functools
import json
import shutil

import numpy as np

import _common

from medzoo.data import PreprocessSpec, load_masks, load_npz, load_pixel_spacing
from medzoo.evaluate.common import format_table
from medzoo.evaluate.stats import bootstrap_ci
from medzoo.metrics import dice, ellipse_circumference
from medzoo.recipes import RECIPES, train

TASKS = ["seg-breastus-lesion", "seg-brainmri-tumour", "seg-fetalus-head"]


def head_circumference_error(dataset, predicted) -> float:
    """Mean absolute difference (mm) between fitted-ellipse circumferences of ``predicted`` (the first test
    images) and HC18's references."""
    spacing, reference = load_pixel_spacing(dataset, "test", side=predicted.shape[1])
    spacing, reference = spacing[: len(predicted)], reference[: len(predicted)]
    return float(np.nanmean(np.abs(ellipse_circumference(predicted, spacing) - reference)))


def schedule_for_steps(steps, train_images, batch_size, max_epochs=8) -> dict:
    """``crops_per_image`` and ``epochs`` whose optimizer steps over ``train_images`` come closest to ``steps``.

    Every share of the masks then gets the same budget in steps (a few masks are seen as many
    crops, not as many short epochs, so the validation passes stay few), and both inits of a
    share get exactly the same schedule. Ties go to fewer epochs.
    """
    best = None
    for epochs in range(1, max_epochs + 1):
        for crops in {max(1, int(steps * batch_size / (epochs * train_images))),
                      max(1, -(-steps * batch_size // (epochs * train_images)))}:
            total = epochs * -(-train_images * crops // batch_size)
            key = (abs(total - steps), epochs, crops)
            if best is None or key < best[0]:
                best = (key, {"crops_per_image": crops, "epochs": epochs})
    return best[1]


@functools.lru_cache(maxsize=None)
def _train_split_size(dataset) -> int:
    return len(load_npz(dataset, "train")[0])


def train_images_used(task, fraction, args) -> int:
    """How many training images (with their masks) a run with this share of the masks sees."""
    available = _train_split_size(RECIPES[task].dataset)
    if args.max_images:
        available = min(available, args.max_images)
    return max(1, round(available * fraction))


def paired_difference(zoo_scores, random_scores, *, n_resamples=1000, seed=0) -> tuple[float, float, float]:
    """Mean per-image Dice of the zoo encoder minus random init, and its bootstrap 95% interval: ``(gain, low, high)``.

    Both runs segment the same test images, so the images are resampled in pairs: the
    interval is that of the gain, far narrower than the two runs' own intervals suggest.
    """
    pairs = np.stack([np.asarray(zoo_scores, float), np.asarray(random_scores, float)], axis=1)
    gain = lambda _, s: float(np.mean(s[:, 0] - s[:, 1]))  # noqa: E731
    return (gain(None, pairs), *bootstrap_ci(np.zeros(len(pairs)), pairs, statistic=gain,
                                             n_resamples=n_resamples, seed=seed, stratified=False))


def budget(task, args) -> str:
    """The training budget of every run, in words for the table's title."""
    recipe = RECIPES[task]
    crops = f"{recipe.batch_size} crops of {args.crop_size or recipe.crop_size} px"
    if args.steps:
        return f"about {args.steps} steps of {crops}"
    if args.time_budget:
        return f"{args.time_budget:g} s of steps of {crops}"
    return f"{args.epochs or recipe.epochs} epochs of {crops}"


def run_settings(task, fraction, pretrained, args) -> dict:
    """Everything that decides one run's row: the recipe overrides it trains with, and how it is scored."""
    overrides = {"label_fraction": fraction}
    if not pretrained:
        overrides["encoder"] = None
    if args.crop_size:
        overrides["crop_size"] = args.crop_size
    if args.steps:
        recipe = RECIPES[task]
        overrides.update(schedule_for_steps(args.steps, train_images_used(task, fraction, args), recipe.batch_size),
                         warmup_steps=min(recipe.warmup_steps, args.steps // 10))
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.max_images:
        overrides["max_images"] = args.max_images
    return {"overrides": overrides, "time_budget_s": args.time_budget, "test_images": args.max_images,
            "bootstrap": args.bootstrap, "seed": args.seed}


def run_one(task, fraction, pretrained, args, out):
    """Train one (task, share of masks, init) run and score it on the test split; a row of the table."""
    settings = run_settings(task, fraction, pretrained, args)
    used = train_images_used(task, fraction, args)
    name = f"{task}-{'pretrained' if pretrained else 'scratch'}-{int(round(fraction * 100))}pct"
    run_dir = out / "runs" / name
    if args.resume:
        finished = finished_row(run_dir, settings)
        if finished is not None:
            print(f"{name}: finished earlier, read back from {run_dir / ROW_FILE}")
            return finished
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    result = train(task, output_dir=run_dir, write_preset=False, verbose=0, resume=args.resume,
                   time_budget_s=args.time_budget, **settings["overrides"])
    recipe = RECIPES[task]
    images, _ = load_npz(recipe.dataset, "test")
    masks = load_masks(recipe.dataset, "test")
    if args.max_images:
        images, masks = images[: args.max_images], masks[: args.max_images]
    predicted = result.model.segment(np.asarray(PreprocessSpec.from_config(recipe.spec).apply(images)))
    scores = dice(masks > 0, predicted)
    row = {"task": task, "fraction": fraction, "init": "zoo encoder" if pretrained else "random",
           "train_images": used,
           "dice": float(scores.mean()), "dice_per_image": [float(v) for v in scores],
           "ci": bootstrap_ci(np.zeros(len(scores)), scores, statistic=lambda _, s: float(s.mean()),
                              n_resamples=args.bootstrap, seed=args.seed, stratified=False),
           "epochs": result.epochs_completed, "optimizer_steps": result.optimizer_steps,
           "wall_time_s": round(result.wall_time_s, 1)}
    if recipe.dataset.startswith("hc18"):
        row["hc_mae_mm"] = head_circumference_error(recipe.dataset, predicted)
    (run_dir / ROW_FILE).write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")
    print(f"{name}: test Dice {row['dice']:.3f} after {row['optimizer_steps']} steps, {row['wall_time_s']:.0f} s",
          flush=True)
    return row


SETTINGS_FILE, ROW_FILE = "settings.json", "row.json"


def finished_row(run_dir, settings):
    """The row a finished run left in ``run_dir`` if it ran with ``settings``; else None.

    A run left there with other settings (finished or not) is removed, so that it is trained
    again from the start rather than resumed under the wrong recipe.
    """
    if not (run_dir / SETTINGS_FILE).is_file():
        return None
    if json.loads((run_dir / SETTINGS_FILE).read_text(encoding="utf-8")) != json.loads(json.dumps(settings)):
        print(f"{run_dir.name}: trained with other settings earlier; training it again")
        shutil.rmtree(run_dir)
        return None
    if not (run_dir / ROW_FILE).is_file():
        return None  # unfinished: train() resumes it
    row = json.loads((run_dir / ROW_FILE).read_text(encoding="utf-8"))
    row["ci"] = tuple(row["ci"])
    return row


def draw(rows, ax):
    """One dataset's curve: test Dice against the share of masks, zoo encoder and random init, 95% intervals."""
    for init, colour in (("zoo encoder", "tab:blue"), ("random", "tab:grey")):
        mine = sorted((r for r in rows if r["init"] == init), key=lambda r: r["fraction"])
        x = [100 * r["fraction"] for r in mine]
        ax.errorbar(x, [r["dice"] for r in mine], yerr=np.array([[r["dice"] - r["ci"][0], r["ci"][1] - r["dice"]]
                                                                   for r in mine]).T,
                    marker="o", capsize=3, color=colour, label=init)
    ax.set_xscale("log")
    ax.set_xlabel("training masks used (%)")
    ax.set_ylabel("test Dice")
    ax.set_title(rows[0]["task"])
    ax.legend()


def plot(curves, path):
    """``curves``: rows per dataset; one panel each, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for rows, ax in zip(curves, axes[0]):
        draw(rows, ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parser():
    """The command line (the common benchmark options and the label-efficiency ones)."""
    p = _common.parser("segmentation", __doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    p.add_argument("--fractions", nargs="+", type=float, default=[0.05, 0.25, 1.0])
    p.add_argument("--epochs", type=int, help="epochs per run (default: the recipe's)")
    p.add_argument("--time-budget", type=float, help="seconds per run (sets the epochs that fit)")
    p.add_argument("--steps", type=int, help="optimizer steps per run, whatever the share of masks (sets crops per "
                                             "image and epochs; a fair budget on a slow machine)")
    p.add_argument("--crop-size", type=int, help="training crop side (default: the recipe's)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--resume", action="store_true",
                   help="reuse runs finished in --output with the same settings and continue an unfinished one")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    _common.setup_logging()
    args.output.mkdir(parents=True, exist_ok=True)
    texts, data = [], {}
    for task in args.tasks:
        rows = [run_one(task, f, pretrained, args, args.output) for f in args.fractions for pretrained in (True, False)]
        by = {(r["fraction"], r["init"]): r for r in rows}
        hc = "hc_mae_mm" in rows[0]
        table = []
        for f in args.fractions:
            zoo, rnd = by[(f, "zoo encoder")], by[(f, "random")]
            table.append([f"{100 * f:g}%", zoo["train_images"], f"{zoo['optimizer_steps']} / {rnd['optimizer_steps']}",
                          f"{zoo['dice']:.3f} [{zoo['ci'][0]:.3f}, {zoo['ci'][1]:.3f}]",
                          f"{rnd['dice']:.3f} [{rnd['ci'][0]:.3f}, {rnd['ci'][1]:.3f}]",
                          "{:+.3f} [{:+.3f}, {:+.3f}]".format(*paired_difference(
                              zoo["dice_per_image"], rnd["dice_per_image"], n_resamples=args.bootstrap, seed=args.seed)),
                          *([f"{zoo['hc_mae_mm']:.2f}", f"{rnd['hc_mae_mm']:.2f}"] if hc else [])])
        text = format_table(["masks", "images", "steps (zoo / random)", "Dice, zoo encoder [95% CI]", "Dice, random init [95% CI]",
                             "zoo - random, paired [95% CI]", *(["HC error mm, zoo", "HC error mm, random"] if hc else [])],
                            table, title=f"{task}: test Dice by share of training masks; every run {budget(task, args)}")
        plot([rows], args.output / f"{task}.png")
        _common.write(args.output, task, text, {task: rows})  # kept when a later run covers other tasks
        texts.append(text)
        data[task] = rows
        print(text + "\n")
    _common.write(args.output, "summary", "\n\n".join(texts), data)
    if len(data) > 1:
        plot(list(data.values()), args.output / "summary.png")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
