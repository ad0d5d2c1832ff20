"""Mask post-processing: connected regions, hole filling, and the largest region per class."""

import numpy as np

from medzoo.models.mask_cleanup import component_labels, fill_holes, largest_region


def test_component_labels_counts_4_connected_regions():
    mask = np.zeros((8, 10), bool)
    mask[1:4, 1:4] = True          # a square
    mask[5:7, 6:9] = True          # a bar
    mask[4, 4] = True              # touches the square only diagonally: its own region
    labels = component_labels(mask)
    assert labels.max() == 3 and (labels > 0).sum() == mask.sum()
    assert len(np.unique(labels[1:4, 1:4])) == 1 and labels[4, 4] not in (labels[1, 1], labels[5, 6])
    spiral = np.zeros((9, 9), bool)  # one long snaking region
    spiral[[0, 2, 4, 6, 8], :] = True
    spiral[1, 8] = spiral[3, 0] = spiral[5, 8] = spiral[7, 0] = True
    assert component_labels(spiral).max() == 1


def test_fill_holes_fills_enclosed_background_only():
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False                   # a hole
    open_ring = ring.copy()
    open_ring[4, 2:5] = False            # a channel to the outside: not a hole
    assert fill_holes(ring)[4, 4] and fill_holes(ring).sum() == 25
    assert np.array_equal(fill_holes(open_ring), open_ring)


def test_largest_region_keeps_one_filled_region_per_class():
    labels = np.zeros((2, 12, 12), np.uint8)
    labels[0, 2:9, 2:9] = 1
    labels[0, 5, 5] = 0                 # hole in the head
    labels[0, 10:12, 10:12] = 1         # stray blob
    labels[1, 1:3, 1:3] = 2             # a small class-2 region
    labels[1, 5:10, 5:10] = 2           # the large class-2 region
    labels[1, 7, 7] = 1                 # class 1 inside class 2: not overwritten
    out = largest_region(labels, classes=2)
    assert out[0].sum() == 49 and out[0, 5, 5] == 1 and out[0, 10:, 10:].sum() == 0
    assert (out[1] == 2).sum() == 24 and out[1, 7, 7] == 1 and out[1, 1:3, 1:3].sum() == 0
    assert np.array_equal(largest_region(np.zeros((1, 4, 4), np.uint8)), np.zeros((1, 4, 4), np.uint8))
