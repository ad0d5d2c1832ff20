"""Evaluation: what the zoo's models are good for, measured against baselines in the same run.

Each task is a function returning a small result object with ``to_dict()``,
``table()``, ``plot(path)`` (a PNG) and ``save(folder)`` (``results.json`` + PNGs):

* :func:`reconstruction` - PSNR, SSIM and MAE over a split; input / reconstruction / error grid.
* :func:`compression` - VQ-VAE streams (``medzoo.compress``) against JPEG, JPEG 2000, WebP,
  JPEG XL: rate-distortion curves and Bjontegaard deltas.
* :func:`anomaly` - reconstruction error / negative ELBO of a model of normal images as a
  pneumonia score: AUROC with bootstrap intervals, against mean-image and PCA baselines.
* :func:`probe` - logistic regression on frozen encoder features against a pixel probe
  and a supervised CNN.
* :func:`denoise` - denoising autoencoder against the noisy input, Gaussian blur and
  non-local means at several noise levels.
* :func:`generation` - VAE prior samples and latent interpolation strips.
* :func:`prior_generation` - a latent prior's samples judged against real images: Fréchet
  distances, label fidelity, train-on-synthetic, memorisation, augmentation at few labels.
* :func:`segmentation` - Dice, IoU and HD95 per image (mm where known), HC18's head
  circumference error, overlays of the worst and best images.

Around the tasks: :func:`write_report` (results -> ``metrics.json``, figures and
``report.md``), :func:`demo` (a bundled model on the sample X-rays shipped in the package),
and the file-level functions behind the command line (:func:`reconstruct_files`,
:func:`encode_files`, :func:`compress_files`, :func:`decompress_file`).

The module itself is callable: ``medzoo.evaluate("ae-chestxray", "reconstruction",
output_dir="out")`` runs a task by name (see :func:`evaluate`), and
``medzoo.evaluate.reconstruction(...)`` calls a task directly.
"""

from __future__ import annotations

import sys
import types

from medzoo.errors import ConfigError
from medzoo.evaluate.anomaly import AnomalyResult, anomaly
from medzoo.codec.stream import BitstreamError, compress, decompress, read_header
from medzoo.evaluate.common import Result
from medzoo.evaluate.compression import CompressionResult, compression, zoo_vqvae_models
from medzoo.evaluate.demo import DemoResult, demo
from medzoo.evaluate.denoise import DenoiseResult, denoise
from medzoo.codec.entropy import EntropyModel, fit_entropy_model
from medzoo.evaluate.files import compress_files, decompress_file, encode_files, reconstruct_files, segment_files
from medzoo.evaluate.generation import GenerationResult, generation
from medzoo.evaluate.prior_generation import PriorGenerationResult, prior_generation
from medzoo.evaluate.synthetic import generate_files
from medzoo.evaluate.probe import ProbeResult, probe
from medzoo.evaluate.reconstruction import ReconstructionResult, reconstruction
from medzoo.evaluate.report import write_report
from medzoo.evaluate.segmentation import SegmentationResult, segmentation
from medzoo.evaluate.stats import auroc, bd_rate, bootstrap_ci, roc_curve

#: task name -> function
TASKS = {
    "reconstruction": reconstruction,
    "compression": compression,
    "anomaly": anomaly,
    "probe": probe,
    "denoise": denoise,
    "generation": generation,
    "prior_generation": prior_generation,
    "segmentation": segmentation,
}


def evaluate(model, task: str = "reconstruction", *, output_dir=None, data=None, **options) -> Result:
    """Run one evaluation task on a model and optionally write ``results.json`` and the figures.

    Args:
        model: a zoo name, preset path or model (for ``compression`` and ``denoise``
            also a list of them).
        task: one of :data:`TASKS`.
        output_dir: folder for ``results.json`` and the PNG figures (nothing written when None).
        data: what to evaluate on instead of the model's own dataset: an npz name or path
            (its ``split`` is loaded), a folder of image files (DICOM, PNG, JPEG; class
            subfolders give labels), or ``"samples"`` (the sample X-rays shipped in the
            package); see :func:`~medzoo.evaluate.files.data_options`.
        **options: the task function's keyword arguments (e.g. ``max_images=64``).

    Returns:
        The task's result object.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown evaluation task {task!r}; tasks: {', '.join(TASKS)}")
    if data is not None:
        from medzoo.evaluate.files import data_options

        model, data_kwargs, described = data_options(model, task, data)
        options = {**options, **data_kwargs}
    result = TASKS[task](model, **options)
    if data is not None and described and hasattr(result, "source"):
        result.source = described  # instead of "arrays given by the caller"
    if output_dir is not None:
        result.save(output_dir)
    return result


class _CallableModule(types.ModuleType):
    """Makes ``medzoo.evaluate(...)`` run :func:`evaluate` while ``medzoo.evaluate.<task>`` stays a module attribute."""

    def __call__(self, *args, **kwargs):
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = [
    "TASKS", "AnomalyResult", "BitstreamError", "CompressionResult", "DemoResult", "DenoiseResult", "EntropyModel",
    "GenerationResult", "ProbeResult", "ReconstructionResult", "Result", "SegmentationResult", "anomaly", "auroc", "bd_rate",
    "bootstrap_ci", "compress", "compress_files", "compression", "decompress", "decompress_file", "demo", "denoise",
    "encode_files", "evaluate", "fit_entropy_model", "generate_files", "generation", "PriorGenerationResult",
    "prior_generation", "probe", "read_header", "reconstruct_files",
    "reconstruction", "segment_files", "segmentation", "roc_curve", "write_report", "zoo_vqvae_models",
]
