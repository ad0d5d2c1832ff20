"""Mask metrics: Dice, IoU, HD95 in pixels and mm, and HC18's ellipse head circumference."""

import math

import numpy as np
import pytest

from medzoo.data import load_pixel_spacing
from medzoo.metrics import dice, ellipse_circumference, hd95, iou

YY, XX = np.mgrid[:256, :256]
ELLIPSE = (((YY - 128) / 60.0) ** 2 + ((XX - 120) / 90.0) ** 2) <= 1  # semi-axes 60 and 90 px


def test_overlap_and_boundary_distance_of_a_shifted_ellipse():
    shifted = np.roll(ELLIPSE, 3, axis=1)
    area, inter = ELLIPSE.sum(), (ELLIPSE & shifted).sum()
    assert dice(ELLIPSE, shifted)[0] == pytest.approx(2 * inter / (2 * area))
    assert iou(ELLIPSE, shifted)[0] == pytest.approx(inter / (ELLIPSE | shifted).sum())
    assert hd95(ELLIPSE, shifted)[0] == pytest.approx(3.0)          # a 3-pixel shift
    assert hd95(ELLIPSE, shifted, spacing=0.5)[0] == pytest.approx(1.5)   # in mm at 0.5 mm per pixel
    assert hd95(ELLIPSE, shifted, spacing=[[1.0, 0.25]])[0] == pytest.approx(0.75)  # (dy, dx)


def test_empty_masks():
    empty, full = np.zeros((1, 8, 8)), np.ones((1, 8, 8))
    assert dice(empty, empty)[0] == 1.0 and iou(empty, empty)[0] == 1.0 and hd95(empty, empty)[0] == 0.0
    assert dice(empty, full)[0] == 0.0 and np.isnan(hd95(empty, full)[0])
    assert np.isnan(ellipse_circumference(empty)[0])


def test_ellipse_circumference_matches_ramanujan_and_hc18_references(data_dir):
    exact = math.pi * (3 * 150 - math.sqrt((3 * 90 + 60) * (90 + 3 * 60)))
    assert ellipse_circumference(ELLIPSE)[0] == pytest.approx(exact, rel=2e-3)
    with np.load(data_dir / "hc18" / "hc18_256.npz") as f:
        masks, sizes, hw = f["test_masks"], f["test_pixel_size_mm_and_hc_mm"], f["test_original_hw"]
    spacing, reference = load_pixel_spacing("hc18_256", "test", side=256)
    # mm per pixel on the stored 256 px grid (SOURCES.md): the source was padded square, then resized
    np.testing.assert_allclose(spacing, sizes[:, 0] * hw.max(axis=1) / 256, rtol=1e-6)
    np.testing.assert_array_equal(reference, sizes[:, 1])
    assert load_pixel_spacing("busbra_256", "test", side=256) is None  # no pixel sizes in that file
    error = np.abs(ellipse_circumference(masks, spacing) - reference)
    assert error.mean() < 1.5  # the reference masks give the official circumferences (about 1.2 mm here)
