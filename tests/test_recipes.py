"""Training recipes: overrides, strategies, distributed training and resuming a killed run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from medzoo.errors import ConfigError, MedzooError, ModelNotFoundError
from medzoo.recipes import RECIPES, get_recipe, train
from medzoo.recipes.distribute import make_strategy, set_precision
from medzoo.recipes.train import build_model

# Tiny versions of the real recipes: 32x32 chest X-rays, 4-filter models, ~100 images.
TINY = {
    "dataset": "kermany_pediatric_cxr_64",
    "spec": {"size": [32, 32]},
    "max_images": 96,
    "batch_size": 16,
    "augment": {},
    "early_stopping_patience": 0,
}
TINY_MODEL = {
    "ae-chestxray": {"filters": 4, "depth": 2, "latent_channels": 4},
    "vae-chestxray": {"filters": 4, "depth": 2, "latent_dim": 8},
    "vqvae-chestxray": {"filters": 4, "depth": 2, "num_embeddings": 16, "embedding_dim": 4},
}


def tiny(name, **extra):
    return {**TINY, "model": TINY_MODEL[name], **extra}


def run_cli(args, env=None, timeout=1800):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "medzoo.cli", "--log-level", "WARNING", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def cli_overrides(name):
    return [f"--set={k}={json.dumps(v)}" for k, v in tiny(name).items()]


def last_json(stdout):
    return json.loads(stdout[stdout.index("{"):])


#: the licences of the datasets recipes may train on (each recorded in DATASETS and copied into the presets)
OPEN_LICENCES = ("CC-BY-4.0", "CC-BY-3.0", "BUS-BRA dataset licence (MIT-style; every use must cite the article)")


def test_every_zoo_recipe_builds_its_model():
    from medzoo.data import PreprocessSpec
    from medzoo.models import FAMILIES

    assert {"ae-chestxray", "dae-chestxray", "vae-chestxray", "vqvae-chestxray"} <= set(RECIPES)
    for recipe in RECIPES.values():
        spec = PreprocessSpec.from_config(recipe.spec)
        model = FAMILIES[recipe.family](**recipe.model, input_shape=spec.output_shape)
        assert model.count_params() > 0
        if recipe.init_from is not None:  # the zoo model it fine-tunes exists and has its architecture
            started = build_model(recipe, spec)
            assert started.initialized_from["model"] == recipe.init_from, recipe.name
        # every dataset named has a known licence and citation; BUS-BRA's licence demands the citation
        licence = recipe.provenance["licence"]
        assert "unknown" not in licence and recipe.provenance["citation"], recipe.name
        for part in recipe.provenance.get("components", [recipe.provenance]):
            assert part["licence"] in OPEN_LICENCES, part
            assert ("busbra" in part["name"]) == part["licence"].startswith("BUS-BRA"), part


def test_overrides_merge_model_config_and_reject_unknown_fields():
    recipe = get_recipe("vae-chestxray").with_overrides(epochs=3, model={"latent_dim": 8})
    assert recipe.epochs == 3 and recipe.model["latent_dim"] == 8
    assert recipe.model["filters"] == RECIPES["vae-chestxray"].model["filters"]
    with pytest.raises(ConfigError, match="unknown recipe fields"):
        recipe.with_overrides(epoch=3)
    with pytest.raises(ModelNotFoundError, match="did you mean vae-chestxray"):
        get_recipe("vae-chestxry")


def test_strategy_and_precision_choices(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert make_strategy("auto").num_replicas_in_sync == 1
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_strategy("multiworker")
    with pytest.raises(ConfigError, match="needs a GPU"):
        set_precision("mixed")
    with pytest.raises(ConfigError):
        make_strategy("tpu")


def test_train_in_process_and_refuse_to_clobber_an_unfinished_run(tmp_path):
    result = train("ae-chestxray", output_dir=tmp_path, epochs=2, verbose=0, write_preset=False,
                   **tiny("ae-chestxray"))
    assert result.epochs_completed == 2 and result.initial_epoch == 0
    assert result.metrics["psnr"] > 10 and 0 < result.metrics["ssim"] <= 1
    assert result.metrics["test_images"] == 96
    rows = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and "val_loss" in rows[0]
    assert (tmp_path / "best.weights.h5").exists() and (tmp_path / "tensorboard").is_dir()
    assert not (tmp_path / "backup").exists()  # removed once the run finished

    # killed after training but before its metrics: --resume measures it, it does not train it again
    logged, saved = (tmp_path / "log.csv").read_text(), (tmp_path / "final.weights.h5").stat().st_mtime_ns
    again = train("ae-chestxray", output_dir=tmp_path, epochs=2, verbose=0, write_preset=False, resume=True,
                  **tiny("ae-chestxray"))
    assert (tmp_path / "log.csv").read_text() == logged
    assert (tmp_path / "final.weights.h5").stat().st_mtime_ns == saved  # not written again
    assert again.optimizer_steps == result.optimizer_steps and again.epochs_completed == 2
    assert again.metrics["psnr"] == pytest.approx(result.metrics["psnr"], abs=1e-6)
    assert len(again.history["val_loss"]) == 2
    for ours, theirs in zip(again.model.get_weights(), result.model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(ConfigError, match="another recipe.*epochs"):
        train("ae-chestxray", output_dir=tmp_path, epochs=3, verbose=0, resume=True, **tiny("ae-chestxray"))

    (tmp_path / "backup").mkdir()
    with pytest.raises(ConfigError, match="unfinished run"):
        train("ae-chestxray", output_dir=tmp_path, epochs=2, verbose=0, **tiny("ae-chestxray"))


def test_a_time_budget_chooses_the_epochs_and_a_gpu_style_run_is_finished_elsewhere(tmp_path):
    """--time-budget measures the model first and fits the epochs; --no-preset then --finish writes the preset."""
    from medzoo.recipes.train import finish

    result = train("ae-chestxray", output_dir=tmp_path, time_budget_s=15, verbose=0, write_preset=False,
                   **tiny("ae-chestxray", max_images=48))
    run = json.loads((tmp_path / "run.json").read_text())
    chosen = json.loads((tmp_path / "recipe.json").read_text())["epochs"]
    assert run["time_budget_s"] == 15 and chosen >= 1 and result.epochs_completed == chosen
    preset = finish(tmp_path, weights="final")
    meta = json.loads((preset / "metadata.json").read_text())
    assert meta["training"]["wall_time_s"] == run["wall_time_s"] and meta["metrics"]["psnr"] > 10
    assert meta["training"]["splits"]["model_selection"] == "none: the last epoch's weights"  # nothing was selected
    assert "max_train_images" not in meta["training"]  # the whole training split


def test_a_stop_file_ends_the_run_cleanly_after_the_current_epoch(tmp_path):
    """``touch RUN/STOP``: the run ends after that epoch as if it were the last (no backup left, the preset
    written), and the metadata shows the epochs run beside the epochs configured."""
    from medzoo.recipes.train import STOP_FILE

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / STOP_FILE).touch()
    result = train("ae-chestxray", output_dir=tmp_path, epochs=3, verbose=0, **tiny("ae-chestxray", max_images=32))
    assert result.epochs_completed == 1 and not (tmp_path / STOP_FILE).exists()
    assert not (tmp_path / "backup").exists() and (tmp_path / "final.weights.h5").is_file()
    meta = json.loads((result.preset_dir / "metadata.json").read_text())
    assert (meta["training"]["epochs"], meta["training"]["epochs_configured"]) == (1, 3)

    # a run killed in its second epoch, then asked to stop: --resume ends it at its first, without training
    import keras

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train("ae-chestxray", output_dir=killed, epochs=3, verbose=0, callbacks=[Kill()],
              **tiny("ae-chestxray", max_images=32))
    (killed / STOP_FILE).touch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train("ae-chestxray", output_dir=killed, epochs=3, verbose=0, resume=True,
                        **tiny("ae-chestxray", max_images=32))
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]  # the checkpoints fit
    assert resumed.epochs_completed == 1 and resumed.history == {} and not (killed / "backup").exists()
    run = json.loads((killed / "run.json").read_text())
    assert run["epochs"] == 1 and run["wall_time_s"] > 0
    assert np.allclose(resumed.model.get_weights()[0], result.model.get_weights()[0])  # same seed, one epoch


def test_a_mixture_records_each_datasets_figures_and_its_preset_enters_the_manifest(tmp_path):
    """A generalist's preset: each dataset's test figures, their mean as the headline, all numbers."""
    from medzoo.zoo.manifest import add_to_manifest
    from medzoo.zoo.table import markdown_table

    mixture = ["kermany_pediatric_cxr_64", "brain_tumor_figshare_128"]
    result = train("vae-generalist-f8c4", output_dir=tmp_path / "run", epochs=1, verbose=0,
                   **{**{k: v for k, v in TINY.items() if k != "spec"}, "dataset": mixture, "max_images": 32,
                      "crops_per_image": 1, "crop_size": 32,
                      "model": {"filters": [4, 8], "depth": 2, "blocks_per_level": 1, "attention": False,
                                "latent_channels": 2}})
    per = result.metrics["per_dataset"]
    assert sorted(per) == sorted(mixture) and all(m["test_images"] == 32 for m in per.values())
    assert result.metrics["test_images"] == 64
    for key in ("psnr", "ssim", "thumbnail_psnr"):
        assert result.metrics[key] == pytest.approx(np.mean([m[key] for m in per.values()]), abs=1e-5)
    manifest = tmp_path / "weights_manifest.json"
    entry = add_to_manifest(result.preset_dir, manifest_path=manifest)  # the manifest takes only numbers
    assert entry["metrics"]["per_dataset"] == per
    row = markdown_table(manifest).splitlines()[2]
    assert "chest X-ray (pediatric) + brain MRI (T1-CE)" in row
    assert f"mean over 2 datasets: PSNR {result.metrics['psnr']:.2f} dB" in row
    for name, figures in per.items():  # and each dataset's own, beside its thumbnail
        label = "chest X-ray (pediatric)" if name.startswith("kermany") else "brain MRI (T1-CE)"
        assert f"{label} {figures['psnr']:.2f} dB (thumbnail {figures['thumbnail_psnr']:.2f})" in row


def test_init_from_fine_tunes_a_trained_preset_and_keeps_its_record(tmp_path):
    """init_from starts from a preset's weights (here with another loss) and its training record stays."""
    from medzoo.data import PreprocessSpec
    from medzoo.recipes.train import build_model

    first = train("ae-chestxray", output_dir=tmp_path / "a", epochs=1, verbose=0, **tiny("ae-chestxray"))
    source = json.loads((first.preset_dir / "metadata.json").read_text())["training"]
    recipe = get_recipe("ae-chestxray").with_overrides(**tiny("ae-chestxray", init_from=str(first.preset_dir)))
    recipe = recipe.with_overrides(model={"reconstruction_loss": "mse"})
    model = build_model(recipe, PreprocessSpec.from_config(recipe.spec))
    for ours, theirs in zip(model.get_weights(), first.model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    tuned = train("ae-chestxray", output_dir=tmp_path / "b", epochs=1, verbose=0,
                  **tiny("ae-chestxray", init_from=str(first.preset_dir)))
    metadata = json.loads((tuned.preset_dir / "metadata.json").read_text())
    record = metadata["training"]["initialized_from"]
    assert record["training"]["optimizer_steps"] == source["optimizer_steps"]
    assert record["metrics"] == json.loads((first.preset_dir / "metadata.json").read_text())["metrics"]
    shipped = _zoo_version("ae-chestxray")  # new weights of a zoo model come after the zoo's, and after each other
    assert (record["version"], metadata["version"]) == (_next_minor(shipped), _next_minor(_next_minor(shipped)))
    with pytest.raises(ConfigError, match="not the recipe's architecture"):
        other = get_recipe("vae-chestxray").with_overrides(**tiny("vae-chestxray", init_from=str(first.preset_dir)))
        build_model(other, PreprocessSpec.from_config(recipe.spec))
    with pytest.raises(ConfigError, match="init_from and encoder"):
        get_recipe("seg-brainmri-tumour").with_overrides(init_from="x")


def test_init_from_a_finished_run_continues_it_as_a_stage_and_chains_its_record(tmp_path):
    """A run directory as init_from: its best weights start the next stage, its facts stay in the preset; the
    stage, killed, resumes and finishes after the first stage's folder is gone."""
    from medzoo.data import PreprocessSpec

    first = train("ae-chestxray", output_dir=tmp_path / "a", epochs=1, verbose=0, write_preset=False,
                  **tiny("ae-chestxray"))
    stage_one = json.loads((tmp_path / "a" / "run.json").read_text())
    recipe = get_recipe("ae-chestxray").with_overrides(**tiny("ae-chestxray", init_from=str(tmp_path / "a")))
    model = build_model(recipe, PreprocessSpec.from_config(recipe.spec))
    for ours, theirs in zip(model.get_weights(), first.model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    import shutil

    import keras

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    stage_two = dict(output_dir=tmp_path / "b", epochs=2, verbose=0,
                     **tiny("ae-chestxray", init_from=str(tmp_path / "a")))
    with pytest.raises(KeyboardInterrupt):  # killed in its second epoch, its first in the backup
        train("ae-chestxray", callbacks=[Kill()], **stage_two)
    shutil.rmtree(tmp_path / "a")  # the killed stage resumes from its backup and its start record, not stage one
    second = train("ae-chestxray", resume=True, **stage_two)
    assert second.initial_epoch == 1 and second.epochs_completed == 2
    metadata = json.loads((second.preset_dir / "metadata.json").read_text())
    record = metadata["training"]["initialized_from"]
    assert record["model"].startswith("ae-chestxray (earlier stage")
    assert record["training"]["wall_time_s"] == stage_one["wall_time_s"]
    assert record["training"]["optimizer_steps"] == stage_one["optimizer_steps"] > 0
    # a stage chain started elsewhere still ships above the zoo's version of that name
    assert metadata["version"] == _next_minor(_zoo_version("ae-chestxray"))

    # the record is in the run: finishing it needs neither the first stage nor its weights any more
    from medzoo.recipes.train import RUN_FILE, finish

    again = json.loads((finish(tmp_path / "b", weights="final") / "metadata.json").read_text())
    assert again["training"]["initialized_from"] == record
    run = json.loads((tmp_path / "b" / RUN_FILE).read_text())
    del run["initialized_from"]  # a run written before medzoo kept the record: the error says what to do
    (tmp_path / "b" / RUN_FILE).write_text(json.dumps(run))
    with pytest.raises(ConfigError, match="put the starting point back"):
        finish(tmp_path / "b", weights="final")


def _zoo_version(name) -> str:
    from medzoo.zoo.manifest import get_entry

    return get_entry(name)["version"]


def _next_minor(version: str) -> str:
    major, minor, _ = version.split(".")
    return f"{major}.{int(minor) + 1}.0"


def test_a_model_the_zoo_does_not_hold_starts_at_1_0_0():
    import types

    from medzoo.recipes.train import _version_after
    from medzoo.zoo.manifest import read_manifest

    recipe = get_recipe("ae-chestxray").with_overrides(name="ae-somewhere-new")
    assert _version_after(types.SimpleNamespace(initialized_from=None), recipe) == "1.0.0"
    tuned = types.SimpleNamespace(initialized_from={"model": "ae-somewhere-new", "version": "2.3.1"})
    assert _version_after(tuned, recipe) == "2.4.0"
    other = types.SimpleNamespace(initialized_from={"model": "ae-chestxray", "version": "7.0.0"})
    assert _version_after(other, recipe) == "1.0.0"  # another model's version is not this one's
    retired = read_manifest()["retired"][0]  # a retired name's weights come after its last version
    assert _version_after(types.SimpleNamespace(initialized_from=None), recipe.with_overrides(
        name=retired["name"])) == _next_minor(retired["last_version"])


def test_a_stage_with_another_kl_weight_trains_with_its_own_beta(tmp_path, caplog):
    """init_from copies the learned weights, not the settings a VAE keeps in a variable (its KL weight),
    and says which settings of the objective differ from the ones its source was trained with."""
    from medzoo.data import PreprocessSpec

    first = train("vae-chestxray", output_dir=tmp_path / "a", epochs=1, verbose=0, write_preset=False,
                  **tiny("vae-chestxray"))
    recipe = get_recipe("vae-chestxray").with_overrides(**tiny("vae-chestxray", init_from=str(tmp_path / "a")))
    spec = PreprocessSpec.from_config(recipe.spec)

    def said_by_recipes():
        return [r.getMessage() for r in caplog.records if r.name == "medzoo.recipes.train"]

    with caplog.at_level("WARNING", logger="medzoo.recipes.train"):
        build_model(recipe, spec)  # the same objective: nothing to say
    assert not said_by_recipes()
    beta = float(first.model.beta.numpy()) / 20
    with caplog.at_level("WARNING", logger="medzoo.recipes.train"):
        build_model(recipe.with_overrides(model={"beta": beta, "reconstruction_loss": "l1"}), spec)
    said = said_by_recipes()[-1]
    trained_with = first.model.get_config()["reconstruction_loss"]
    assert trained_with != "l1"
    assert f"beta={float(first.model.initial_beta)!r}" in said and f"beta={beta!r}" in said
    assert f"reconstruction_loss={trained_with!r}" in said and "reconstruction_loss='l1'" in said
    assert f'"reconstruction_loss": "{trained_with}"' in said  # the override that keeps the source's objective
    model = build_model(recipe.with_overrides(model={"beta": beta}), spec)
    assert float(model.beta.numpy()) == pytest.approx(beta)
    copied = [(a, b) for a, b in zip(model.weights, first.model.weights) if a.path != model.beta.path]
    assert len(copied) == len(model.weights) - 1
    for ours, theirs in copied:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_a_diverging_run_raises_and_writes_no_preset(tmp_path):
    with pytest.raises(MedzooError, match="diverged"):
        train("vae-chestxray", output_dir=tmp_path, epochs=2, verbose=0, learning_rate=1e9,
              **tiny("vae-chestxray", model={**TINY_MODEL["vae-chestxray"], "normalization": "none"}))
    assert not (tmp_path / "preset").exists()


def test_a_vq_vae_preset_ships_the_entropy_model_its_streams_are_coded_with(tmp_path, tiny_cxr, monkeypatch):
    import medzoo
    from medzoo.codec.entropy import shipped_entropy_model, weights_fingerprint
    from medzoo.zoo.manifest import add_to_manifest

    result = train("vqvae-chestxray", output_dir=tmp_path, epochs=1, verbose=0, **tiny("vqvae-chestxray"))
    metadata = json.loads((result.preset_dir / "metadata.json").read_text())
    assert "entropy_model.npz" in metadata["files"]  # recorded, so load() verifies it
    fitted = metadata["entropy_model"]["fitted_on"]
    assert (fitted["dataset"], fitted["train_maps"], fitted["val_maps"]) == ("kermany_pediatric_cxr_64", 96, 96)
    entry = add_to_manifest(result.preset_dir, manifest_path=tmp_path / "zoo" / "weights_manifest.json")
    assert "entropy_model.npz" in {f["filename"] for f in entry["files"]}

    (tmp_path / "no-data").mkdir()
    monkeypatch.setenv("MEDZOO_DATA_DIR", str(tmp_path / "no-data"))  # compressing needs no data now
    monkeypatch.setenv("MEDZOO_CACHE", str(tmp_path / "cache"))
    model = medzoo.load(str(result.preset_dir), compile=False)
    em = shipped_entropy_model(model)
    assert em.info["weights_fingerprint"] == weights_fingerprint(model) and em.info["max_images"] == 96
    x = np.asarray(model.preprocess(tiny_cxr[:4]))
    np.testing.assert_array_equal(medzoo.decompress(medzoo.compress(x, model=model), model=model),
                                  model.decode(model.encode(x)))
    assert not (tmp_path / "cache").exists()


MIRRORED_SCRIPT = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from medzoo.recipes import train
tiny, models, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
report = {}
for name, model in models.items():
    r = train(name, output_dir=f"{out}/{name}-mirrored", strategy="mirrored", epochs=4, verbose=0,
              write_preset=False, deterministic=True, **{**tiny, "model": model})
    report[name] = {"replicas": r.model.distribute_strategy.num_replicas_in_sync, "loss": r.history["loss"]}
# the same plain autoencoder on one device, global batch 16 = 2 replicas x 8 above
ae = {**models["ae-chestxray"], "normalization": "none"}
runs = {}
for strategy, batch in (("mirrored", 8), ("cpu", 16)):
    r = train("ae-chestxray", output_dir=f"{out}/ae-{strategy}", strategy=strategy, epochs=3, verbose=0,
              write_preset=False, deterministic=True, **{**tiny, "model": ae, "batch_size": batch})
    flat = np.concatenate([w.ravel() for w in r.model.get_weights()])
    runs[strategy] = {"loss": r.history["loss"], "weights": flat.tolist()}
report["compare"] = runs
print(json.dumps(report))
"""


def test_mirrored_strategy_over_two_cpus_trains_each_family_and_matches_one_device(tmp_path):
    models = dict(TINY_MODEL)
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(TINY), json.dumps(models), str(tmp_path)],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = last_json(out.stdout)
    for name in models:
        assert report[name]["replicas"] == 2
        assert report[name]["loss"][-1] < report[name]["loss"][0], name
    mirrored, single = report["compare"]["mirrored"], report["compare"]["cpu"]
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=2e-3)
    # equal up to float summation order, which Adam's normalised steps amplify to ~1e-3
    a, b = np.asarray(mirrored["weights"]), np.asarray(single["weights"])
    assert np.linalg.norm(a - b) < 0.02 * np.linalg.norm(b)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multiworker_training_with_two_local_workers(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        args = ["train", "ae-chestxray", "--strategy", "multiworker", "--epochs", "2", "--verbose", "0",
                "--output", str(tmp_path / "run"), *cli_overrides("ae-chestxray")]
        procs.append(subprocess.Popen([sys.executable, "-m", "medzoo.cli", "--log-level", "WARNING", *args],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}))
    outputs = [p.communicate(timeout=1800) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    chief = last_json(outputs[0][0])
    assert chief["epochs"] == 2
    # global batch 32 = 2 workers x 16: 96 images give 3 steps per epoch
    assert chief["optimizer_steps"] == 2 * 3
    assert (tmp_path / "run" / "log.csv").exists()
    assert (tmp_path / "run" / "worker-1").is_dir()  # the other worker kept its state apart


def test_a_run_killed_after_its_first_epoch_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "run"
    args = ["train", "vqvae-chestxray", "--epochs", "5", "--verbose", "0", "--output", str(out), "--no-preset",
            *cli_overrides("vqvae-chestxray")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "medzoo.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    meta = out / "backup" / "training_metadata.json"
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if meta.exists() and json.loads(meta.read_text() or "{}").get("epoch", 0) >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(meta.read_text())["epoch"]
    assert 1 <= killed_at < 5
    spent_before_kill = json.loads((out / "wall_time.json").read_text())["seconds"]  # written every epoch
    assert spent_before_kill > 0

    fresh = run_cli(args)
    assert fresh.returncode != 0 and "unfinished run" in fresh.stderr  # no silent restart without --resume

    resumed = run_cli(args + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = last_json(resumed.stdout)
    assert report["initial_epoch"] == killed_at
    assert report["epochs"] == 5
    # 96 images / batch 16 = 6 steps an epoch; the optimizer's step count carried over the kill
    assert report["optimizer_steps"] == 5 * 6
    assert report["wall_time_s"] > spent_before_kill  # the time of both runs
    epochs = [int(line.split(",")[0]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert epochs == [0, 1, 2, 3, 4]


def test_every_registered_dataset_is_the_file_in_the_data_folder(data_dir):
    """DATASETS (provenance copied into every preset) names real files: same sha256, readable splits; a native
    folder set's stored test split reads (its train and val are rebuilt by native/build_native.py)."""
    import hashlib

    from medzoo.data import NATIVE_SETS, load_dataset, load_npz, resolve_npz
    from medzoo.recipes import DATASETS

    assert {"busbra_256", "brain_tumor_figshare_128", "hc18_256", *NATIVE_SETS} <= set(DATASETS)
    for name, info in DATASETS.items():
        assert info["licence"] and info["citation"] and info["description"], name
        if name in NATIVE_SETS:
            images, rows = load_dataset(name, "test", data_dir=data_dir)
            assert len(images) == len(rows) > 0 and all(image.ndim == 2 for image in images), name
            continue
        path = resolve_npz(name, data_dir=data_dir)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"], name
        for split in ("train", "val", "test"):
            images, labels = load_npz(name, split, data_dir=data_dir)
            assert images.ndim == 3 and len(images) > 0, (name, split)
            assert (labels is None) == name.startswith("hc18") and (labels is None or len(labels) == len(images))


def test_a_run_written_before_a_recipe_field_existed_is_still_the_same_recipe():
    """--resume of a finished run whose recipe.json predates a field (inference_tile, min_side) measures it:
    the missing fields read as their defaults, not as a different recipe."""
    import dataclasses

    from medzoo.recipes.train import _with_defaults

    recipe = get_recipe("ae-chestxray-f4c3")
    stored = json.loads(json.dumps(recipe.to_dict()))
    for field in ("inference_tile", "min_side", "dataset_weights"):
        del stored[field]
    assert _with_defaults(stored) == json.loads(json.dumps(recipe, default=dataclasses.asdict))
    with pytest.raises(ConfigError, match="inference_tile"):
        recipe.with_overrides(inference_tile=128)  # --set inference_tile=128: a clear error, not a TypeError


def test_max_train_images_keeps_a_seeded_subset_of_the_training_split_only():
    from medzoo.recipes.train import load_images

    recipe = get_recipe("ae-chestxray").with_overrides(dataset="kermany_pediatric_cxr_64", max_train_images=40)
    train_a, train_b = load_images(recipe, "train"), load_images(recipe, "train")
    whole = load_images(get_recipe("ae-chestxray").with_overrides(dataset="kermany_pediatric_cxr_64"), "val")
    assert len(train_a) == 40 and np.array_equal(train_a, train_b)  # the same subset every time (the seed's)
    assert len(load_images(recipe, "val")) == len(whole) > 40  # validation and test stay whole
    other = load_images(recipe.with_overrides(seed=1), "train")
    assert not np.array_equal(train_a, other)
    # the machine that finishes the run (it holds the whole set) picks the same images in the same order,
    # and a machine that holds only the subset (what travelled, in stored order) keeps all of it as it is
    from medzoo.recipes.train import _kept_indices

    full = load_images(get_recipe("ae-chestxray").with_overrides(dataset="kermany_pediatric_cxr_64"), "train")
    picked = _kept_indices(recipe, "kermany_pediatric_cxr_64", "train", None, len(full))
    assert len(full) > 40 and np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(full[picked], train_a)
    np.testing.assert_array_equal(_kept_indices(recipe, "kermany_pediatric_cxr_64", "train", None, 40), np.arange(40))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="max_train_images"):
            get_recipe("ae-chestxray").with_overrides(max_train_images=bad)


def test_data_workers_cut_the_same_batches_as_one_thread(tmp_path):
    from medzoo.data import PreprocessSpec, from_arrays

    images = np.random.default_rng(0).integers(0, 255, (20, 48, 48), np.uint8)
    spec = PreprocessSpec(size=None, channels=1, normalize="minmax")
    one = from_arrays(images, spec, batch_size=4, shuffle=True, seed=3, crop_size=16, pipeline="numpy")
    four = from_arrays(images, spec, batch_size=4, shuffle=True, seed=3, crop_size=16, pipeline="numpy", workers=4)
    assert four.workers == 4 and one.workers == 1
    for i in range(len(one)):
        np.testing.assert_array_equal(one[i], four[i])
    with pytest.raises(ConfigError, match="workers"):  # tf.data parallelises itself: not silently ignored
        from_arrays(images, spec, batch_size=4, crop_size=16, pipeline="tf", workers=4)
    # two crops per image: numpy batches on every backend, cut by Keras' worker threads during fit; the
    # same batches give the same training, to float tolerance
    any_size = {"dataset": "kermany_pediatric_cxr_64", "max_images": 32, "batch_size": 16, "crop_size": 32,
                "crops_per_image": 2, "early_stopping_patience": 0,
                "model": {"filters": [4], "depth": 1, "blocks_per_level": 1}}
    losses = [train("ae-chestxray-f4c1", output_dir=tmp_path / f"w{n}", epochs=2, verbose=0, data_workers=n,
                    write_preset=False, **any_size).history["loss"] for n in (1, 3)]
    assert len(losses[0]) == 2 and np.all(np.isfinite(losses[0]))
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    with pytest.raises(ConfigError, match="data_workers"):
        train("ae-chestxray", output_dir=tmp_path / "bad", epochs=1, data_workers=0, **tiny("ae-chestxray"))
