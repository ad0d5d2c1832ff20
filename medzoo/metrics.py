"""Image-quality and likelihood metrics that training, the codec and the evaluation suite share.

Everything here runs on numpy (and ``keras.ops`` for the VAE bound), so it works on
every Keras backend and without TensorFlow. The image metrics take float images with
shape (N, H, W, C) and return one value per image, so callers can average, bootstrap
or plot them. PSNR and SSIM follow ``tf.image.psnr`` / ``tf.image.ssim`` exactly
(Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, valid filtering), which the first
zoo's figures were measured with.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

LOG2 = math.log(2.0)

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_CHUNK_PIXELS = 1 << 22  # images are filtered in chunks of about this many pixels (bounded memory)
#: a model's batches over whole images hold at most this many pixels (four 1024 px radiographs): what
#: evaluation and test metrics pass through a network at once, so native-size images stay in memory
BATCH_PIXELS = 4 * 1024 * 1024


def batch_for(images, batch_size: int = 64) -> int:
    """``batch_size``, or fewer images of this size so that one batch holds at most :data:`BATCH_PIXELS` pixels."""
    shape = np.shape(images)
    return max(1, min(int(batch_size), BATCH_PIXELS // max(1, int(shape[1]) * int(shape[2]))))


def _as_batch(images) -> np.ndarray:
    array = np.asarray(images, np.float64)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise ValueError(f"expected images (N, H, W, C) or (N, H, W), got shape {array.shape}")
    return array


def psnr(reference, images, max_val=1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB, per image (``inf`` where the images are identical)."""
    a, b = _as_batch(reference), _as_batch(images)
    mse = np.square(a - b).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return (20.0 * math.log10(max_val) - 10.0 * np.log10(mse)).astype(np.float32)


def mae(reference, images) -> np.ndarray:
    """Mean absolute error, per image."""
    diff = np.abs(_as_batch(reference) - _as_batch(images))
    return diff.reshape(len(diff), -1).mean(axis=1).astype(np.float32)


def rmse(reference, images) -> np.ndarray:
    """Root-mean-square error, per image."""
    diff = _as_batch(reference) - _as_batch(images)
    return np.sqrt(np.square(diff).reshape(len(diff), -1).mean(axis=1)).astype(np.float32)


def _gaussian_1d(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-np.square(coords) / (2.0 * sigma**2))
    return g / g.sum()


def _blur_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (N, H, W, C) along H and W."""
    k = len(kernel)
    rows = np.lib.stride_tricks.sliding_window_view(x, k, axis=1) @ kernel
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=2) @ kernel


def ssim(reference, images, max_val=1.0) -> np.ndarray:
    """Structural similarity (Wang et al. 2004; Gaussian window 11, sigma 1.5), per image.

    The mean over positions and channels of luminance x contrast-structure, computed as
    ``tf.image.ssim`` does. Images must be at least 11 x 11.
    """
    a, b = _checked_pair(reference, images)
    return _ssim_parts(a, b, max_val)[0].astype(np.float32)


#: MS-SSIM's per-scale exponents (Wang, Simoncelli and Bovik 2003), finest scale first
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(reference, images, max_val=1.0) -> np.ndarray:
    """Multi-scale SSIM (Wang et al. 2003), per image: contrast-structure at each of five scales
    (each 2x2-averaged from the last), times luminance at the coarsest, weighted by
    :data:`MS_SSIM_WEIGHTS` as ``tf.image.ssim_multiscale`` does.

    Images too small for five scales (a side under 176 px) use the scales whose side is still
    at least 11 px, their weights renormalised to sum to one, so 128 px thumbnails get four.
    """
    a, b = _checked_pair(reference, images)
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and min(a.shape[1:3]) // 2 ** scales >= _SSIM_WINDOW:
        scales += 1
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    value = np.ones(len(a))
    for level, weight in enumerate(weights):
        full, cs = _ssim_parts(a, b, max_val)
        term = full if level == scales - 1 else cs
        value = value * np.maximum(term, 0.0) ** weight
        if level < scales - 1:
            a, b = _pool2(a), _pool2(b)
    return value.astype(np.float32)


def _checked_pair(reference, images) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_batch(reference), _as_batch(images)
    if a.shape != b.shape:
        raise ValueError(f"images of shape {b.shape} do not match the reference {a.shape}")
    if min(a.shape[1:3]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW}, got {a.shape[1:3]}")
    return a, b


def _pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of (N, H, W, C), odd edges dropped (as a 'valid' pool does)."""
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    x = x[:, :h, :w]
    return 0.25 * (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])


def _ssim_parts(a: np.ndarray, b: np.ndarray, max_val) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the mean SSIM and the mean contrast-structure term (float64), in bounded-memory chunks."""
    kernel = _gaussian_1d()
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    per_image = max(1, int(np.prod(a.shape[1:])))
    step = max(1, _SSIM_CHUNK_PIXELS // per_image)
    full, contrast = [], []
    for i in range(0, len(a), step):
        x, y = a[i:i + step], b[i:i + step]
        mx, my = _blur_valid(x, kernel), _blur_valid(y, kernel)
        num0, den0 = 2.0 * mx * my, mx**2 + my**2
        luminance = (num0 + c1) / (den0 + c1)
        num1, den1 = 2.0 * _blur_valid(x * y, kernel), _blur_valid(x * x + y * y, kernel)
        cs = (num1 - num0 + c2) / (den1 - den0 + c2)
        full.append((luminance * cs).mean(axis=(1, 2, 3)))
        contrast.append(cs.mean(axis=(1, 2, 3)))
    return np.concatenate(full), np.concatenate(contrast)


# ------------------------------------------------------------------- baseline
def bicubic_thumbnail(images, numbers: int, value_range=(0.0, 1.0)) -> tuple[np.ndarray, tuple[int, int]]:
    """Shrink images to a thumbnail of about ``numbers`` values (antialiased bicubic) and enlarge it back.

    The baseline a continuous latent must beat: a code of ``numbers`` values that any
    image viewer already has. Returns the enlarged images, clipped to ``value_range``,
    and the thumbnail size. Resized in numpy (:func:`bicubic_weights`), so the baseline
    is the same number on every Keras backend: ``keras.ops.image.resize`` is not (PyTorch's
    bicubic has another kernel and its own antialiasing, and scored this baseline up to
    0.2 dB higher than TensorFlow and JAX).
    """
    images = np.asarray(images, np.float32)
    _, h, w, c = images.shape
    scale = math.sqrt(numbers / (h * w * c))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = np.empty_like(images)
    for i in range(0, len(images), 64):
        out[i:i + 64] = resize_bicubic(resize_bicubic(images[i:i + 64], *size), h, w)
    return np.clip(out, *value_range), size


def resize_bicubic(images, height: int, width: int) -> np.ndarray:
    """Resize float images (N, H, W, C) to (N, height, width, C): Keys bicubic, antialiased when shrinking.

    numpy only (:func:`bicubic_weights`), so every backend and the codec's decoder get the same
    numbers; values are not clipped (bicubic overshoots a little at edges).
    """
    images = np.asarray(images, np.float32)
    _, h, w, _ = images.shape
    if (h, w) == (height, width):
        return images
    rows = bicubic_weights(h, height, antialias=height < h)
    cols = bicubic_weights(w, width, antialias=width < w)
    return np.einsum("yh,nhwc,xw->nyxc", rows, images, cols, optimize=True)


def bicubic_weights(size_in: int, size_out: int, antialias: bool = False) -> np.ndarray:
    """(size_out, size_in) matrix that resizes one axis with the Keys cubic (a = -0.5), pixel centres aligned.

    The definition of TensorFlow's and JAX's ``scale_and_translate`` resize: output pixel i
    samples the input at (i + 0.5) * size_in / size_out - 0.5; when shrinking with
    ``antialias`` the kernel is widened by the shrink factor (a low-pass filter); each row's
    weights are normalised to sum to one, which handles the borders.
    """
    inv_scale = size_in / size_out
    width = max(inv_scale, 1.0) if antialias else 1.0
    centres = (np.arange(size_out) + 0.5) * inv_scale - 0.5
    x = np.abs(centres[:, None] - np.arange(size_in)[None, :]) / width
    a = -0.5
    weights = np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                       np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- VAE likelihood
def discretized_gaussian_nll(x, mean, sigma, levels=256):
    """Negative log-likelihood in nats, per image, of ``levels``-level images under N(mean, sigma^2).

    Each pixel's probability is the Gaussian mass of its quantisation bin, with the end
    bins open to +-infinity, so this is a proper discrete likelihood of 8-bit images
    (the quantity behind "bits per dimension"). Tensors in, a tensor (N,) out.
    """
    from keras import ops

    x = ops.round(ops.cast(x, "float32") * (levels - 1)) / (levels - 1)
    mean = ops.cast(mean, "float32")
    half = 0.5 / (levels - 1)
    dist = math.sqrt(2.0) * sigma
    upper = ops.where(x >= 1.0 - half, ops.ones_like(x), 0.5 * (1.0 + ops.erf((x + half - mean) / dist)))
    lower = ops.where(x <= half, ops.zeros_like(x), 0.5 * (1.0 + ops.erf((x - half - mean) / dist)))
    log_p = ops.log(ops.maximum(upper - lower, 1e-12))
    return -ops.sum(ops.reshape(log_p, (ops.shape(x)[0], -1)), axis=1)


def vae_negative_elbo_bits(model, images, sigma, batch_size=64, seed=0) -> np.ndarray:
    """Negative ELBO in bits per dimension, per image, with a discretized Gaussian decoder.

    ``-ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z))``, estimated with one posterior
    sample; it upper-bounds ``-log2 p(x)`` of the 8-bit image. The decoder mean is the
    model's reconstruction and ``sigma`` a global scale (see :func:`fit_vae_sigma`), or a
    sequence of scales: then (len(sigma), N), from one encode and decode per image.

    Images that the model reconstructs in tiles (an any-size model's ``default_tile`` above
    ``auto_tile_pixels``) are measured as the tiled model sees them: cut into a grid of its tiles
    (the last row and column flush with the border), each tile its own posterior, and an image's
    bits per dimension the mean over its tiles. Whole, a 1024 px radiograph would give a latent
    that a crop-trained VAE's attention never saw, and an attention matrix of 16,384 squared.
    """
    images = np.asarray(images, np.float32)
    tile = _likelihood_tile(model, images.shape[1:3])
    if tile is None:
        return _negative_elbo_bits(model, images, sigma, batch_size, seed)
    from medzoo.models.tiling import tile_starts

    from medzoo.errors import DomainShiftWarning

    h, w = images.shape[1:3]
    grid = [(top, left) for top in tile_starts(h, tile, 0) for left in tile_starts(w, tile, 0)]
    with warnings.catch_warnings():  # a corner tile of air is not an image: the domain check is the caller's, on
        warnings.simplefilter("ignore", DomainShiftWarning)  # whole images (reconstruct, encode), not on tiles
        bits = [_negative_elbo_bits(model, images[:, top:top + tile, left:left + tile], sigma, batch_size, seed)
                for top, left in grid]
    return np.mean(bits, axis=0)


def _likelihood_tile(model, size) -> int | None:
    """The tile side a model reconstructs images of ``size`` (H, W) in, or None for whole images."""
    tile = getattr(model, "default_tile", None)
    if not getattr(model, "any_size", False) or tile is None or \
            int(size[0]) * int(size[1]) <= getattr(model, "auto_tile_pixels", float("inf")):
        return None
    return int(tile[0]) if min(size) >= tile[0] else None


def _negative_elbo_bits(model, images, sigma, batch_size, seed) -> np.ndarray:
    from keras import ops

    from medzoo.models.vae import gaussian_kl

    # through the model's inference path, compiled once per model (torch: no autograd graph; a
    # batch of 256 px images with one grew a mixture's test measurement past 24 GB), numpy
    # between the two halves, the decoder's output cropped to the encoded size
    images = np.ascontiguousarray(images, np.float32)
    batch_size = batch_for(images, batch_size)
    sigmas = np.atleast_1d(np.asarray(sigma, np.float64))
    dims = float(np.prod(images.shape[1:]))
    rng = np.random.default_rng(seed)
    means, log_vars = model.posterior(images, batch_size=batch_size, tile_size=None)
    out = []
    for i in range(0, len(images), batch_size):
        x, mean, log_var = images[i:i + batch_size], means[i:i + batch_size], log_vars[i:i + batch_size]
        z = mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape).astype(np.float32)
        logits_image = model.decode(z, batch_size=len(z), tile_size=None, output_size=x.shape[1:3]).astype(np.float32)
        kl = ops.convert_to_numpy(gaussian_kl(mean, log_var))
        out.append(np.stack([ops.convert_to_numpy(discretized_gaussian_nll(x, logits_image, float(s))) + kl
                             for s in sigmas]) / (dims * LOG2))
    bits = np.concatenate(out, axis=1)
    return bits[0] if np.ndim(sigma) == 0 else bits


def fit_vae_sigma(model, images, grid=(0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12)) -> float:
    """The decoder scale from ``grid`` that gives the best (lowest) bound on ``images`` (use validation data).

    The grid reaches half a grey level of an 8-bit image (0.005 of the range): a CT VAE's
    error is a few HU, 0.006 of the stored range, and a grid ending at 0.01 chose its edge.
    """
    scores = vae_negative_elbo_bits(model, images, list(grid)).mean(axis=1)
    return float(grid[int(np.argmin(scores))])


# ------------------------------------------------------------------ segmentation masks
def _as_masks(masks) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim == 2:
        masks = masks[None]
    return masks.astype(bool)


def dice(reference, predicted) -> np.ndarray:
    """Dice coefficient per image of binary masks (N, H, W); 1.0 where both are empty."""
    ref, pred = _as_masks(reference), _as_masks(predicted)
    inter = (ref & pred).sum(axis=(1, 2))
    total = ref.sum(axis=(1, 2)) + pred.sum(axis=(1, 2))
    return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 1.0)


def iou(reference, predicted) -> np.ndarray:
    """Intersection over union per image of binary masks; 1.0 where both are empty."""
    ref, pred = _as_masks(reference), _as_masks(predicted)
    inter = (ref & pred).sum(axis=(1, 2))
    union = (ref | pred).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mask_boundary(mask) -> np.ndarray:
    """The pixels of a 2-D mask with a 4-neighbour outside it (the image edge counts as outside)."""
    m = np.pad(np.asarray(mask, bool), 1)
    interior = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return np.asarray(mask, bool) & ~interior


def _directed_distances(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For each point of ``a`` (K, 2), the distance to the nearest point of ``b`` (M, 2)."""
    out = np.empty(len(a))
    for i in range(0, len(a), chunk):
        d2 = ((a[i:i + chunk, None, :] - b[None, :, :]) ** 2).sum(-1)
        out[i:i + chunk] = np.sqrt(d2.min(axis=1))
    return out


def _spacing(spacing, n: int) -> np.ndarray:
    """Pixel sizes as (n, 2) ``(dy, dx)`` rows from a scalar, (n,) per image, or (1 or n, 2)."""
    sp = np.asarray(spacing, np.float64)
    if sp.ndim == 0:
        return np.full((n, 2), float(sp))
    if sp.ndim == 1 and len(sp) == n:
        return np.repeat(sp[:, None], 2, axis=1)
    if sp.ndim == 2 and sp.shape[1] == 2 and len(sp) in (1, n):
        return np.broadcast_to(sp, (n, 2))
    raise ValueError(f"spacing must be a scalar, (N,), (1, 2) or (N, 2) for N = {n} images, got shape {sp.shape}")


def hd95(reference, predicted, spacing=1.0) -> np.ndarray:
    """95th-percentile Hausdorff distance per image between mask boundaries, in ``spacing`` units.

    ``spacing``: one pixel size for all images, one per image (N,), or ``(dy, dx)`` as
    (1, 2) or per image (N, 2), e.g. millimetres per pixel. The larger of the two directed 95th percentiles (as
    in MONAI); 0 where both masks are empty, NaN where only one is.
    """
    ref, pred = _as_masks(reference), _as_masks(predicted)
    spacing = _spacing(spacing, len(ref))
    out = np.empty(len(ref))
    for i, (r, p) in enumerate(zip(ref, pred)):
        if not r.any() and not p.any():
            out[i] = 0.0
            continue
        if not r.any() or not p.any():
            out[i] = np.nan
            continue
        a = np.argwhere(mask_boundary(r)) * spacing[i]
        b = np.argwhere(mask_boundary(p)) * spacing[i]
        out[i] = max(np.percentile(_directed_distances(a, b), 95), np.percentile(_directed_distances(b, a), 95))
    return out


def ellipse_circumference(masks, spacing=1.0) -> np.ndarray:
    """Circumference of the ellipse with each mask's second moments (HC18's head circumference), per image.

    A filled ellipse of semi-axes a, b has coordinate variances a^2/4 and b^2/4 along its
    axes, so the axes come from the eigenvalues of the foreground pixels' covariance;
    Ramanujan's approximation gives the perimeter. NaN for an empty mask.
    """
    masks = _as_masks(masks)
    spacing = np.broadcast_to(np.asarray(spacing, np.float64), (len(masks),))
    out = np.full(len(masks), np.nan)
    for i, m in enumerate(masks):
        points = np.argwhere(m).astype(np.float64)
        if len(points) < 3:
            continue
        eig = np.clip(np.linalg.eigvalsh(np.cov(points.T)), 0.0, None)
        b, a = 2.0 * np.sqrt(eig) * spacing[i]
        out[i] = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    return out
