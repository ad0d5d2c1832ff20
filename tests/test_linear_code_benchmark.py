"""The linear-code benchmark's block KLT: blocks in order, exact with every component, better the more it keeps."""


import numpy as np
import pytest
from conftest import import_benchmark


@pytest.fixture(scope="module")
def bench():
    return import_benchmark("linear_code")


def _smooth_images(rng, count, side=64):
    """Random smooth images (a few low-frequency cosines) plus a little noise, in [0, 1]."""
    y, x = np.mgrid[0:side, 0:side] / side
    images = []
    for _ in range(count):
        image = sum(rng.normal() * np.cos(np.pi * (rng.integers(0, 4) * x + rng.integers(0, 4) * y) + rng.uniform(0, 6))
                    for _ in range(6))
        image = image + 0.02 * rng.normal(size=image.shape)
        images.append((image - image.min()) / (image.max() - image.min()))
    return images


def test_blocks_tile_the_image_in_order(bench):
    image = np.arange(64.0).reshape(8, 8)
    b = bench.blocks(image, 4)
    assert b.shape == (4, 16)
    assert np.array_equal(b[1].reshape(4, 4), image[:4, 4:])  # second block: top right
    assert bench.blocks(np.zeros((9, 10)), 4).shape == (4, 16)  # partial blocks at the edges are left out


def test_the_klt_is_exact_with_every_component_and_climbs_with_what_it_keeps(bench):
    rng = np.random.default_rng(0)
    train, test = _smooth_images(rng, 12), _smooth_images(rng, 3)
    psnrs = [bench.klt_psnr(train, test, 8, keep) for keep in (1, 4, 16, 64)]
    assert psnrs == sorted(psnrs) and psnrs[0] < psnrs[2] - 3
    assert psnrs[-1] > 100  # all 64 components: the blocks come back (up to float rounding)
