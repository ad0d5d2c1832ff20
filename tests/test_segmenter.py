"""Segmenter: masks checked, Dice + cross-entropy training, pretrained encoders copied and frozen, any size, saving."""

import json
import pathlib
import shutil

import keras
import numpy as np
import pytest

import medzoo
from medzoo.errors import ConfigError, DataError
from medzoo.models import VAE, Segmenter
from medzoo.models.segmenter import check_masks

ARCH = dict(input_shape=(None, None, 1), architecture="residual", filters=[8, 16], depth=2, seed=0)


@pytest.fixture(scope="module")
def lesions(data_dir):
    """32 BUS-BRA breast ultrasound images with their lesion masks, 64 px, float32 images in [0, 1]."""
    with np.load(data_dir / "busbra" / "busbra_256.npz") as f:
        images, masks = f["train_images"][:32, ::4, ::4], f["train_masks"][:32, ::4, ::4]
    return (images[..., None] / 255.0).astype("float32"), masks


def test_masks_that_would_misalign_or_mislabel_are_refused():
    images = np.zeros((2, 8, 8, 1), np.float32)
    ok = np.zeros((2, 8, 8), np.uint8)
    ok[:, 2:4, 2:4] = 255
    assert set(np.unique(check_masks(ok, images))) == {0, 1}  # 0/255 masks become 0/1
    assert check_masks(ok.astype(bool)[..., None], images).shape == (2, 8, 8)
    with pytest.raises(DataError, match="do not match images"):
        check_masks(np.zeros((2, 8, 9)), images)
    with pytest.raises(DataError, match="do not match images"):
        check_masks(np.zeros((3, 8, 8)), images)
    with pytest.raises(DataError, match="0/1 or 0/255"):
        check_masks(ok // 255 * 2, images)
    with pytest.raises(DataError, match=r"labels \[3\].*classes 0..2"):
        check_masks(np.full((2, 8, 8), 3), images, classes=2)


def test_fit_lowers_the_loss_and_reports_dice(lesions):
    x, masks = lesions
    seg = Segmenter(**ARCH)
    history = seg.fit(x, masks, validation_data=(x[:8], masks[:8]), epochs=4, batch_size=8, verbose=0).history
    assert {"loss", "dice_loss", "ce_loss", "dice", "val_dice"} <= set(history)
    assert history["loss"][-1] < history["loss"][0]
    assert all(0.0 <= d <= 1.0 for d in history["val_dice"])
    labels = seg.segment(x[:3, :40, :52])  # any size, not a multiple of the stride
    assert labels.shape == (3, 40, 52) and labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1}
    with pytest.raises(DataError, match="do not match"):
        seg.fit(x, masks[:, :32], epochs=1, verbose=0)
    with pytest.raises(DataError, match="no masks"):
        seg.fit(x, epochs=1, verbose=0)


def test_multi_class_masks_train_with_softmax(lesions):
    x, masks = lesions
    two = masks.astype(np.uint8) * np.where(np.arange(len(masks)) % 2, 1, 2)[:, None, None]
    seg = Segmenter(classes=2, **ARCH)
    history = seg.fit(x, two, epochs=1, batch_size=8, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert seg.predict_proba(x[:2]).shape == (2, 64, 64, 3)
    np.testing.assert_allclose(seg.predict_proba(x[:2]).sum(-1), 1.0, atol=1e-5)


def test_a_pretrained_encoder_is_copied_and_its_frozen_levels_stay_put(lesions):
    x, masks = lesions
    vae = VAE(**ARCH, latent_channels=2, attention=True)
    seg = Segmenter.from_pretrained(vae, frozen_levels=1)
    features = keras.Model(vae.encoder.input, vae.encoder.get_layer("down1_block0_add").output)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(seg.encoder(x[:2])[-1]),
                               keras.ops.convert_to_numpy(features(x[:2])), atol=1e-6)
    frozen = {w.path: w.numpy().copy() for layer in seg.encoder.layers if layer.name.startswith(("stem", "down0"))
              for w in layer.weights}
    free = {w.path: w.numpy().copy() for w in seg.encoder.get_layer("down1_block0_conv1").weights}
    seg.fit(x, masks, epochs=1, batch_size=8, verbose=0)
    after = {w.path: w.numpy() for w in seg.encoder.weights}
    assert frozen and all(np.array_equal(after[k], v) for k, v in frozen.items())
    assert any(not np.array_equal(after[k], v) for k, v in free.items())  # level 1 fine-tunes
    with pytest.raises(ConfigError, match="frozen_levels"):
        Segmenter(frozen_levels=3, **ARCH)
    with pytest.raises(ConfigError, match="another architecture|differ"):
        Segmenter(**{**ARCH, "filters": [8, 32]}).load_encoder_weights(vae)


def test_save_and_reload_give_the_same_masks(lesions, tmp_path):
    x, masks = lesions
    seg = Segmenter(**ARCH, frozen_levels=2, decoder_filters=[16, 16])
    seg.fit(x[:16], masks[:16], epochs=1, batch_size=8, verbose=0)
    seg.save(tmp_path / "seg.keras")
    again = keras.saving.load_model(tmp_path / "seg.keras", safe_mode=True)
    assert again.get_config()["frozen_levels"] == 2 and again.decoder_filters == [16, 16]
    np.testing.assert_array_equal(again.predict_proba(x[:4]), seg.predict_proba(x[:4]))
    preset = medzoo.save_preset(seg, tmp_path / "preset", name="tiny-seg", spec=medzoo.PreprocessSpec(size=None))
    loaded = medzoo.load(preset)
    assert loaded.zoo_metadata["family"] == "segmenter"
    np.testing.assert_array_equal(loaded.segment(x[:4]), seg.segment(x[:4]))


def test_a_segmentation_recipe_trains_on_masks_from_scratch_or_a_zoo_encoder(tmp_path):
    from medzoo.recipes import train

    tiny = dict(max_images=24, crop_size=32, crops_per_image=1, batch_size=8, epochs=1, warmup_steps=0, verbose=0,
                model={"filters": [8, 16], "depth": 2, "blocks_per_level": 1})
    scratch = train("seg-breastus-lesion", output_dir=tmp_path / "scratch", encoder=None, label_fraction=0.5, **tiny)
    assert set(scratch.metrics) >= {"dice", "iou", "hd95_px", "test_images"} and 0 <= scratch.metrics["dice"] <= 1
    assert scratch.history["dice"] and scratch.model.encoder_source is None
    assert json.loads((tmp_path / "scratch" / "recipe.json").read_text())["label_fraction"] == 0.5
    loaded = medzoo.load(scratch.preset_dir)
    assert loaded.zoo_metadata["family"] == "segmenter" and loaded.segment(np.zeros((1, 64, 80, 1))).shape == (1, 64, 80)

    vae = VAE(input_shape=(None, None, 1), architecture="residual", filters=[8, 16], depth=2, seed=0,
              latent_channels=2)
    source = medzoo.save_preset(vae, tmp_path / "tiny-vae", name="tiny-vae", spec=medzoo.PreprocessSpec(size=None))
    pretrained = train("seg-breastus-lesion", output_dir=tmp_path / "pretrained", encoder=str(source), **tiny)
    assert pretrained.model.encoder_source == "tiny-vae"


def test_a_segmenter_preset_fine_tunes_on_your_own_npz_from_the_command_line(lesions, tmp_path):
    """What the segmentation notebook tells users: --set dataset=PATH (a plain string), encoder=null, init_from."""
    from medzoo.cli import main, parse_override

    assert parse_override("dataset=/data/mine.npz") == ("dataset", "/data/mine.npz")
    assert parse_override("encoder=null") == ("encoder", None)
    assert parse_override('model={"filters": [8, 16]}') == ("model", {"filters": [8, 16]})
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        parse_override("epochs")

    x, masks = lesions
    seg = Segmenter(**ARCH, blocks_per_level=1)
    seg.fit(x[:16], masks[:16], epochs=1, batch_size=8, verbose=0)
    start = medzoo.save_preset(seg, tmp_path / "start", name="my-start", spec=medzoo.PreprocessSpec(size=None))
    raw = (x[..., 0] * 255).astype(np.uint8)
    mine = tmp_path / "mine.npz"
    np.savez(mine, train_images=raw[:16], train_masks=masks[:16], val_images=raw[16:24], val_masks=masks[16:24],
             test_images=raw[24:], test_masks=masks[24:])
    code = main(["--log-level", "WARNING", "train", "seg-breastus-lesion", "--output", str(tmp_path / "run"),
                 "--epochs", "1", "--batch-size", "8", "--verbose", "0", f"--set=dataset={mine}", "--set=encoder=null",
                 f"--set=init_from={start}", "--set=crop_size=32", "--set=warmup_steps=0",
                 '--set=model={"filters": [8, 16], "depth": 2, "blocks_per_level": 1}'])
    assert code in (0, None)
    tuned = medzoo.load(tmp_path / "run" / "preset")
    assert tuned.zoo_metadata["training"]["initialized_from"]["model"] == "my-start"
    assert tuned.zoo_metadata["metrics"]["test_images"] == 8


def test_a_fetal_head_recipe_records_hd95_in_mm_and_the_circumference_error_that_evaluate_measures(tmp_path):
    from medzoo.recipes import train

    run = train("seg-fetalus-head", output_dir=tmp_path / "run", encoder=None, max_images=6, crop_size=32,
                crops_per_image=1, batch_size=6, epochs=1, warmup_steps=0, verbose=0,
                model={"filters": [8, 16], "depth": 2, "blocks_per_level": 1})
    assert {"hd95_mm", "hc_error_mm"} <= set(run.metrics)  # HC18 gives each image's pixel size
    # the manifest's figures are the evaluation task's on the same test images (the recipe's seeded subset)
    result = medzoo.evaluate(run.preset_dir, "segmentation", max_images=6, seed=run.recipe.seed,
                             output_dir=tmp_path / "out")
    assert run.metrics["dice"] == pytest.approx(result.per_image["dice"].mean(), abs=1e-5)
    assert run.metrics["hd95_mm"] == pytest.approx(np.nanmean(result.per_image["hd95"]), abs=1e-4)
    assert run.metrics["hc_error_mm"] == pytest.approx(np.nanmean(result.per_image["hc_error_mm"]), abs=1e-4)


def test_medzoo_segment_writes_masks_overlays_and_a_csv(lesions, tmp_path):
    import csv

    from PIL import Image

    from medzoo.cli import main

    x, masks = lesions
    seg = Segmenter(**ARCH)
    seg.fit(x[:16], masks[:16], epochs=1, batch_size=8, verbose=0)
    preset = medzoo.save_preset(seg, tmp_path / "preset", name="tiny-seg", spec=medzoo.PreprocessSpec(size=None))
    raw = (x[:2, :, :, 0] * 255).astype(np.uint8)
    for i in range(2):
        Image.fromarray(raw[i]).save(tmp_path / f"scan{i}.png")
    out = tmp_path / "out"
    code = main(["--log-level", "WARNING", "segment", str(preset), str(tmp_path / "scan0.png"),
                 str(tmp_path / "scan1.png"), "-o", str(out), "--pixel-spacing", "0.5", "--circumference"])
    assert code in (0, None)
    rows = list(csv.DictReader(open(out / "segment.csv")))
    assert [pathlib.Path(r["input"]).name for r in rows] == ["scan0.png", "scan1.png"]
    loaded = medzoo.load(preset)
    expected = loaded.segment(loaded.preprocess(raw))  # what the command does: the model's own preprocessing
    for r, want in zip(rows, expected):
        mask = np.asarray(Image.open(r["mask"]))
        assert mask.shape == (64, 64) and np.array_equal(mask > 0, want > 0)
        assert int(r["area_px"]) == int(want.sum()) and float(r["area_mm2"]) == pytest.approx(want.sum() * 0.25)
        assert "circumference_mm" in r
        assert np.asarray(Image.open(r["overlay"])).shape == (64, 64, 3)
    with pytest.raises(ConfigError, match="not a segmentation model"):
        medzoo.evaluate.segment_files(VAE(**ARCH, latent_channels=2), [tmp_path / "scan0.png"], out)


def test_the_segmentation_task_measures_dice_hd95_in_mm_and_head_circumference(lesions, tmp_path):
    x, masks = lesions
    seg = Segmenter(**ARCH)
    seg.fit(x[:16], masks[:16], epochs=1, batch_size=8, verbose=0)
    preset = medzoo.save_preset(seg, tmp_path / "preset", name="tiny-seg", spec=medzoo.PreprocessSpec(size=None))
    result = medzoo.evaluate(preset, "segmentation", dataset="hc18_256", max_images=6,
                             examples=2, output_dir=tmp_path / "out")
    assert result.hd95_unit == "mm" and set(result.per_image) == {"dice", "iou", "hd95", "hc_error_mm"}
    assert len(result.per_image["dice"]) == 6 and np.all((0 <= result.per_image["dice"]) &
                                                         (result.per_image["dice"] <= 1))
    assert (tmp_path / "out" / "segmentation.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "results.json").read_text())["hd95_unit"] == "mm"
    with pytest.raises(DataError, match="test_masks"):
        medzoo.evaluate.segmentation(preset, dataset="kermany_pediatric_cxr_64")


def test_the_fetal_head_preset_reproduces_its_manifest_and_keeps_one_head_per_image():
    from medzoo.metrics import dice
    from medzoo.models.mask_cleanup import component_labels

    recorded = medzoo.info("seg-fetalus-head")["metrics"]
    result = medzoo.evaluate("seg-fetalus-head", "segmentation")  # the whole HC18 test split, as shipped
    assert len(result.per_image["dice"]) == recorded["test_images"]
    assert result.per_image["dice"].mean() == pytest.approx(recorded["dice"], abs=2e-4)
    assert np.nanmean(result.per_image["hc_error_mm"]) == pytest.approx(recorded["hc_error_mm"], abs=0.02)

    model = medzoo.load("seg-fetalus-head")
    images, _ = medzoo.load_npz("hc18_256", "test")
    refs = medzoo.data.load_masks("hc18_256", "test")
    x = model.preprocess(images[:8])
    raw, clean = model.segment(x), model.segment(x, largest_region=True)
    assert all(component_labels(c).max() == 1 for c in clean)  # one region per image
    assert dice(refs[:8], clean).mean() >= dice(refs[:8], raw).mean() - 0.005


@pytest.mark.parametrize("name, test_images", [("seg-brainmri-tumour", 307), ("seg-breastus-lesion", 187)])
def test_a_preset_without_pixel_sizes_reproduces_its_manifest(name, test_images):
    recorded = medzoo.info(name)["metrics"]
    result = medzoo.evaluate(name, "segmentation")  # the whole test split, as shipped
    assert len(result.per_image["dice"]) == recorded["test_images"] == test_images
    assert result.per_image["dice"].mean() == pytest.approx(recorded["dice"], abs=2e-4)
    assert result.per_image["iou"].mean() == pytest.approx(recorded["iou"], abs=2e-4)
    assert result.hd95_unit == "px" and np.nanmean(result.per_image["hd95"]) == pytest.approx(recorded["hd95_px"], abs=0.02)


def test_medzoo_evaluate_segmentation_takes_largest_region_from_the_command_line(tmp_path, monkeypatch):
    from medzoo.cli import main

    asked = []
    segment = Segmenter.segment
    monkeypatch.setattr(Segmenter, "segment", lambda self, x, **kw: asked.append(kw) or segment(self, x, **kw))
    code = main(["--log-level", "WARNING", "evaluate", "seg-fetalus-head", "--task", "segmentation", "--max-images", "6",
                 "--largest-region", "--output", str(tmp_path / "out")])
    assert code in (0, None) and asked == [{"largest_region": True}]
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    expected = medzoo.evaluate.segmentation("seg-fetalus-head", max_images=6, largest_region=True)
    assert written["images"] == 6
    assert written["metrics"]["dice"]["mean"] == pytest.approx(expected.summary["dice"]["mean"], abs=1e-6)


def test_medzoo_segment_on_the_shipped_fetal_heads_leaves_out_their_masks_and_uses_the_manifest_spacing(tmp_path,
                                                                                                        capsys):
    """The sample folder holds each image's reference mask beside it: only the 4 images are segmented, and the
    circumference is in mm, from the pixel spacing the samples' manifest.json states for each image."""
    import csv

    from medzoo.cli import main
    from medzoo.data import SAMPLES_DIR

    folder = SAMPLES_DIR / "fetal_head"
    stated = {item["file"]: item for item in json.loads((folder / "manifest.json").read_text())["images"]}
    assert main(["--log-level", "WARNING", "segment", "seg-fetalus-head", str(folder), "-o", str(tmp_path / "a")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "a" / "segment.csv")))
    assert sorted(pathlib.Path(r["input"]).name for r in rows) == sorted(stated)
    for r in rows:
        spacing = stated[pathlib.Path(r["input"]).name]["pixel_spacing_mm"]
        assert float(r["area_mm2"]) == pytest.approx(int(r["area_px"]) * spacing ** 2, rel=1e-6)
        assert float(r["circumference_mm"]) > 0 and "circumference_px" not in r
    assert "no pixel spacing" not in capsys.readouterr().out

    assert main(["--log-level", "WARNING", "segment", "seg-fetalus-head", str(folder), "-o", str(tmp_path / "b"),
                 "--exclude", "test0[03]*"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "b" / "segment.csv")))
    assert sorted(pathlib.Path(r["input"]).name for r in rows) == ["test068_115_HC.png", "test102_775_HC.png"]
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(folder / "test068_115_HC.png", plain)  # no manifest beside it: no spacing, and it says so
    assert main(["--log-level", "WARNING", "segment", "seg-fetalus-head", str(plain), "-o", str(tmp_path / "c")]) == 0
    assert "no pixel spacing for 1 image(s)" in capsys.readouterr().out
    assert "circumference_px" in next(csv.DictReader(open(tmp_path / "c" / "segment.csv")))
