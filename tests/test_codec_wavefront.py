"""The lossless coder's compiled loops (medzoo.codec.wavefront) against the numpy definitions they follow."""

import numpy as np
import pytest

from medzoo.codec import lossless, prediction, wavefront


def _numpy_linear(signal, coefficients, activity_thresholds, low, high):
    """Version 2's predictions and context variables of every pixel of (P, H, W), in plain numpy."""
    planes, h, w = signal.shape
    padded = prediction.with_zero(signal.reshape(planes, -1))
    near = [padded[:, index] for index in prediction.neighbour_sources(h, w)]
    feats = prediction.features(near)
    cls = prediction.classes(near, activity_thresholds)
    weighted = sum(coefficients[:, k][cls] * f for k, f in enumerate(feats))
    predicted = np.clip(near[0] + ((weighted + (1 << (prediction.COEF_BITS - 1))) >> prediction.COEF_BITS),
                        low, high)
    errors = prediction.with_zero(signal.reshape(planes, -1) - predicted)
    wv, nv, nw, ne = near[:4]
    energy = sum(np.abs(errors[:, index]) for index in prediction.neighbour_sources(h, w, fallback=False)[:4]) \
        + (np.abs(wv - nw) + np.abs(nv - nw) + np.abs(nv - ne)) // 2
    return predicted, energy, prediction.activity(near)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 7), (1, 7, 1), (2, 5, 4), (1, 37, 29)])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16"])
def test_compiled_linear_prediction_matches_the_numpy_definition(shape, dtype):
    """Every pixel's prediction, context variable and activity, at every border and at the type's extremes,
    with coefficients of both signs up to the int16 limits the stream allows."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(shape[1] * 31 + shape[2])
    coefficients = rng.integers(-(1 << 15), 1 << 15, size=(4 * prediction.ORIENTATIONS, prediction.FEATURES))
    thresholds = np.array([3, 40, 900])
    for signal in (rng.integers(info.min, int(info.max) + 1, size=shape),
                   np.cumsum(rng.integers(-3, 4, size=shape), axis=2) + int(info.min) // 2 + int(info.max) // 2,
                   np.full(shape, info.max)):
        signal = signal.astype(np.int64)
        low, high = int(signal.min()), int(signal.max())
        want_predicted, want_energy, want_activity = _numpy_linear(signal, coefficients, thresholds, low, high)
        planes, h, w = shape
        padded = prediction.with_zero(signal.reshape(planes, -1))
        predicted = np.empty((planes, h * w), dtype=np.int64)
        wavefront.linear_predictions(padded, h, w, coefficients, thresholds, low, high, prediction.COEF_BITS,
                                     predicted)
        np.testing.assert_array_equal(predicted, want_predicted)
        energy = np.empty_like(predicted)
        wavefront.linear_energies(padded, prediction.with_zero(signal.reshape(planes, -1) - predicted), h, w, energy)
        np.testing.assert_array_equal(energy, want_energy)
        activity = np.empty_like(predicted)
        wavefront.linear_activities(padded, h, w, activity)
        np.testing.assert_array_equal(activity, want_activity)


@pytest.mark.parametrize("row_weight", [1, 2])
def test_the_stream_order_is_a_stable_sort_by_wavefront_then_context(row_weight):
    """The counting sort gives numpy's stable argsort of (wavefront, context, plane, row)."""
    rng = np.random.default_rng(row_weight)
    planes, h, w, contexts = 3, 11, 6, 8
    context = rng.integers(0, contexts, size=(planes, h, w))
    p, r, c = np.meshgrid(np.arange(planes), np.arange(h), np.arange(w), indexing="ij")
    group = (row_weight * r + c) * contexts + context
    want = np.argsort(((group * planes + p) * h + r).ravel(), kind="stable")
    order, groups, bounds = lossless._coding_order(context, contexts, row_weight)
    np.testing.assert_array_equal(order, want)
    np.testing.assert_array_equal(groups, np.unique(group))
    np.testing.assert_array_equal(np.diff(bounds), np.bincount(group.ravel())[np.unique(group)])


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (1, 9), (9, 1), (2, 2), (3, 5), (5, 3), (2, 33), (6, 7)])
def test_the_compiled_loops_find_the_neighbours_the_table_defines(shape):
    """The compiled loops compute each pixel's neighbours (offsets inside the image, fallbacks at the border)
    instead of reading the (9, H*W) table; they must be the table's, pixel by pixel, with and without
    fallbacks."""
    h, w = shape
    for fallback in (True, False):
        want = prediction.neighbour_sources(h, w, fallback)
        found = np.empty(want.shape, dtype=np.int64)
        wavefront.neighbour_indices(np.arange(h * w), h, w, fallback, found)
        np.testing.assert_array_equal(found, want)
        errors_only = np.empty((4, h * w), dtype=np.int64)
        wavefront.neighbour_indices(np.arange(h * w), h, w, fallback, errors_only)
        np.testing.assert_array_equal(errors_only, want[:4])


def _smooth_signal():
    i, j = np.mgrid[:40, :36]
    return (3 * i + 2 * j + (i * 7919 + j * 104729) % 5)[None].astype(np.int64)


def test_a_payload_whose_thresholds_do_not_increase_is_refused():
    """The encoder writes increasing thresholds and the compiled binary search relies on it: a payload that
    breaks this is refused with a DataError, not decoded into other pixels."""
    from medzoo.errors import DataError

    signal = _smooth_signal()
    plan = lossless._linear_plan(signal, levels=1)
    assert len(plan["thresholds"]) > 2
    plan["thresholds"] = plan["thresholds"][::-1].copy()
    with pytest.raises(DataError, match="context thresholds"):
        lossless.decode_signal(lossless._code_plan(plan, np.dtype("uint8")), signal.shape)


def test_a_payload_whose_value_range_leaves_int64_is_refused():
    """The decoder computes in int64: a (crafted) range beyond it is a DataError, not a numba type error."""
    from medzoo.codec.bitio import varint, zigzag
    from medzoo.errors import DataError

    signal = _smooth_signal()
    plan = lossless._linear_plan(signal, levels=1)
    low, high = int(signal.min()), int(signal.max())
    suffix = varint(zigzag(low)) + varint(zigzag(high))
    assert plan["head"].endswith(suffix)
    plan["head"] = plan["head"][:-len(suffix)] + varint(zigzag(-2 ** 64)) + varint(zigzag(high))
    with pytest.raises(DataError, match="value range"):
        lossless.decode_signal(lossless._code_plan(plan, np.dtype("uint8")), signal.shape)


def test_the_coder_works_where_numba_has_nowhere_to_cache(tmp_path):
    """A read-only install with no writable cache directory: the loops compile per process instead of the
    import failing (simulated by giving numba no cache locator, in a fresh interpreter)."""
    import subprocess
    import sys

    script = (
        "import numba.core.caching as c; c.CacheImpl._locator_classes = []\n"
        "import numpy as np\n"
        "from medzoo.codec import lossless, wavefront\n"
        "assert not wavefront._cacheable()\n"
        "s = (np.arange(30 * 20).reshape(1, 30, 20) * 7 % 253).astype(np.int64)\n"
        "for encode in (lossless.encode_signal_med, lossless.encode_signal_linear):\n"
        "    assert np.array_equal(lossless.decode_signal(encode(s, np.dtype('uint8')), s.shape), s)\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 7), (1, 7, 1), (2, 5, 4), (1, 37, 29)])
def test_the_floor_edge_test_matches_its_numpy_definition(shape):
    """Payload version 3's edge of the floor: a pixel whose nine neighbours (as the border fallbacks read
    them) hold the floor and other values, predicted by the floor division of the others' sum by their count."""
    rng = np.random.default_rng(shape[1] * 7 + shape[2])
    signal = np.where(rng.random(shape) < 0.5, -2000, rng.integers(-1100, 3000, size=shape)).astype(np.int64)
    planes, h, w = shape
    padded = prediction.with_zero(signal.reshape(planes, -1))
    near = np.stack([padded[:, index] for index in prediction.neighbour_sources(h, w)])  # (9, P, H*W)
    at_floor = near == -2000
    want_edge = at_floor.any(axis=0) & ~at_floor.all(axis=0)
    others = (~at_floor).sum(axis=0)
    want_mean = np.where(want_edge, np.where(at_floor, 0, near).sum(axis=0) // np.maximum(others, 1), 0)
    edge, means = np.empty((planes, h * w), dtype=np.int8), np.empty((planes, h * w), dtype=np.int64)
    wavefront.floor_edges(padded, h, w, -2000, edge, means)
    np.testing.assert_array_equal(edge.astype(bool), want_edge)
    np.testing.assert_array_equal(means, want_mean)
    assert shape[2] == 1 or want_edge.any()


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (1, 9), (9, 1), (2, 2), (3, 5), (5, 3), (2, 33)])
def test_neighbour_sources_follow_their_definition_pixel_by_pixel(shape):
    """Where each pixel reads its nine neighbours (the table both sides gather through, built from the border
    rows and columns alone): the neighbour itself inside the image; outside it, its fallback's source (W: N,
    or the zero at the first pixel), or the zero when errors are read (``fallback=False``)."""
    h, w = shape
    zero = h * w
    for fallback in (True, False):
        table = prediction.neighbour_sources(h, w, fallback)
        assert table.shape == (len(prediction.OFFSETS), h * w) and not table.flags.writeable
        for k, (dr, dc) in enumerate(prediction.OFFSETS):
            for r in range(h):
                for c in range(w):
                    if 0 <= r - dr and 0 <= c - dc < w:
                        want = (r - dr) * w + c - dc
                    elif not fallback:
                        want = zero
                    elif k == 0:
                        want = (r - 1) * w + c if r >= 1 else zero
                    else:
                        want = table[prediction.FALLBACK[k], r * w + c]
                    assert table[k, r * w + c] == want, (k, r, c)
