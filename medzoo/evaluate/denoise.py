"""Denoising: a (denoising) autoencoder against the noisy input and classical filters, at several noise levels.

Noise: additive Gaussian with standard deviation ``sigma`` (in units of the [0, 1]
intensity range), clipped to [0, 1], seeded per level: the same corruption the
denoising models train on (``ConvAutoencoder(noise="gaussian")``).

Classical baselines, each tuned per noise level on separate tuning images (the
validation split) so that they are not handicapped by a fixed setting:

* ``gaussian``: Gaussian blur, its width chosen from :data:`GAUSSIAN_WIDTHS`;
* ``nlm``: non-local means (scikit-image, fast mode, 5 x 5 patches, 13 x 13 search
  window) given the true noise sigma, its filter strength ``h = f * sigma`` with
  ``f`` chosen from :data:`NLM_FACTORS`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import warnings

import numpy as np

from medzoo.errors import ConfigError, DependencyError, DomainShiftWarning
from medzoo.evaluate import plots
from medzoo.evaluate.common import (
    Result,
    format_table,
    given_or_loaded,
    load_split,
    model_label,
    model_version,
    prepare,
    progress,
    resolve_model,
)
from medzoo.metrics import psnr, ssim
from medzoo.evaluate.report import markdown_table

SIGMAS = (0.05, 0.1, 0.15, 0.2)
GAUSSIAN_WIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
NLM_FACTORS = (0.4, 0.6, 0.8, 1.0, 1.2)


def add_gaussian_noise(images, sigma, seed=0) -> np.ndarray:
    """``clip(x + sigma * N(0, 1), 0, 1)``, float32, reproducible with ``seed``."""
    x = np.asarray(images, np.float32)
    rng = np.random.default_rng(seed)
    return np.clip(x + sigma * rng.standard_normal(x.shape, dtype=np.float32), 0.0, 1.0)


def _skimage():
    try:
        from skimage.filters import gaussian
        from skimage.restoration import denoise_nl_means
    except ImportError as exc:
        raise DependencyError("the classical denoisers need scikit-image: pip install 'medzoo[eval]'") from exc
    return gaussian, denoise_nl_means


def gaussian_filter(images, width) -> np.ndarray:
    gaussian, _ = _skimage()
    return np.stack([gaussian(img, sigma=width, channel_axis=-1, preserve_range=True) for img in images]
                    ).astype(np.float32)


def nlm_filter(images, sigma, factor, enabled=None) -> np.ndarray:
    _, nlm = _skimage()
    out = [nlm(img, h=factor * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6, channel_axis=-1)
           for img in progress(images, f"non-local means sigma={sigma}", total=len(images), enabled=enabled)]
    return np.stack(out).astype(np.float32).reshape(np.shape(images))


def _tune(apply, clean, noisy, options) -> float:
    scores = [float(psnr(clean, apply(noisy, o)).mean()) for o in options]
    return options[int(np.argmax(scores))]


@dataclasses.dataclass(repr=False, eq=False)
class DenoiseResult(Result):
    """PSNR / SSIM of every method at every noise level.

    Attributes:
        table_rows: ``[{"sigma", "method", "psnr", "ssim", "psnr_std", "setting"}]``.
        examples: ``{sigma: {"clean": img, "noisy": img, method: img}}`` for the figure.
    """

    models: list
    source: str
    num_images: int
    sigmas: tuple
    rows: list
    examples: dict
    settings: dict
    task = "denoise"

    def to_dict(self, per_image=False) -> dict:
        rows = self.rows if per_image else [{k: v for k, v in r.items() if k != "per_image"} for r in self.rows]
        return {"task": self.task, "models": self.models, "data": self.source, "images": self.num_images,
                "noise": "additive Gaussian, std sigma of the [0, 1] range, clipped", "sigmas": list(self.sigmas),
                "results": rows, "settings": self.settings}

    def _methods(self):
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def table(self) -> str:
        methods = self._methods()
        lookup = {(r["sigma"], r["method"]): r for r in self.rows}
        rows = [[s, *(f"{lookup[(s, m)]['psnr']:.2f} / {lookup[(s, m)]['ssim']:.3f}" for m in methods)]
                for s in self.sigmas]
        return format_table(["sigma", *methods], rows,
                            title=f"denoising on {self.source} ({self.num_images} images): PSNR dB / SSIM")

    def markdown(self) -> str:
        """Noise level x method, ``PSNR / SSIM`` per cell; the best PSNR of each level in bold."""
        methods = self._methods()
        lookup = {(r["sigma"], r["method"]): r for r in self.rows}
        rows = []
        for s in self.sigmas:
            best = max(methods, key=lambda m: lookup[(s, m)]["psnr"])
            cells = [f"{lookup[(s, m)]['psnr']:.2f} / {lookup[(s, m)]['ssim']:.3f}" for m in methods]
            rows.append([f"{s:g}", *(f"**{c}**" if m == best else c for m, c in zip(methods, cells))])
        caption = (f"Denoising additive Gaussian noise (sigma in units of the [0, 1] range) on {self.source} "
                   f"({self.num_images} images): PSNR dB / SSIM; classical filters tuned per level on validation "
                   "images.")
        return f"{caption}\n\n{markdown_table(['sigma', *methods], rows)}"

    def plot(self, path) -> pathlib.Path:
        methods = ["clean", *self._methods()]
        rows = []
        titles = []
        for s in self.sigmas:
            ex = self.examples[s]
            rows.append((f"sigma {s:g}", [ex[m] for m in methods]))
            clean = ex["clean"][None]
            titles.append([m if m == "clean" else f"{m}\n{float(psnr(clean, ex[m][None])[0]):.1f} dB"
                           for m in methods])
        fig = plots.image_rows(rows, titles=titles, scale=1.5)
        fig.suptitle("denoising one test image (PSNR of this image)", fontsize=9)
        return plots.save(fig, path)

    def extra_figures(self) -> dict:
        return {"denoise_curves": self._plot_curves}

    def _plot_curves(self, path) -> pathlib.Path:
        fig = plots.figure(10, 3.8)
        axes = fig.subplots(1, 2)
        for i, m in enumerate(self._methods()):
            rows = [r for r in self.rows if r["method"] == m]
            for ax, metric in zip(axes, ("psnr", "ssim")):
                ax.plot([r["sigma"] for r in rows], [r[metric] for r in rows], "o-", color=plots.PALETTE[i], label=m)
        for ax, metric in zip(axes, ("PSNR (dB)", "SSIM")):
            ax.set_xlabel("noise sigma")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        trained = self.settings.get("training_noise", {})
        for s in {v for v in trained.values() if v}:
            for ax in axes:
                ax.axvline(s, color="grey", ls=":", lw=1)
        axes[0].legend(fontsize=8)
        return plots.save(fig, path)


def denoise(models, images=None, *, tune_images=None, sigmas=SIGMAS, split="test", dataset=None, max_images=None,
            max_tune=16, seed=0, classical=("gaussian", "nlm"), batch_size=64, progress_bars=None) -> DenoiseResult:
    """Denoise noisy copies of a split with the model(s) and classical filters; PSNR/SSIM per noise level.

    Args:
        models: one model or a list (e.g. ``["dae-chestxray-f4c3", "ae-chestxray-f4c3"]``: the denoising
            model and a plain one); zoo names, preset paths or instances with the same input shape.
        images: clean arrays to use instead of loading ``split``.
        tune_images: clean images to tune the classical filters on (default: ``max_tune``
            images of the validation split; with ``images`` given and no tuning images, the
            filters are tuned on the first evaluation images and the result says so).
        sigmas: noise levels (std in units of the [0, 1] range).
        classical: any of ``"gaussian"``, ``"nlm"``.
    """
    model_list = [resolve_model(m) for m in (models if isinstance(models, (list, tuple)) else [models])]
    unknown = set(classical) - {"gaussian", "nlm"}
    if unknown:
        raise ConfigError(f"unknown classical denoisers {sorted(unknown)}; known: 'gaussian', 'nlm'")
    first = model_list[0]
    x, _, source = given_or_loaded(first, images, None, split, dataset=dataset, max_images=max_images, seed=seed)
    notes = []
    if tune_images is not None:
        tune = prepare(first, tune_images)[:max_tune]
    elif images is None:
        tune, _ = load_split(first, "val", dataset=dataset, max_images=max_tune, seed=seed)
    else:
        tune = x[:max_tune]
        notes.append("classical filters were tuned on evaluation images (no tune_images given): optimistic for them")
    names = [model_label(m) for m in model_list]
    if len(set(names)) < len(names):  # e.g. a stage beside the entry it would replace: same name, tell them apart
        names = [f"{name} {model_version(m)}" if names.count(name) > 1 else name for name, m in zip(names, model_list)]
        names = [f"{name} #{i + 1}" if names.count(name) > 1 else name for i, name in enumerate(names)]
    rows, examples, chosen = [], {}, {}
    for level, sigma in enumerate(sigmas):
        noisy = add_gaussian_noise(x, sigma, seed=seed * 1000 + level)
        tune_noisy = add_gaussian_noise(tune, sigma, seed=seed * 1000 + 500 + level)
        outputs = {"noisy": (noisy, None)}
        if "gaussian" in classical:
            width = _tune(gaussian_filter, tune, tune_noisy, GAUSSIAN_WIDTHS)
            outputs["gaussian"] = (gaussian_filter(noisy, width), {"width": width})
        if "nlm" in classical:
            factor = _tune(lambda imgs, f: nlm_filter(imgs, sigma, f, enabled=False), tune, tune_noisy, NLM_FACTORS)
            outputs["nlm"] = (nlm_filter(noisy, sigma, factor, enabled=progress_bars), {"h": factor * sigma,
                                                                                         "h_over_sigma": factor})
        for name, m in zip(names, model_list):
            with warnings.catch_warnings():  # the noise is ours: the models' domain check would flag it
                warnings.simplefilter("ignore", DomainShiftWarning)
                outputs[name] = (m.reconstruct(noisy, batch_size=batch_size), None)
        examples[sigma] = {"clean": x[0], **{k: v[0][0] for k, v in outputs.items()}}
        for method, (out, setting) in outputs.items():
            p, s = psnr(x, out), ssim(x, out)
            rows.append({"sigma": float(sigma), "method": method, "psnr": float(p.mean()),
                         "psnr_std": float(p.std()), "ssim": float(s.mean()), "setting": setting,
                         "per_image": {"psnr": p, "ssim": s}})
            chosen[(sigma, method)] = setting
    settings = {"seed": seed, "tune_images": int(len(tune)), "classical": list(classical), "notes": notes,
                "training_noise": {n: (m.noise_strength if getattr(m, "noise", "none") == "gaussian" else None)
                                   for n, m in zip(names, model_list)}}
    return DenoiseResult(names, source, len(x), tuple(float(s) for s in sigmas), rows, examples, settings)
