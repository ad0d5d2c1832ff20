"""Jittered copies (medzoo.data.jitter): reproducible, in range, near their originals, and really changed."""

import numpy as np
import pytest

from medzoo.data.jitter import JITTER_RANGES, jittered_copies, name_seed


def _disc_images(n=4, size=32):
    """Bright off-centre discs on a dark ground: a rotation or zoom moves them, a gamma change dims them."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        cy, cx = 10 + 3 * i, 20 - 2 * i
        out[i, ..., 0] = (((yy - cy) ** 2 + (xx - cx) ** 2) < 25) * 0.8 + 0.1
    return out


def test_copies_are_reproducible_in_range_and_ordered_copy_by_copy():
    images = _disc_images()
    a = jittered_copies(images, 3, seed=7)
    assert a.shape == (12, 32, 32, 1) and a.dtype == np.float32
    assert np.array_equal(a, jittered_copies(images, 3, seed=7))
    assert not np.array_equal(a, jittered_copies(images, 3, seed=8))
    assert a.min() >= 0.0 and a.max() <= 1.0
    # copy k of image i sits at k * N + i: each copy is nearer its own original than any other image
    for k in range(3):
        for i in range(4):
            d = [np.abs(a[k * 4 + i] - images[j]).mean() for j in range(4)]
            assert int(np.argmin(d)) == i
    assert jittered_copies(images, 0, seed=7).shape == (0, 32, 32, 1)


def test_copies_change_geometry_and_intensity_within_the_stated_ranges():
    images = _disc_images()
    copies = jittered_copies(images, 8, seed=1)
    moved = [np.abs(c - images[i % 4]).mean() for i, c in enumerate(copies)]
    assert min(moved) > 1e-3  # every copy differs from its original
    # a flat image stays flat under any rotation, zoom or shift: only gamma moves it, within its range
    flat = jittered_copies(np.full((1, 16, 16, 1), 0.5, np.float32), 20, seed=1)
    low, high = JITTER_RANGES["gamma"]
    levels = flat.reshape(20, -1)
    assert np.allclose(levels, levels[:, :1], atol=1e-6)
    assert levels.min() >= 0.5 ** high - 1e-6 and levels.max() <= 0.5 ** low + 1e-6
    assert levels[:, 0].std() > 0.02  # and it does move them


def test_flip_mirrors_about_half_the_copies_and_seeds_depend_on_the_name():
    images = _disc_images(n=1)
    copies = jittered_copies(np.repeat(images, 40, axis=0), 1, seed=2, flip=True)
    centre_x = [(c[..., 0] * np.arange(32)).sum() / c[..., 0].sum() for c in copies]
    mirrored = np.mean(np.array(centre_x) < 16)  # the original disc sits right of centre (x = 20)
    assert 0.25 < mirrored < 0.75
    assert name_seed("brain", 0) != name_seed("busbra", 0) and name_seed("brain", 0) != name_seed("brain", 1)
    assert name_seed("brain", 0) == name_seed("brain", 0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="N, H, W, C"):
        jittered_copies(np.zeros((4, 8, 8)), 1, seed=0)
    with pytest.raises(ValueError, match="copies"):
        jittered_copies(np.zeros((1, 8, 8, 1)), -1, seed=0)
