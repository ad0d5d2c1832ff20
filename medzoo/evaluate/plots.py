"""Figures without global state: matplotlib's object API on the Agg canvas (no pyplot, no backend switch).

Every task's ``plot(path)`` goes through :func:`figure` and :func:`save`, so
plotting works headless, in threads and next to a user's interactive backend.
"""

from __future__ import annotations

import pathlib

import numpy as np

from medzoo.errors import DependencyError

#: one colour per method, stable across figures
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def figure(width: float, height: float):
    """A matplotlib ``Figure`` attached to an Agg canvas."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise DependencyError("plots need matplotlib: pip install 'medzoo[eval]'") from exc
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path) -> pathlib.Path:
    """Write ``fig`` as a PNG (parent folders created) and return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def show_image(ax, image, title=None, cmap="gray", vmin=0.0, vmax=1.0):
    """One grey (H, W[, 1]) or RGB image on ``ax``, without ticks."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(image, cmap=cmap if image.ndim == 2 else None, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def image_rows(rows: list[tuple[str, np.ndarray]], titles=None, path=None, cmaps=None, vranges=None, scale=1.3):
    """A grid with one labelled row per entry of ``rows`` (label, images (N, H, W[, C])); returns the figure."""
    n_cols = max(len(images) for _, images in rows)
    title_lines = max((str(t).count("\n") + 1 for row in (titles or []) if row for t in row), default=0)
    fig = figure(scale * n_cols + 0.8, (scale + 0.18 * title_lines) * len(rows) + 0.3)
    axes = fig.subplots(len(rows), n_cols, squeeze=False,
                        gridspec_kw={"hspace": 0.12 + 0.22 * title_lines, "wspace": 0.08})
    for r, (label, images) in enumerate(rows):
        cmap = (cmaps or {}).get(label, "gray")
        vmin, vmax = (vranges or {}).get(label, (0.0, 1.0))
        for c in range(n_cols):
            ax = axes[r, c]
            if c < len(images):
                show_image(ax, images[c], titles[r][c] if titles and titles[r] else None, cmap, vmin, vmax)
            else:
                ax.axis("off")
        if len(label) > 14 or "\n" in label:  # long labels read horizontally, left of the row
            axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center", labelpad=6)
        else:
            axes[r, 0].set_ylabel(label, fontsize=9)
    if path is not None:
        save(fig, path)
    return fig


def log_rate_axis(ax):
    """A log-scaled x axis with plain-number tick labels (0.1, 0.2, 0.5, 1, ...) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


# ------------------------------------------------- pixel grids (no matplotlib)
def montage(rows, *, pad: int = 2, value_range=(0.0, 1.0), background: int = 255) -> np.ndarray:
    """Images laid out in rows at their own pixel size, as one uint8 array (no matplotlib needed).

    Args:
        rows: a list of rows, each a sequence of images (H, W) or (H, W, C) with C 1 or 3,
            all of one size, with values in ``value_range`` (clipped).
        pad: pixels of ``background`` between images and around the grid.

    Returns:
        uint8 (rows * (H + pad) + pad, cols * (W + pad) + pad), or with a last axis of 3
        when any image is RGB.
    """
    from medzoo.data import to_uint8

    rows = [[np.asarray(image, dtype=np.float32) for image in row] for row in rows]
    rows = [[image if image.ndim == 3 else image[..., None] for image in row] for row in rows if len(row)]
    if not rows:
        raise ValueError("montage needs at least one image")
    h, w = rows[0][0].shape[:2]
    channels = 3 if any(image.shape[-1] == 3 for row in rows for image in row) else 1
    cols = max(len(row) for row in rows)
    grid = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, channels), background, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image.shape[:2] != (h, w):
                raise ValueError(f"montage images must share one size; got {image.shape[:2]} and {(h, w)}")
            pixels = to_uint8(image, value_range)
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            grid[top:top + h, left:left + w] = np.broadcast_to(pixels, (h, w, channels))
    return grid[..., 0] if channels == 1 else grid


def save_png(pixels, path) -> pathlib.Path:
    """Write a uint8 (H, W) or (H, W, 3) array as a PNG (parent folders created); returns the path."""
    from PIL import Image

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path, format="PNG", optimize=True)
    return path
