"""PreprocessSpec: geometry, normalisation, channels, graph mode, config round trip, check() and display helpers."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from medzoo.data import MIN_IMAGE_SIZE, PreprocessSpec, to_display, to_uint8
from medzoo.errors import ConfigError, DataError

IDENTITY = {"resize": "stretch", "normalize": "fixed", "input_range": (0, 1)}


def _np(out):
    """Numpy input gives a float32 numpy array; a TensorFlow tensor gives a float32 tensor."""
    if isinstance(out, tf.Tensor):
        assert out.dtype == tf.float32
        return out.numpy()
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    return out


def test_pad_keeps_the_aspect_ratio_with_background_bands():
    tall = np.ones((32, 16), np.uint8)
    out = _np(PreprocessSpec((16, 16), resize="pad", normalize="fixed", input_range=(0, 1)).apply(tall))[..., 0]
    assert out.shape == (16, 16)
    np.testing.assert_array_equal(out[:, 4:12], 1.0)  # the 32x16 image became 16x8, centred
    np.testing.assert_array_equal(out[:, :4], 0.0)
    np.testing.assert_array_equal(out[:, 12:], 0.0)
    # The bands take value_range[0] and do not take part in the per-image statistics.
    ramp = np.tile(np.arange(40, dtype=np.float32)[None, :], (20, 1)) + 100
    out = _np(PreprocessSpec((24, 24), resize="pad", value_range=(-1, 1)).apply(ramp))[..., 0]
    np.testing.assert_array_equal(out[:6], -1.0)
    np.testing.assert_array_equal(out[18:], -1.0)
    assert out[6:18].min() == -1.0 and out[6:18].max() == 1.0
    assert np.all(np.diff(out[12]) > 0)  # still a left-to-right ramp


def test_crop_fills_and_cuts_the_borders():
    wide = np.full((20, 40), 1000.0, np.float32)  # bright 10-px borders left and right
    wide[:, 10:30] = np.linspace(0, 100, 20, dtype=np.float32)[:, None]  # vertical ramp in the centre
    out = _np(PreprocessSpec((16, 16), resize="crop").apply(wide))[..., 0]
    assert out.shape == (16, 16)
    assert out[0].max() < 0.05 and out[-1].min() > 0.95  # the ramp spans the whole range: no border left
    np.testing.assert_allclose(out, out[:, :1].repeat(16, axis=1), atol=1e-5)  # rows constant: borders gone


def test_stretch_ignores_the_aspect_ratio():
    ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (10, 1))
    out = _np(PreprocessSpec((16, 16), resize="stretch").apply(ramp))[..., 0]
    assert out.shape == (16, 16)
    np.testing.assert_allclose(out[:, 0], out[0, 0])  # content spans the full width and height
    assert out[0, 0] < 0.05 and out[0, -1] > 0.95


def test_minmax_is_per_image_even_in_a_batch():
    batch = np.stack([np.linspace(10, 90, 64).reshape(8, 8), np.linspace(-5000, 5000, 64).reshape(8, 8)])
    out = _np(PreprocessSpec((8, 8), resize="stretch").apply(batch))
    assert out.shape == (2, 8, 8, 1)
    np.testing.assert_allclose(out[0, ..., 0], (batch[0] - 10) / 80, atol=1e-6)
    np.testing.assert_allclose(out[1, ..., 0], (batch[1] + 5000) / 10000, atol=1e-6)


def test_constant_image_maps_to_the_low_end_not_nan():
    for normalize in ("minmax", "percentile"):
        # resampling 10 -> 8 px leaves float rounding noise that must not be stretched to the full range
        spec = PreprocessSpec((8, 8), normalize=normalize, value_range=(-1, 1))
        out = _np(spec.apply(np.full((10, 10), 7, np.uint8)))
        np.testing.assert_array_equal(out, -1.0)


def test_percentile_clips_at_numpy_percentiles():
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(3, 16, 16)).astype(np.float32) * [[[1]], [[10]], [[100]]]
    out = _np(PreprocessSpec((16, 16), resize="stretch", normalize="percentile", percentiles=(5, 95)).apply(batch))
    for image, result in zip(batch, out[..., 0]):
        low, high = np.percentile(image, [5, 95])
        np.testing.assert_allclose(result, (np.clip(image, low, high) - low) / (high - low), atol=1e-5)


def test_fixed_clips_to_the_input_range():
    image = np.array([[0, 127.5, 255, 300, -20, 51, 25.5, 229.5]] * 8, np.float32)
    spec = PreprocessSpec((8, 8), resize="stretch", normalize="fixed", input_range=(0, 255), value_range=(-1, 1))
    np.testing.assert_allclose(_np(spec.apply(image))[0, :, 0], [-1, 0, 1, 1, -1, -0.6, -0.8, 0.8], atol=1e-6)


def test_channel_conversion():
    grey = np.arange(100, dtype=np.uint8).reshape(10, 10)
    out = _np(PreprocessSpec((10, 10), channels=3, **IDENTITY).apply(grey / 100))
    assert out.shape == (10, 10, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255
    spec = PreprocessSpec((10, 10), channels=1, resize="stretch", normalize="fixed", input_range=(0, 255))
    np.testing.assert_allclose(_np(spec.apply(red)), 0.2989, atol=1e-4)  # BT.601 luminance of pure red
    rgba = np.concatenate([red, np.zeros((10, 10, 1), np.uint8)], axis=-1)  # alpha is dropped
    np.testing.assert_array_equal(_np(spec.apply(rgba)), _np(spec.apply(red)))


@pytest.mark.parametrize(
    "shape, expected",
    [((20, 30), (8, 8, 1)), ((20, 30, 1), (8, 8, 1)), ((20, 30, 3), (8, 8, 1)),
     ((5, 20, 30), (5, 8, 8, 1)), ((2, 20, 30, 3), (2, 8, 8, 1)), ((3, 20, 30), (3, 8, 8, 1))],
)
def test_layouts(shape, expected):
    assert PreprocessSpec((8, 8)).apply(np.random.rand(*shape)).shape == expected


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int64, np.float16, np.float64, bool])
def test_any_numeric_dtype_becomes_float32(dtype):
    image = (np.arange(144).reshape(12, 12) % 2).astype(dtype)
    out = PreprocessSpec((12, 12), resize="stretch").apply(tf.constant(image))
    np.testing.assert_array_equal(_np(out)[..., 0], image.astype(np.float32))


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((0, 0)), "at least"),
        (np.zeros((4, 40)), "4x40 pixels"),
        (np.zeros((2, 40, 7, 1)), "40x7 pixels"),
        (np.zeros((5,)), "shape"),
        (np.zeros((1, 2, 20, 20, 1)), "shape"),
        (np.zeros((2, 20, 20, 2)), "2 channels"),
        (np.array([["a"] * 10] * 10), "numeric"),
    ],
)
def test_bad_inputs_raise_data_error(images, match):
    with pytest.raises(DataError, match=match):
        PreprocessSpec((8, 8)).apply(images)


def test_graph_mode_in_tf_data_with_unknown_sizes():
    spec = PreprocessSpec((16, 16), normalize="percentile")
    rng = np.random.default_rng(1)
    images = [rng.random((h, w)).astype(np.float32) * 1000 for h, w in [(20, 30), (50, 12), (16, 16)]]
    ds = tf.data.Dataset.from_generator(lambda: iter(images), output_signature=tf.TensorSpec([None, None], tf.float32))
    ds = ds.map(spec.apply, num_parallel_calls=tf.data.AUTOTUNE)
    assert ds.element_spec.shape == (16, 16, 1)
    for got, image in zip(ds, images, strict=True):
        np.testing.assert_allclose(got.numpy(), spec.apply(image), atol=1e-5)


def test_graph_mode_with_unknown_channels_and_runtime_size_check():
    spec = PreprocessSpec((8, 8), channels=3)
    fn = tf.function(spec.apply, input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
    grey, rgb = np.random.rand(2, 12, 12, 1).astype(np.float32), np.random.rand(2, 12, 12, 3).astype(np.float32)
    np.testing.assert_allclose(fn(grey).numpy(), spec.apply(grey), atol=1e-5)
    np.testing.assert_allclose(fn(rgb).numpy(), spec.apply(rgb), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}"):
        fn(np.zeros((1, 4, 12, 1), np.float32))


@pytest.mark.parametrize("size", [(16, 16), (24, 40), None])
@pytest.mark.parametrize("resize", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("normalize", ["minmax", "percentile", "fixed"])
def test_numpy_and_tensorflow_implementations_agree(size, resize, normalize):
    """numpy input takes the numpy path, a tensor the TF path: the same model inputs either way."""
    extra = {"input_range": (10, 900)} if normalize == "fixed" else {}
    rng = np.random.default_rng(0)
    for channels in (1, 3):
        spec = PreprocessSpec(size, channels=channels, resize=resize, normalize=normalize, **extra)
        for shape in [(3, 37, 53), (2, 20, 30, 3), (1, 64, 64, 4), (2, 9, 200, 1)]:
            x = (rng.random(shape) * 1000).astype(np.float32)
            a, b = _np(spec.apply(x)), _np(spec.apply(tf.constant(x)))
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=f"{spec} {shape}")
    shrunk = PreprocessSpec(size=None, max_side=25)
    for hw in [(30, 50), (50, 30), (101, 33), (20, 20)]:
        x = rng.random(hw).astype(np.float32)
        np.testing.assert_allclose(_np(shrunk.apply(x)), _np(shrunk.apply(tf.constant(x))), atol=1e-5)


def test_config_round_trip_through_json():
    spec = PreprocessSpec((64, 48), channels=3, resize="crop", normalize="fixed", input_range=(-1000, 400),
                          value_range=(-1, 1))
    config = json.loads(json.dumps(spec.to_config()))
    assert config["size"] == [64, 48]
    again = PreprocessSpec.from_config(config)
    assert again == spec and again.size == (64, 48) and again.output_shape == (64, 48, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.channels = 1
    with pytest.raises(ConfigError, match="unknown PreprocessSpec config keys"):
        PreprocessSpec.from_config({**config, "antialias": True})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": (0, 10)}, "size"),
        ({"size": (10,)}, "size"),
        ({"size": (10.5, 10)}, "size"),
        ({"size": (10, 10), "channels": 2}, "channels"),
        ({"size": (10, 10), "channels": True}, "channels"),
        ({"size": (10, 10), "resize": "zoom"}, "resize"),
        ({"size": (10, 10), "normalize": "zscore"}, "normalize"),
        ({"size": (10, 10), "normalize": "percentile", "percentiles": (50, 10)}, "percentiles"),
        ({"size": (10, 10), "normalize": "fixed"}, "input_range"),
        ({"size": (10, 10), "normalize": "fixed", "input_range": (float("nan"), 1)}, "input_range"),
        ({"size": (10, 10), "input_range": (0, 255)}, "input_range"),
        ({"size": (10, 10), "value_range": (1, 0)}, "value_range"),
    ],
)
def test_invalid_specs_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PreprocessSpec(**kwargs)


def test_check_accepts_model_inputs_and_rejects_contradicting_ones():
    spec = PreprocessSpec((16, 16))
    good = spec.apply(np.random.rand(4, 30, 30))
    spec.check(good)
    spec.check(good[0])
    spec.check(np.full((16, 16, 1), 1.0005))  # within the rounding tolerance
    with pytest.raises(DataError, match=r"shape \(16, 16, 1\).*got shape \(16, 16\)"):
        spec.check(np.zeros((16, 16)))
    with pytest.raises(DataError, match="got shape"):
        spec.check(np.zeros((2, 32, 32, 1)))
    with pytest.raises(DataError, match="got shape"):
        spec.check(np.zeros((16, 16, 3)))
    with pytest.raises(DataError, match=r"span \[0, 255\].*value_range"):
        spec.check(np.arange(256, dtype=np.uint8).reshape(16, 16, 1))
    with pytest.raises(DataError, match="NaN"):
        spec.check(np.full((16, 16, 1), np.nan))


def test_to_uint8_and_to_display():
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.25, 1.0, 2.0, -1.0])), [0, 64, 255, 255, 0])
    np.testing.assert_array_equal(to_uint8(np.array([-1.0, 0.0, 1.0]), value_range=(-1, 1)), [0, 128, 255])
    out = to_display(tf.constant(np.full((1, 5, 6, 1), 0.5, np.float32)))
    assert out.shape == (5, 6) and out.dtype == np.uint8 and np.all(out == 128)
    assert to_display(np.zeros((5, 6, 3))).shape == (5, 6, 3)
    with pytest.raises(DataError, match="to_display expects"):
        to_display(np.zeros((2, 5, 6, 1)))
    with pytest.raises(DataError, match="NaN"):
        to_uint8(np.array([np.nan]))


# ------------------------------------------------------------ native size (any-size models)
def test_native_size_spec_keeps_each_images_size_and_shrinks_only_past_max_side():
    spec = PreprocessSpec(size=None)
    assert spec.output_shape == (None, None, 1) and spec.native_size
    image = np.arange(30 * 50, dtype=np.float32).reshape(30, 50)
    out = np.asarray(spec.apply(image))
    assert out.shape == (30, 50, 1) and out.min() == 0.0 and out.max() == 1.0
    shrunk = PreprocessSpec(size=None, max_side=25)
    assert np.asarray(shrunk.apply(image)).shape == (15, 25, 1)
    assert np.asarray(shrunk.apply(image[:20, :20])).shape == (20, 20, 1)  # smaller than max_side: unchanged
    again = PreprocessSpec.from_config(shrunk.to_config())
    assert again == shrunk and "max_side" not in PreprocessSpec(size=(8, 8)).to_config()


def test_native_size_check_accepts_any_size_but_not_other_channels_or_ranges():
    spec = PreprocessSpec(size=None)
    spec.check(np.zeros((2, 17, 300, 1), np.float32))
    with pytest.raises(DataError, match="any size"):
        spec.check(np.zeros((2, 17, 300, 3), np.float32))
    with pytest.raises(DataError, match="value_range"):
        spec.check(np.full((17, 30, 1), 255.0, np.float32))
    with pytest.raises(ConfigError, match="max_side"):
        PreprocessSpec(size=(64, 64), max_side=32)
    with pytest.raises(ConfigError, match="max_side"):
        PreprocessSpec(size=None, max_side=2)


def test_a_16_bit_ct_keeps_its_bit_depth_until_normalisation(dicom_dir):
    """The CT's Hounsfield units stay float32 (exact for 16-bit integers): no 8-bit step before the window."""
    from medzoo.data import read_dicom

    pixels, meta = read_dicom(dicom_dir / "693_J2KR.dcm", voi="none")
    assert pixels.dtype == np.float32 and len(np.unique(pixels)) > 1000
    np.testing.assert_array_equal(pixels, np.round(pixels))  # integers in HU, none lost to rounding
    spec = PreprocessSpec(size=None, normalize="fixed", input_range=(-1024.0, 3071.0))
    out = np.asarray(spec.apply(pixels))
    assert out.shape == (512, 512, 1) and len(np.unique(out)) > 1000  # far more than 256 grey levels
