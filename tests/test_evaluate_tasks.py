"""The evaluation tasks on tiny models: numbers that must come out, result objects, figures and the CLI."""

import json

import numpy as np
import pytest

import medzoo
from medzoo.cli import EVALUATION_TASKS, main
from medzoo.data import PreprocessSpec
from medzoo.errors import ConfigError, DataError
from medzoo.evaluate.common import prepare
from medzoo.metrics import bicubic_thumbnail, psnr
from medzoo.models import VAE, ConvAutoencoder

TINY = dict(input_shape=(32, 32, 1), filters=4, depth=2, seed=3, normalization="none")
SPEC = PreprocessSpec(size=(32, 32), resize="stretch", normalize="minmax")
TRAINING = {"recipe": "test", "epochs": 1, "splits": {"train": "train", "metrics": "test"}, "classes": [0],
            "dataset": {"name": "kermany_pediatric_cxr_64", "licence": "CC-BY-4.0", "citation": "Kermany 2018"}}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


@pytest.fixture(scope="module")
def labelled(data_dir):
    """52 real test images (about 17 normal / 35 pneumonia) as 32 x 32 model inputs, and their labels."""
    with np.load(data_dir / "pediatric_cxr_kermany" / "kermany_pediatric_cxr_64.npz") as f:
        raw, labels = f["test_images"][::10], f["test_labels"][::10, 0]
    return np.asarray(SPEC.apply(raw)), labels.astype(int)


@pytest.fixture(scope="module")
def ae(labelled):
    """A denoising autoencoder trained on the normal images only."""
    x, y = labelled
    # the training shuffle and the denoising noise draw from the global generators: seed them, so
    # the fixture (and the probe's AUROC built on it) does not depend on which tests ran before
    __import__("keras").utils.set_random_seed(0)
    model = ConvAutoencoder(latent_channels=4, noise="gaussian", noise_strength=0.1, **TINY)
    model.compile(optimizer=__import__("keras").optimizers.Adam(3e-3))
    model.fit(x[y == 0], epochs=30, batch_size=8, verbose=0)
    model.preprocess_spec = SPEC
    return model


@pytest.fixture(scope="module")
def vae(labelled):
    model = VAE(latent_dim=8, **TINY)
    model.fit(labelled[0], epochs=3, batch_size=16, verbose=0)
    model.preprocess_spec = SPEC
    return model


def _check_result(result, tmp_path, task):
    d = result.to_dict()
    assert d["task"] == task
    json.dumps(medzoo.evaluate.common.jsonable(result.to_dict(per_image=True)), allow_nan=False)
    assert _is_png(result.plot(tmp_path / f"{task}.png"))
    paths = result.save(tmp_path / "saved")
    assert json.loads(paths["results"].read_text())["task"] == task
    assert all(_is_png(p) for k, p in paths.items() if k != "results")
    assert isinstance(result.table(), str) and result.table() in repr(result)
    return d


def test_reconstruction_per_image_metrics_and_figures(ae, labelled, tmp_path):
    x, y = labelled
    result = medzoo.evaluate.reconstruction(ae, images=x, labels=y)
    np.testing.assert_allclose(result.per_image["psnr"], psnr(x, ae.reconstruct(x)), rtol=1e-6)
    assert all(len(result.per_image[m]) == len(x) for m in ("psnr", "ssim", "mae"))
    d = _check_result(result, tmp_path, "reconstruction")
    assert d["metrics"]["psnr"]["mean"] == pytest.approx(float(result.per_image["psnr"].mean()))
    assert d["by_class"]["normal"]["n"] == int((y == 0).sum())
    assert "per_image" in result.to_dict(per_image=True) and "per_image" not in d


@pytest.mark.parametrize("shape, numbers", [((128, 128), 1024), ((256, 256), 4096), ((128, 96), 3 * 37 * 28)])
def test_the_thumbnail_baseline_is_tensorflow_s_antialiased_bicubic_on_every_backend(shape, numbers):
    # numpy, not keras.ops: PyTorch's bicubic scored this baseline 0.16 dB higher on the brain MRI
    # test split (23.01 against TensorFlow's and JAX's 22.85), which moved a bar by that much
    import tensorflow as tf  # the default backend, always installed
    images = np.random.default_rng(0).random((3, *shape, 1), dtype=np.float32)
    images[1] = np.linspace(0, 1, shape[1], dtype=np.float32)[None, :, None]  # smooth: the borders matter most
    thumbs, size = bicubic_thumbnail(images, numbers)
    assert size[0] * size[1] == pytest.approx(numbers, rel=0.05)
    small = tf.image.resize(images, size, method="bicubic", antialias=True)
    expected = np.clip(tf.image.resize(small, shape, method="bicubic").numpy(), 0, 1)
    np.testing.assert_allclose(thumbs, expected, atol=2e-5)
    assert np.abs(thumbs - images).max() > 0.1  # a thumbnail loses detail


def test_ms_ssim_is_tensorflow_s_multiscale_ssim_and_uses_the_scales_that_fit():
    import tensorflow as tf  # the default backend, always installed
    from medzoo.metrics import ms_ssim, ssim

    rng = np.random.default_rng(1)
    clean = tf.nn.avg_pool2d(rng.random((2, 192, 200, 1), dtype=np.float32), 5, 1, "SAME").numpy()
    noisy = np.clip(clean + 0.04 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(ms_ssim(clean, noisy), tf.image.ssim_multiscale(clean, noisy, 1.0).numpy(), atol=2e-4)
    np.testing.assert_allclose(ms_ssim(clean, clean), 1.0, atol=1e-6)
    worse = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
    assert (ms_ssim(clean, worse) < ms_ssim(clean, noisy)).all()
    small = clean[:, :128, :128]  # four scales fit (128 / 8 = 16 >= 11), not five
    value = ms_ssim(small, noisy[:, :128, :128])
    assert (ssim(small, noisy[:, :128, :128]) < value).all() and (value < 1).all()


def test_reconstruction_on_the_native_ct_split_reports_the_error_in_hounsfield_units(tmp_path):
    """The stored ct_tcia_512 test split (a folder with splits.csv) at 512 px, read through the CT spec."""
    from medzoo.recipes.recipe import CT_SPEC, HU_RANGE

    model = ConvAutoencoder(input_shape=(None, None, 1), architecture="residual", filters=[8, 16], depth=2,
                            latent_channels=2, seed=0)
    model.preprocess_spec = PreprocessSpec.from_config(CT_SPEC)
    result = medzoo.evaluate.reconstruction(model, dataset="ct_tcia_512", max_images=3)
    assert result.source == "ct_tcia_512:test" and len(result.per_image["psnr"]) == 3
    assert set(result.metrics) == {"psnr", "ssim", "ms_ssim", "mae", "mae_hu", "rmse_hu"}
    span = HU_RANGE[1] - HU_RANGE[0]
    np.testing.assert_allclose(result.per_image["mae_hu"], result.per_image["mae"] * span, rtol=1e-4)
    assert (result.per_image["rmse_hu"] >= result.per_image["mae_hu"]).all()
    t = result.thumbnail
    assert t["size"] == (181, 181)  # 128 x 128 x 2 latent numbers
    assert np.mean(t["mae_hu"]) < np.mean(result.per_image["mae_hu"])  # an untrained model
    assert "MAE" in result.table() and " HU" in result.table()
    _check_result(result, tmp_path, "reconstruction")


def test_anomaly_detects_synthetic_lesions_and_reports_intervals(ae, labelled, tmp_path):
    x, y = labelled
    normal = x[y == 0]
    lesion = normal.copy()
    checker = (np.indices((12, 12)).sum(axis=0) % 2).astype("float32")[..., None]
    lesion[:, 8:20, 8:20] = checker  # a pattern no normal image has: it must reconstruct badly
    images = np.concatenate([normal, lesion])
    labels = np.r_[np.zeros(len(normal), int), np.ones(len(lesion), int)]
    result = medzoo.evaluate.anomaly(ae, images=images, labels=labels, reference_images=normal, n_bootstrap=200)
    mse = result.metrics["mse"]
    assert mse["auroc"] > 0.9 and mse["ci_low"] <= mse["auroc"] <= mse["ci_high"]
    assert {"mse", "l1", "ssim", "latent-knn", "mean-image", "pca", "pixel-knn"} <= set(result.metrics)
    assert result.metrics["pca"]["kind"] == "baseline" and result.trained_on_normal_only is None
    assert any("training record" in n for n in result.notes)
    _check_result(result, tmp_path, "anomaly")
    rows = [line.split(" | ") for line in result.markdown().splitlines() if line.startswith("| ")][1:]
    assert [r[1] for r in rows] == list(result.metrics)
    assert rows[0][0] == "| convautoencoder-unsaved" and rows[-1][0] == "| (baseline)"
    assert rows[0][2] == f"{mse['auroc']:.3f}" and rows[0][3] == f"[{mse['ci_low']:.3f}, {mse['ci_high']:.3f}] |"


def test_anomaly_of_a_vae_adds_the_negative_elbo(vae, labelled):
    x, y = labelled
    result = medzoo.evaluate.anomaly(vae, images=x, labels=y, reference_images=x[y == 0], baselines=(),
                                     n_bootstrap=50)
    assert set(result.metrics) == {"mse", "l1", "ssim", "nelbo", "latent-knn"}
    assert np.all(result.scores["nelbo"] > 0) and result.settings["vae_decoder_sigma"] > 0


def test_knn_distance_is_the_mean_distance_to_the_nearest_references():
    from medzoo.evaluate.anomaly import knn_distance

    reference = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    queries = np.array([[0.0, 0.0], [6.0, 8.0]])
    np.testing.assert_allclose(knn_distance(queries, reference, k=1), [0.0, 5.0])
    np.testing.assert_allclose(knn_distance(queries, reference, k=2), [2.5, (5.0 + np.hypot(4.0, 8.0)) / 2])


def _toy_split(rng, n, classes=2):
    """Class 0 plain, class 1 a bright blob upper left, class 2 one lower right: linearly separable in pixels."""
    x = rng.uniform(0.2, 0.5, size=(n, 32, 32, 1)).astype("float32")
    y = np.arange(n) % classes
    for k, corner in zip(range(1, classes), (slice(4, 14), slice(18, 28))):
        x[y == k, corner, corner] += 0.5
    return x, y


def test_linear_probe_beats_chance_on_a_separable_toy_set(ae, tmp_path):
    rng = np.random.default_rng(0)
    train, val, test = (_toy_split(rng, n) for n in (96, 32, 40))
    result = medzoo.evaluate.probe(ae, train=train, val=val, test=test, baselines=("pixels", "cnn"), cnn_epochs=2,
                                   n_bootstrap=100)
    name = "probe:convautoencoder-unsaved"
    assert set(result.methods) == {name, "probe:pixels", "cnn:supervised"}
    assert result.methods[name]["auroc"] > 0.9 and result.methods[name]["accuracy"] > 0.8
    assert result.majority_accuracy == 0.5
    assert result.methods["cnn:supervised"]["trained_parameters"] > 10_000
    assert all(0.0 <= m["threshold"] <= 1.0 for m in result.methods.values())  # chosen on validation scores
    _check_result(result, tmp_path, "probe")
    rows = {r[0]: r for r in result.summary_rows()}
    cnn = result.methods["cnn:supervised"]
    assert rows[name][6] == f"{result.methods[name]['auroc'] - cnn['auroc']:+.3f}"
    assert rows["cnn:supervised"][6:] == [None, None]  # the reference itself
    assert f"| {name} | " in result.markdown() and "majority-class accuracy 0.500" in result.markdown()


def test_probe_with_three_classes_uses_softmax_and_macro_auroc(ae, tmp_path):
    from medzoo.evaluate.stats import macro_auroc

    rng = np.random.default_rng(2)
    train, val, test = (_toy_split(rng, n, classes=3) for n in (96, 33, 42))
    result = medzoo.evaluate.probe(ae, train=train, val=val, test=test, baselines=("pixels", "cnn"), cnn_epochs=2,
                                   n_bootstrap=50)
    assert result.num_classes == 3 and result.class_names == ("class 0", "class 1", "class 2")
    for name, m in result.methods.items():
        scores = result.scores[name]
        assert scores.shape == (42, 3) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)
        assert m["auroc"] == pytest.approx(macro_auroc(test[1], scores))
        assert m["ci_low"] <= m["auroc"] <= m["ci_high"] and len(m["per_class_auroc"]) == 3
        assert m["accuracy"] == pytest.approx(float((scores.argmax(axis=1) == test[1]).mean()))
    pixels = result.methods["probe:pixels"]
    assert pixels["auroc"] > 0.9 and pixels["accuracy"] > 0.8  # separable in pixels
    assert pixels["trained_parameters"] == 3 * (32 * 32 + 1)  # one weight vector per class
    assert result.majority_accuracy == pytest.approx(14 / 42)
    assert "class 0 / class 1 / class 2" in result.caption() and "one-vs-rest" in result.caption()
    _check_result(result, tmp_path, "probe")


def test_macro_auroc_is_the_mean_of_one_vs_rest_aurocs():
    from medzoo.evaluate.stats import macro_auroc

    labels = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[labels] * 0.8 + 0.1
    assert macro_auroc(labels, perfect) == 1.0
    scores = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8],
                       [0.4, 0.2, 0.4]])
    from medzoo.evaluate.stats import auroc

    expected = np.mean([auroc(labels == k, scores[:, k]) for k in range(3)])
    assert macro_auroc(labels, scores) == pytest.approx(expected)
    with pytest.raises(DataError):
        macro_auroc(labels, scores[:, :2])


def test_probe_refuses_a_split_with_one_class(ae):
    rng = np.random.default_rng(1)
    x, y = _toy_split(rng, 16)
    with pytest.raises(ConfigError, match="both classes"):
        medzoo.evaluate.probe(ae, train=(x, np.zeros(16, int)), val=(x, y), test=(x, y), baselines=())


def test_denoise_table_covers_every_method_and_noise_level(ae, vae, labelled, tmp_path):
    x, _ = labelled
    result = medzoo.evaluate.denoise([ae, vae], images=x[:6], tune_images=x[40:44], sigmas=(0.05, 0.2))
    rows = {(r["sigma"], r["method"]): r for r in result.rows}
    methods = {"noisy", "gaussian", "nlm", "convautoencoder-unsaved", "vae-unsaved"}
    assert set(rows) == {(s, m) for s in (0.05, 0.2) for m in methods}
    assert rows[(0.2, "noisy")]["psnr"] < rows[(0.05, "noisy")]["psnr"] - 8  # 4x the noise: about 12 dB
    assert rows[(0.2, "gaussian")]["psnr"] > rows[(0.2, "noisy")]["psnr"] + 2
    assert result.settings["training_noise"]["convautoencoder-unsaved"] == 0.1
    d = _check_result(result, tmp_path, "denoise")
    assert "per_image" not in d["results"][0]
    md = [line.split(" | ") for line in result.markdown().splitlines() if line.startswith("| ")]
    assert md[0][1:] == ["noisy", "gaussian", "nlm", "convautoencoder-unsaved", "vae-unsaved |"]
    gaussian = rows[(0.2, "gaussian")]
    assert md[2][0] == "| 0.2" and md[2][2].strip("*") == f"{gaussian['psnr']:.2f} / {gaussian['ssim']:.3f}"
    assert all(sum(cell.startswith("**") for cell in row) == 1 for row in md[1:])  # the best PSNR of each level


def test_denoise_keeps_apart_two_models_of_the_same_name(ae, labelled):
    """A stage beside the entry it would replace shares its name: each keeps its own rows."""
    x, _ = labelled
    untrained = ConvAutoencoder(latent_channels=4, **TINY)
    untrained.preprocess_spec = SPEC
    result = medzoo.evaluate.denoise([ae, untrained], images=x[:6], sigmas=(0.1,), classical=())
    assert len(set(result.models)) == 2 and all(m.startswith("convautoencoder-unsaved") for m in result.models)
    psnr = {r["method"]: r["psnr"] for r in result.rows}
    assert psnr[result.models[0]] > psnr[result.models[1]] + 3  # trained against untrained: not one model twice


def test_generation_samples_and_interpolates(vae, ae, labelled, tmp_path):
    x, y = labelled
    result = medzoo.evaluate.generation(vae, images=x, labels=y, n_samples=8, steps=4, pairs=2)
    assert result.samples.shape == (8, 32, 32, 1) and len(result.strips) == 2 and result.strips[0].shape[0] == 4
    assert result.strip_labels[0] == ("normal", "pneumonia")
    normal_recs = vae.reconstruct(x[y == 0])  # a strip starts at the reconstruction of a normal image
    assert min(np.abs(normal_recs - result.strips[0][0]).max(axis=(1, 2, 3))) < 1e-5
    assert result.stats["latent_size"] == 8 and 0 <= result.stats["active_units"] <= 8
    d = _check_result(result, tmp_path, "generation")
    assert d["samples"] == 8 and "per_sample_nn_mse" not in d["stats"]
    strips_only = medzoo.evaluate.generation(ae, images=x, labels=y, steps=4, pairs=1)
    assert strips_only.samples is None and "no prior" in strips_only.notes[0]
    assert _is_png(strips_only.plot(tmp_path / "strips.png"))


def test_generation_of_an_any_size_vae_draws_latents_of_the_images_size(labelled):
    x, y = labelled
    vae = medzoo.VAE(input_shape=(None, None, 1), architecture="residual", filters=[4, 8], depth=2,
                     latent_channels=2)
    result = medzoo.evaluate.generation(vae, images=x, labels=y, n_samples=3, steps=3, pairs=1)
    assert result.samples.shape == (3, 32, 32, 1) and result.strips[0].shape == (3, 32, 32, 1)
    assert result.stats["latent_size"] == 8 * 8 * 2 and 0 <= result.stats["active_units"] <= 128


def test_vqvae_strips_decode_the_nearest_codes_of_interpolated_encodings(labelled):
    x, _ = labelled
    vq = medzoo.VQVAE(num_embeddings=8, embedding_dim=2, **TINY)
    result = medzoo.evaluate.generation(vq, images=x, labels=None, steps=3, pairs=1, seed=1)
    strip, codes = result.strips[0], vq.encode(x)
    recs = vq.decode(codes)
    assert result.samples is None and strip.shape == (3, 32, 32, 1)
    assert min(np.abs(recs - strip[0]).max(axis=(1, 2, 3))) < 1e-5  # the first frame decodes an image's codes


def test_strip_end_frames_are_the_reconstructions(ae, labelled):
    x, y = labelled
    result = medzoo.evaluate.generation(ae, images=x, labels=None, steps=5, pairs=1, seed=4)
    strip = result.strips[0]
    rec = ae.reconstruct(x)
    # each end of the strip is the reconstruction of some input image
    assert min(np.abs(rec - strip[0]).max(axis=(1, 2, 3))) < 1e-5
    assert min(np.abs(rec - strip[-1]).max(axis=(1, 2, 3))) < 1e-5


def test_prepare_passes_model_inputs_through_and_preprocesses_raw_images(ae, labelled, data_dir):
    x, _ = labelled
    assert prepare(ae, x) is x or np.shares_memory(prepare(ae, x), x)
    with np.load(data_dir / "pediatric_cxr_kermany" / "kermany_pediatric_cxr_64.npz") as f:
        raw = f["test_images"][:3]
    np.testing.assert_allclose(prepare(ae, raw), SPEC.apply(raw))


def test_evaluate_is_callable_by_task_name(ae, labelled, tmp_path):
    x, y = labelled
    result = medzoo.evaluate(ae, "reconstruction", images=x[:5], labels=y[:5], output_dir=tmp_path / "r")
    assert isinstance(result, medzoo.evaluate.ReconstructionResult) and (tmp_path / "r" / "results.json").is_file()
    with pytest.raises(ConfigError, match="unknown evaluation task"):
        medzoo.evaluate(ae, "registration")
    with pytest.raises(ConfigError, match="not a segmentation model"):
        medzoo.evaluate(ae, "segmentation")
    assert set(EVALUATION_TASKS) == set(medzoo.evaluate.TASKS)


def test_cli_evaluate_on_a_tiny_preset(ae, tmp_path, capsys):
    preset = medzoo.save_preset(ae, tmp_path / "tiny-ae", name="tiny-ae", spec=SPEC, training=TRAINING)
    out = tmp_path / "eval"
    assert main(["evaluate", str(preset), "--task", "reconstruction", "--output", str(out), "--max-images", "8"]) == 0
    printed = capsys.readouterr().out
    assert "reconstruction: tiny-ae on kermany_pediatric_cxr_64:test (8 images)" in printed and "psnr" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == 8 and len(results["per_image"]["psnr"]) == 8
    assert _is_png(out / "reconstruction.png")
    assert main(["evaluate", str(preset), "--task", "generation", "--output", str(tmp_path / "gen"),
                 "--max-images", "8"]) == 0
    assert _is_png(tmp_path / "gen" / "generation.png")


def test_a_model_trained_on_a_mixture_evaluates_on_its_first_set_unless_told():
    from types import SimpleNamespace

    from medzoo.evaluate.common import DEFAULT_DATASET, dataset_of

    mixture = {"name": "kermany_pediatric_cxr_128 + cxr_hannover_1024",
               "components": [{"name": "kermany_pediatric_cxr_128"}, {"name": "cxr_hannover_1024"}]}
    model = SimpleNamespace(zoo_metadata={"training": {"dataset": mixture}})
    assert dataset_of(model) == "kermany_pediatric_cxr_128"
    assert dataset_of(model, "cxr_hannover_1024") == "cxr_hannover_1024"
    assert dataset_of(SimpleNamespace(zoo_metadata={"training": TRAINING})) == "kermany_pediatric_cxr_64"
    assert dataset_of(SimpleNamespace()) == DEFAULT_DATASET
