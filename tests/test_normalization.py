"""medzoo's GroupNorm: Keras's layer computed by fused kernels, with the same outputs, gradients and weight files.

These tests run under the suite's backend (TensorFlow: the XLA-compiled kernel); the last one runs them
again in a PyTorch process (``torch.nn.functional.group_norm``). JAX runs Keras's own code.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from medzoo.errors import ConfigError
from medzoo.models import normalization
from medzoo.models.normalization import GROUP_NORM_ENV, GroupNormalization

CHANNELS, GROUPS = 12, 4


def _network(norm_class, seed=0):
    """Conv -> GroupNorm -> Conv on any-size images, the layout the residual blocks use."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(CHANNELS, 3, padding="same")(inputs)
    x = norm_class(groups=GROUPS)(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same")(x)
    model = keras.Model(inputs, outputs)
    norm = model.layers[2]
    rng = np.random.default_rng(seed)  # a scale and shift far from 1 and 0, so both matter
    norm.set_weights([rng.uniform(0.5, 2.0, CHANNELS).astype("float32"),
                      rng.normal(0, 1, CHANNELS).astype("float32")])
    return model


def _images(seed=1, size=(2, 20, 28)):
    # an offset and a spread of their own per image: GroupNorm's statistics are per image and group
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(*size, 3)).astype("float32")
    return x * rng.uniform(0.5, 3.0, (size[0], 1, 1, 1)).astype("float32") + \
        rng.normal(0, 2, (size[0], 1, 1, 1)).astype("float32")


def _as_numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_fused_outputs_match_keras_on_images_of_several_sizes():
    ours, theirs = _network(GroupNormalization), _network(keras.layers.GroupNormalization)
    for size in [(2, 20, 28), (1, 64, 48), (3, 8, 8)]:
        x = _images(size=size)
        np.testing.assert_allclose(_as_numpy(ours(x)), _as_numpy(theirs(x)), rtol=1e-4, atol=1e-4)


def test_fused_kernel_is_what_runs_on_this_backend(monkeypatch):
    if keras.backend.backend() not in ("tensorflow", "torch"):
        pytest.skip("JAX runs Keras's own GroupNorm (XLA fuses it)")
    # the default selection (no MEDZOO_GROUP_NORM) picks the backend's fused kernel: spy on what it returns
    monkeypatch.delenv(GROUP_NORM_ENV, raising=False)
    calls = []
    fused = normalization._fused_for_backend_named(keras.backend.backend())
    monkeypatch.setattr(normalization, "_fused_for_backend_named",
                        lambda backend: (lambda *a: calls.append(a[3:]) or fused(*a)))
    _network(GroupNormalization)(_images())
    assert calls and set(calls) == {(GROUPS, CHANNELS, 1e-3)}


def test_one_training_step_moves_the_weights_as_keras_does():
    """The fused kernel's gradients (to the input and to gamma and beta) are Keras's: one SGD step on the same
    batch leaves both networks with the same weights."""
    x = _images(size=(4, 16, 16))
    y = np.tanh(x[..., :1])
    after = []
    for norm_class in (GroupNormalization, keras.layers.GroupNormalization):
        model = _network(norm_class)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        before = [w.copy() for w in model.get_weights()]
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        after.append(model.get_weights())
        assert all(np.abs(a - b).max() > 1e-4 for a, b in zip(after[-1], before)), "every weight should move"
    for ours, theirs in zip(*after):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_weights_saved_with_keras_groupnorm_load_unchanged(tmp_path):
    """A weights file addresses layers by class name, so a preset saved before this layer existed loads into it."""
    theirs = _network(keras.layers.GroupNormalization, seed=3)
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours = _network(GroupNormalization, seed=4)
    ours.load_weights(tmp_path / "keras.weights.h5")
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = _images()
    np.testing.assert_allclose(_as_numpy(ours(x)), _as_numpy(theirs(x)), rtol=1e-4, atol=1e-4)


def test_a_model_with_it_saves_and_loads_as_a_keras_file(tmp_path):
    model = _network(GroupNormalization)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.layers[2]) is GroupNormalization
    x = _images()
    np.testing.assert_allclose(_as_numpy(loaded(x)), _as_numpy(model(x)), rtol=1e-5, atol=1e-5)


def test_environment_picks_keras_kernels_and_refuses_unknown_ones(monkeypatch):
    def fail(backend):
        raise AssertionError("the fused kernel ran")

    monkeypatch.setattr(normalization, "_fused_for_backend_named", fail)
    monkeypatch.setenv(GROUP_NORM_ENV, "keras")
    x = _images()
    out = _as_numpy(_network(GroupNormalization)(x))
    np.testing.assert_array_equal(out, _as_numpy(_network(keras.layers.GroupNormalization)(x)))
    monkeypatch.setenv(GROUP_NORM_ENV, "fast")
    with pytest.raises(ConfigError, match="MEDZOO_GROUP_NORM must be one of fused, keras"):
        _network(GroupNormalization)(x)


def test_other_ranks_and_dtypes_fall_back_to_keras():
    # a sequence (N, T, C) and float16 layers take Keras's own code, and still agree with it
    seq = np.random.default_rng(0).normal(size=(2, 10, CHANNELS)).astype("float32")
    ours, theirs = GroupNormalization(groups=GROUPS), keras.layers.GroupNormalization(groups=GROUPS)
    np.testing.assert_allclose(_as_numpy(ours(seq)), _as_numpy(theirs(seq)), rtol=1e-5, atol=1e-5)
    maps = _images()[..., :1].repeat(CHANNELS, axis=-1)
    # float16 in, float16 layer; and float32 in, a float16 or mixed-precision layer (GroupNorm does not
    # cast its inputs, so a float32 map reaches a float16 layer, e.g. the first norm after a keras.Input)
    for x, dtype in ((maps.astype("float16"), "float16"), (maps, "float16"), (maps, "mixed_float16")):
        ours16, theirs16 = (cls(groups=GROUPS, dtype=dtype) for cls in (GroupNormalization,
                                                                         keras.layers.GroupNormalization))
        a, b = _as_numpy(ours16(x)), _as_numpy(theirs16(x))
        assert a.dtype == b.dtype, dtype
        np.testing.assert_allclose(a.astype("float32"), b.astype("float32"), rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="started once, from the TensorFlow run")
def test_the_same_tests_pass_under_pytorch():
    env = {**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          __file__], capture_output=True, text=True, timeout=1200, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-2000:]
    # all of them ran there (only this one skips itself), so nothing passes by being skipped
    assert out.returncode == 0 and "7 passed, 1 skipped" in summary, out.stdout[-4000:] + out.stderr[-2000:]
