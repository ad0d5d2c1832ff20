"""Batches from in-memory arrays as a ``keras.utils.PyDataset``: numpy only, every Keras backend.

:class:`ArrayBatches` is what :func:`medzoo.data.from_arrays` returns when the Keras
backend is not TensorFlow (or when asked with ``pipeline="numpy"``), so JAX and PyTorch
train without TensorFlow installed. It preprocesses once, keeps the float32 images in
memory and, every epoch, reshuffles them and cuts fresh random crops.

It also serves what ``tf.data`` made awkward:

* mixtures: several datasets (each a list entry, sizes may differ) sampled in set
  proportions per epoch, e.g. four modalities in balance for a generalist model;
  without crops each batch comes from one source so its images share one size;
* targets that live on the image grid (segmentation masks) are cropped with their image;
* ``repeats``: several crops of every image per epoch, so an epoch on a fast
  accelerator is long enough to amortise its validation pass;
* crops at random scales (``min_side``): each crop is cut from a region ``f`` times
  larger and area-averaged down, ``f`` drawn log-uniformly between 1 (native
  resolution) and the factor that shrinks the image to ``min_side``, so one model sees
  anatomy at every scale from native size down to a thumbnail;
* sources whose images differ in size (a list of arrays per source, e.g. a folder
  dataset read by :func:`~medzoo.data.load_dataset`).

Randomness is a function of ``(seed, epoch, batch)``, so batches are the same whatever
order or thread Keras asks for them in, and a resumed run sees what it would have seen.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from medzoo.errors import ConfigError, DataError

_PREPROCESS_CHUNK = 256


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


class ArrayBatches(keras.utils.PyDataset):
    """Batches of preprocessed images (and labels or masks) for ``fit``, ``evaluate`` and ``predict``.

    Args:
        images: an array (N, H, W[, C]) or a list of them (a mixture; sizes may differ);
            a source may itself be a list of single images (H, W[, C]) of different sizes.
        spec: the :class:`~medzoo.data.PreprocessSpec` applied once, up front.
        labels: None, an array per source (class labels, or masks (N, H, W) on the image
            grid, which are cropped with the image), or a list matching ``images``.
        batch_size: images per batch.
        shuffle: a new order every epoch (else the stored order, one pass per epoch).
        seed: seeds the order and the crops.
        crop_size: yield random ``crop_size`` square crops instead of whole images.
        repeats: how many crops of each image one epoch holds (with ``crop_size``).
        min_side: with ``crop_size``: draw each crop at a random scale, from native
            resolution down to the image shrunk to ``min_side`` pixels on its shorter side
            (area averaging). None: native resolution only.
        weights: a mixture's share of each source in an epoch (default: by size, i.e.
            plain concatenation; ``"balanced"``: equal shares).
        drop_remainder: drop the last, smaller batch of an epoch.
        max_batch_pixels: whole images only: a batch holds at most this many pixels (at least one
            image), so validation on native-resolution images runs one 1024 px image at a time
            while thumbnails still go 32 at a time.
        workers, use_multiprocessing, max_queue_size: as in ``keras.utils.PyDataset``.
    """

    def __init__(self, images, spec, *, labels=None, batch_size=32, shuffle=False, seed=None, crop_size=None,
                 repeats=1, weights=None, drop_remainder=False, min_side=None, max_batch_pixels=None, workers=1, use_multiprocessing=False,
                 max_queue_size=10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        sources = _as_list(images)
        targets = [None] * len(sources) if labels is None else _as_list(labels)
        if not sources or len(targets) != len(sources):
            raise DataError(f"labels must match images: {len(sources)} image source(s), {len(targets)} label source(s)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(repeats) < 1:
            raise ConfigError(f"repeats must be >= 1, got {repeats!r}")
        self.images = [_preprocess(x, spec) for x in sources]
        self.targets = [None if y is None else _check_targets(np.asarray(y), x) for x, y in zip(self.images, targets)]
        if min_side is not None:
            if crop_size is None or int(min_side) < int(crop_size):
                raise ConfigError(f"min_side ({min_side}) needs crop_size, and must be at least crop_size ({crop_size})")
            if any(_spatial(y[0]) for y in self.targets if y is not None):
                raise ConfigError("crops at random scales (min_side) do not rescale masks; train segmenters at "
                                  "native scale")
        self.min_side = None if min_side is None else int(min_side)
        self.max_batch_pixels = None if max_batch_pixels is None else int(max_batch_pixels)
        self.labelled = labels is not None
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = 0 if seed is None else int(seed)
        self.crop_size = crop_size
        self.repeats = int(repeats)
        self.drop_remainder = bool(drop_remainder)
        if crop_size is not None:
            smallest = min(min(image.shape[:2]) for x in self.images for image in _shapes_of(x))
            if crop_size > smallest:
                raise DataError(f"crop_size {crop_size} is larger than the smallest preprocessed images ({smallest} px)")
        sizes = np.array([len(x) for x in self.images], np.float64)
        if weights is None:
            shares = sizes / sizes.sum()
        elif weights == "balanced":
            shares = np.full(len(sizes), 1.0 / len(sizes))
        else:
            shares = np.asarray(weights, np.float64)
            if len(shares) != len(sizes) or (shares < 0).any() or shares.sum() <= 0:
                raise ConfigError(f"weights must be one non-negative share per source, got {weights!r}")
            shares = shares / shares.sum()
        self.shares = shares
        # an epoch: as many samples as the sources hold, times repeats, split by share
        self.samples_per_epoch = int(sizes.sum()) * self.repeats
        self.epoch = 0
        self._plan = self._make_plan(0)

    # ----------------------------------------------------------------- plan
    def _make_plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """The epoch's batches as (source, image indices); crops are drawn per batch in ``__getitem__``."""
        rng = np.random.default_rng([self.seed, epoch])
        counts = _shares_to_counts(self.shares, self.samples_per_epoch) if len(self.images) > 1 else \
            [self.samples_per_epoch]
        per_source = []
        for s, count in enumerate(counts):
            n = len(self.images[s])
            if self.shuffle:
                reps = math.ceil(count / n)
                order = np.concatenate([rng.permutation(n) for _ in range(reps)])[:count]
            else:
                order = np.arange(count) % n
            per_source.append(order)
        if self.crop_size is not None and len(self.images) > 1:
            # crops share one shape: batches may mix sources
            source_ids = np.concatenate([np.full(len(o), s) for s, o in enumerate(per_source)])
            indices = np.concatenate(per_source)
            if self.shuffle:
                perm = rng.permutation(len(indices))
                source_ids, indices = source_ids[perm], indices[perm]
            plan = [(source_ids[i:i + self.batch_size], indices[i:i + self.batch_size])
                    for i in range(0, len(indices), self.batch_size)]
        else:
            plan = []
            for s, order in enumerate(per_source):
                size = self._whole_image_batch(s)
                plan += [(np.full(len(order[i:i + size]), s), order[i:i + size]) for i in range(0, len(order), size)]
            if self.shuffle:
                plan = [plan[i] for i in rng.permutation(len(plan))]
        if self.drop_remainder:
            plan = [p for p in plan if len(p[1]) == self.batch_size]
        return plan

    def _whole_image_batch(self, source: int) -> int:
        """Images per batch of whole (uncropped) images of one source: one at a time when their sizes differ,
        else ``batch_size`` capped so a batch holds at most ``max_batch_pixels``."""
        images = self.images[source]
        if isinstance(images, list):
            return 1
        if self.max_batch_pixels is None:
            return self.batch_size
        return max(1, min(self.batch_size, self.max_batch_pixels // int(np.prod(images.shape[1:3]))))

    def on_epoch_end(self):
        self.epoch += 1
        self._plan = self._make_plan(self.epoch)

    @property
    def num_batches(self) -> int:
        return len(self._plan)

    def __len__(self) -> int:
        return len(self._plan)

    def as_tf_dataset(self):
        """These batches, one pass in plan order, as ``tf.data`` whose height and width stay open (None).

        Under TensorFlow Keras fixes a ``PyDataset``'s shapes from its first two batches, so a
        mixture of whole images of several sizes (a generalist's validation split) would be
        refused at its first batch of another size. For evaluation: the epoch hooks do not run.
        """
        import tensorflow as tf

        x_spec = tf.TensorSpec((None, None, None, self.images[0][0].shape[-1]), tf.float32)
        if self.labelled:
            y = self.targets[0]
            signature = (x_spec, tf.TensorSpec((None,) * y.ndim, tf.as_dtype(y.dtype)))
        else:
            signature = x_spec
        dataset = tf.data.Dataset.from_generator(lambda: (self[i] for i in range(len(self))),
                                                 output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self)))

    # ---------------------------------------------------------------- batches
    def __getitem__(self, index):
        if index >= len(self._plan):
            raise IndexError(f"batch {index} of an epoch of {len(self._plan)}")
        sources, indices = self._plan[index]
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        xs, ys = [], []
        for s, i in zip(sources, indices):
            image, target = self.images[s][i], None if self.targets[s] is None else self.targets[s][i]
            if self.crop_size is not None:
                image, target = _crop(image, target, self.crop_size, rng, self.min_side)
            xs.append(image)
            ys.append(target)
        x = np.stack(xs)
        if not self.labelled:
            return x
        return x, np.stack(ys)


def _preprocess(images, spec):
    """A source's images preprocessed: one float32 array, or a list of (H, W, C) arrays when sizes differ."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise DataError("a source of images is empty")
        if len({np.shape(x) for x in images}) > 1:
            return [np.asarray(spec.apply(np.asarray(x)), np.float32) for x in images]
    images = np.asarray(images)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise DataError(f"images must be a non-empty batch (N, H, W) or (N, H, W, C); got shape {images.shape}")
    return np.concatenate([np.asarray(spec.apply(images[i:i + _PREPROCESS_CHUNK]), np.float32)
                           for i in range(0, len(images), _PREPROCESS_CHUNK)])


def _shapes_of(source):
    """Something whose items have ``.shape[:2]`` = each image's size (the array itself, or a one-item view)."""
    return source if isinstance(source, list) else source[:1]


def _check_targets(targets: np.ndarray, images) -> np.ndarray:
    if isinstance(images, list):
        if targets.ndim >= 3:
            raise DataError("masks need images of one size per source (stack them)")
        if len(targets) != len(images):
            raise DataError(f"labels have shape {targets.shape} but there are {len(images)} images")
        return targets
    if targets.ndim == 0 or len(targets) != len(images):
        raise DataError(f"labels have shape {targets.shape} but there are {len(images)} images")
    if targets.ndim >= 3 and targets.shape[1:3] != images.shape[1:3]:
        raise DataError(f"masks of {targets.shape[1]}x{targets.shape[2]} pixels do not match their images' "
                        f"{images.shape[1]}x{images.shape[2]} (after preprocessing: masks need a spec that keeps "
                        "the native size)")
    return targets


def _spatial(target) -> bool:
    return target is not None and np.ndim(target) >= 2


def _crop(image, target, size, rng, min_side=None):
    """A random ``size`` square crop; with ``min_side``, cut from a region ``f`` times larger and
    area-averaged down, ``f`` log-uniform in [1, shorter side / min_side]."""
    h, w = image.shape[:2]
    region = size
    if min_side is not None and min(h, w) > min_side:
        factor = float(np.exp(rng.uniform(0.0, np.log(min(h, w) / min_side))))
        region = min(min(h, w), int(round(size * factor)))
    top = int(rng.integers(0, h - region + 1))
    left = int(rng.integers(0, w - region + 1))
    patch = image[top:top + region, left:left + region]
    if region != size:
        return area_resize(patch, size), target
    if _spatial(target):
        target = target[top:top + size, left:left + size]
    return patch, target


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average an (H, W, C) float32 image down to ``size x size`` (Pillow's box filter, per channel)."""
    from PIL import Image

    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize((size, size), Image.BOX))
              for c in range(image.shape[-1])]
    return np.stack(planes, axis=-1).astype(np.float32)


def _shares_to_counts(shares: np.ndarray, total: int) -> list[int]:
    """Split ``total`` samples by ``shares`` into integers that add up to ``total`` (largest remainders)."""
    raw = shares * total
    counts = np.floor(raw).astype(int)
    for i in np.argsort(raw - counts)[::-1][: total - counts.sum()]:
        counts[i] += 1
    return [int(c) for c in counts]
