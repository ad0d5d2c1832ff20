"""Generation: samples from a VAE's prior and latent interpolations between real images.

Samples are ``decode(z)`` with ``z ~ N(0, temperature^2 I)`` (seeded). Interpolation
strips decode ``(1 - t) z_a + t z_b`` between the latent codes of two test images
(a normal and a pneumonia image when labels are known); for a VQ-VAE the
interpolated encoder outputs are quantised before decoding, for an autoencoder the
codes are interpolated directly (no prior: only strips, no samples).

Numbers reported with the pictures, so that a look is not the only evidence:

* sample intensity mean / std against the same statistics of real images;
* nearest-neighbour distance (MSE) of each sample to the reference images, next to
  the nearest-neighbour distance of held-out real images to the same reference set:
  samples much closer than real images hint at memorisation, much farther at blur
  or off-manifold samples;
* for a VAE, active latent units (posterior-mean variance over images above 0.01,
  Burda et al. 2016) out of the latent size;
* strip smoothness: mean absolute change between consecutive frames.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from medzoo.evaluate import plots
from medzoo.evaluate.common import Result, family_of, format_table, given_or_loaded, model_label, resolve_model
from medzoo.evaluate.judge import nearest_distances


def _nearest_mse(queries, reference) -> np.ndarray:
    """Each query's mean squared error to its nearest reference image."""
    distance, _ = nearest_distances(queries, reference)
    return distance ** 2 / np.prod(np.shape(queries)[1:])


@dataclasses.dataclass(repr=False, eq=False)
class GenerationResult(Result):
    """Prior samples (VAE only) and interpolation strips, with their summary numbers."""

    model: str
    source: str
    samples: np.ndarray | None
    strips: list
    strip_labels: list
    stats: dict
    notes: list
    task = "generation"

    def to_dict(self, per_image=False) -> dict:
        stats = {k: v for k, v in self.stats.items() if k != "per_sample_nn_mse"}
        d = {"task": self.task, "model": self.model, "data": self.source, "stats": stats, "notes": self.notes,
             "samples": 0 if self.samples is None else int(len(self.samples)),
             "interpolations": [{"from": a, "to": b, "steps": int(len(s))} for (a, b), s in
                                zip(self.strip_labels, self.strips)]}
        if per_image and "per_sample_nn_mse" in self.stats:
            d["per_image"] = {"sample_nn_mse": self.stats["per_sample_nn_mse"]}
        return d

    def table(self) -> str:
        rows = [[k, v] for k, v in self.stats.items() if not isinstance(v, (list, np.ndarray, dict))]
        return format_table(["quantity", "value"], rows, title=f"generation: {self.model}") + "".join(
            f"\nnote: {n}" for n in self.notes)

    def plot(self, path) -> pathlib.Path:
        steps = len(self.strips[0]) if self.strips else 8
        rows = []
        if self.samples is not None:
            for i in range(0, len(self.samples), steps):
                rows.append(("samples" if i == 0 else "", self.samples[i:i + steps]))
        for (a, b), strip in zip(self.strip_labels, self.strips):
            rows.append((f"{a} ->\n{b}", strip))
        fig = plots.image_rows(rows, scale=1.2)
        fig.suptitle(f"{self.model}: " + ("prior samples (top) and " if self.samples is not None else "")
                     + "latent interpolations (first and last frames: reconstructions)", fontsize=9)
        return plots.save(fig, path)


def generation(model, images=None, labels=None, *, n_samples=16, steps=8, pairs=3, temperature=1.0, seed=0,
               split="test", dataset=None, max_images=256, batch_size=64) -> GenerationResult:
    """VAE prior samples and latent interpolation strips, with sample statistics.

    Args:
        model: a VAE (samples and strips) or an autoencoder / VQ-VAE (strips only).
        images, labels: real images for the strips and the reference statistics
            (default: ``max_images`` images of ``split``).
        n_samples: prior samples (VAE only); steps: frames per strip; pairs: strips.
        temperature: scale of the prior samples' standard deviation.
    """
    model = resolve_model(model)
    x, y, source = given_or_loaded(model, images, labels, split, dataset=dataset, max_images=max_images, seed=seed)
    rng = np.random.default_rng(seed)
    family = family_of(model)
    notes, stats = [], {}
    half = len(x) // 2
    reference, held_out = (x[:half], x[half:]) if len(x) >= 4 else (x, x)

    samples = None
    if family == "vae":
        shape = model.latent_shape
        if shape[0] is None:  # any-size VAE: draw latents of the real images' size
            shape = (*model.latent_size(*x.shape[1:3]), shape[-1])
        z = rng.standard_normal((n_samples, *shape)).astype(np.float32) * temperature
        samples = model.decode(z, batch_size=batch_size)
        means = model.encode(x, batch_size=batch_size).reshape(len(x), -1)
        active = int((means.var(axis=0) > 0.01).sum())
        nn_samples = _nearest_mse(samples, reference)
        nn_real = _nearest_mse(held_out, reference)
        stats.update({
            "samples": int(n_samples), "temperature": float(temperature),
            "sample_intensity_mean": float(samples.mean()), "real_intensity_mean": float(x.mean()),
            "sample_intensity_std": float(samples.std()), "real_intensity_std": float(x.std()),
            "sample_nn_mse_mean": float(nn_samples.mean()), "real_nn_mse_mean": float(nn_real.mean()),
            "active_units": active, "latent_size": int(means.shape[1]),
            "per_sample_nn_mse": nn_samples,
        })
    else:
        notes.append(f"a {family} has no prior to sample from: interpolation strips only")

    # pairs: a normal and a pneumonia image when labels are known, otherwise random images
    if y is not None and y.ndim == 1 and set(np.unique(y)) >= {0, 1}:
        a_idx = rng.choice(np.flatnonzero(y == 0), size=pairs)
        b_idx = rng.choice(np.flatnonzero(y == 1), size=pairs)
        names = [("normal", "pneumonia")] * pairs
    else:
        a_idx, b_idx = rng.choice(len(x), size=pairs), rng.choice(len(x), size=pairs)
        names = [(f"image {a}", f"image {b}") for a, b in zip(a_idx, b_idx)]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    strips = []
    for a, b in zip(a_idx, b_idx):
        if family == "vqvae":
            za, zb = model.encode_continuous(x[[a, b]], batch_size=batch_size)
            mix = (1 - t)[:, None, None, None] * za + t[:, None, None, None] * zb
            import keras

            codes = keras.ops.convert_to_numpy(model.quantizer.nearest_codes(keras.ops.convert_to_tensor(mix)))
            strips.append(model.decode(codes, batch_size=batch_size))
        else:
            za, zb = model.encode(x[[a, b]], batch_size=batch_size)
            shape = (-1,) + (1,) * za.ndim
            strips.append(model.decode((1 - t).reshape(shape) * za + t.reshape(shape) * zb, batch_size=batch_size))
    smooth = [float(np.abs(np.diff(s, axis=0)).mean()) for s in strips]
    stats["strip_mean_frame_change"] = float(np.mean(smooth)) if smooth else None
    return GenerationResult(model_label(model), source, samples, strips, names, stats, notes)
