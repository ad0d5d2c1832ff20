"""Files in, files out: what the ``medzoo reconstruct / encode / compress / decompress`` commands do.

Inputs are image files of any kind the data layer reads (DICOM recognised by content,
PNG, JPEG, NPY) and folders of them; each is preprocessed with the model's own
:class:`~medzoo.data.PreprocessSpec` (:func:`medzoo.data.read_images`), so any size and
bit depth works. Outputs are plain files: PNGs, ``.npy``/``.npz`` arrays and medzoo
streams (``.mzc``, see :mod:`medzoo.codec`).

Example:
    >>> records = medzoo.evaluate.reconstruct_files("vae-chestxray", ["scan.dcm", "xray.png"], "out")
    >>> [(r["input"], round(r["psnr"], 1)) for r in records]
"""

from __future__ import annotations

import contextlib
import logging
import math
import pathlib
import warnings
from typing import Any, NamedTuple

import numpy as np

from medzoo.data.preprocess import to_display
from medzoo.errors import ConfigError, DataError, DomainShiftWarning
from medzoo.evaluate import plots
from medzoo.codec.stream import (
    DEFAULT_KIND,
    DEFAULT_MODEL,
    HYPERPRIOR_FORMAT,
    LOSSY_PIXEL_MODES,
    PIXEL_MODES,
    compress,
    decompress,
    decompress_codes,
    read_header,
    read_stream_file,
)
from medzoo.evaluate.common import progress, resolve_model
from medzoo.metrics import ellipse_circumference, mae, mask_boundary, psnr, ssim

#: |error| shown white in the error maps, as a fraction of the value range
ERROR_RANGE = 0.25

log = logging.getLogger("medzoo.evaluate")


def value_range_of(model) -> tuple[float, float]:
    """The (low, high) range of the model's inputs, from its preprocessing spec ((0, 1) without one)."""
    spec = getattr(model, "preprocess_spec", None)
    return tuple(spec.value_range) if spec is not None else (0.0, 1.0)


def error_map(inputs, reconstructions, value_range=(0.0, 1.0), error_range: float = ERROR_RANGE) -> np.ndarray:
    """|input - reconstruction| (mean over channels) mapped into ``value_range`` for display.

    ``low`` of the range is no error, ``high`` an error of ``error_range`` times the
    range's width or more; the maps can go into one :func:`~medzoo.evaluate.plots.montage`
    with the images.
    """
    low, high = value_range
    error = np.abs(np.asarray(inputs, np.float32) - np.asarray(reconstructions, np.float32))
    error = error.mean(axis=-1, keepdims=True)
    return low + np.clip(error / error_range, 0.0, high - low)


def read_model_inputs(model, inputs) -> tuple[np.ndarray, list]:
    """Files and folders -> ``(model inputs (N, H, W, C), refs)`` with the model's preprocessing."""
    from medzoo.data import read_images

    spec = getattr(model, "preprocess_spec", None)
    if spec is None:
        raise ConfigError("this model carries no preprocessing spec, so it cannot read image files; "
                          "load it with medzoo.load or set model.preprocess_spec")
    files_progress = (lambda files: progress(files, "reading images", total=len(files)))
    return read_images(inputs, spec, progress=files_progress)


def _in_batches(fn, x, batch_size, desc):
    steps = range(0, len(x), batch_size)
    return np.concatenate([fn(x[i:i + batch_size]) for i in progress(steps, desc, total=len(steps))])


def _unique_paths(output_dir: pathlib.Path, stems, suffix: str) -> list[pathlib.Path]:
    """One output path per stem; a stem seen before gets ``-2``, ``-3``, ... (two folders, same file name)."""
    seen, paths = {}, []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        paths.append(output_dir / (f"{stem}{suffix}" if seen[stem] == 1 else f"{stem}-{seen[stem]}{suffix}"))
    return paths


def _native_inputs(model, inputs):
    """Files and folders -> ``(image (1, H, W, C), ref)`` one by one, each at its own size (any-size models)."""
    from medzoo.data import image_files, iter_images

    spec = getattr(model, "preprocess_spec", None)
    if spec is None:
        raise ConfigError("this model carries no preprocessing spec, so it cannot read image files; "
                          "load it with medzoo.load or set model.preprocess_spec")
    files = image_files(inputs)
    for image, ref in iter_images(files, spec, progress=lambda f: progress(f, "images", total=len(files))):
        yield image[None], ref


@contextlib.contextmanager
def domain_check_by_file(model):
    """Check each input file against the model's training data and warn once, naming the files that look unlike it.

    A model warns per call (``N of M image(s) look unlike ...``); a command that calls it once
    per file would say "1 of 1" for each and name none. Inside this context the model's own
    warning is silenced; ``check(images, refs)`` (which returns the images) records the files
    flagged, and on leaving one :class:`~medzoo.DomainShiftWarning` counts the inputs and names them.
    """
    profile = getattr(model, "domain_profile", None)
    flagged, counted = [], [0]

    def check(images, refs):
        counted[0] += len(refs)
        if profile is not None and min(images.shape[1:3]) >= 16:
            flagged.extend(str(ref) for ref, unlike in zip(refs, profile.unfamiliar(images)) if unlike)
        return images

    with warnings.catch_warnings():
        # the model's per-call statistics warning only: its size warning still speaks
        warnings.filterwarnings("ignore", message=r"\d+ of \d+ image\(s\) look unlike", category=DomainShiftWarning)
        yield check
    if flagged:
        named = ", ".join(flagged[:8]) + (f" and {len(flagged) - 8} more" if len(flagged) > 8 else "")
        trained = getattr(profile, "fitted_on", "") or "its training images"
        warnings.warn(f"{len(flagged)} of {counted[0]} input(s) look unlike this model's training data ({trained}) in "
                      f"their intensity and texture statistics: {named}. Another modality or acquisition? Expect a "
                      "domain shift (they still run; fine-tune on such images, or pick a model trained on them)",
                      DomainShiftWarning, stacklevel=3)


def reconstruct_files(model, inputs, output_dir, *, batch_size: int = 32, error_range="auto") -> list:
    """Reconstruct image files: per image the reconstruction, and a comparison PNG of input | reconstruction | |error|.

    Any-size models work at each file's native resolution (large images in tiles); fixed-size
    models at their input size.

    Args:
        model: a zoo name, preset path or model.
        inputs: files and folders (see :func:`medzoo.data.image_files`).
        output_dir: gets ``<stem>_reconstruction.png`` (the reconstruction alone) and
            ``<stem>_comparison.png`` per image (frames of a stack: ``<stem>_f<frame>_...``).
        error_range: the |error| (fraction of the value range) shown white in the error panel;
            ``"auto"``: each image's 99th percentile of |error| (at least 0.01), so the panel shows
            where the errors are however small they are.

    Returns:
        One dict per image: ``input`` (the file, and frame), ``output`` (the reconstruction PNG),
        ``comparison`` (the three-panel PNG), ``error_white_at`` (the error shown white), ``psnr``
        (dB), ``ssim``, ``mae``, all measured on the preprocessed input, and ``size`` (H, W); a model
        whose spec is in Hounsfield units (CT) adds ``mae_hu``, the mean absolute error in HU.
    """
    model = resolve_model(model)
    low, high = value_range_of(model)
    spec = getattr(model, "preprocess_spec", None)
    hu_per_value = spec.units_per_value if spec is not None and getattr(spec, "units", None) == "HU" else None
    output_dir = pathlib.Path(output_dir)
    with domain_check_by_file(model) as check:
        if getattr(model, "any_size", False):
            pairs = [(x, ref, model.reconstruct(check(x, [ref]), batch_size=batch_size))
                     for x, ref in _native_inputs(model, inputs)]
        else:
            x, refs = read_model_inputs(model, inputs)
            check(x, refs)
            rec = _in_batches(lambda b: model.reconstruct(b, batch_size=batch_size), x, batch_size, "reconstructing")
            pairs = [(x[i:i + 1], refs[i], rec[i:i + 1]) for i in range(len(x))]
    outputs = _unique_paths(output_dir, [ref.stem for _, ref, _ in pairs], "_reconstruction.png")
    records = []
    for (x, ref, rec), output in zip(progress(pairs, "writing PNGs", total=len(pairs)), outputs):
        white = error_range
        if white == "auto":
            error = np.abs(x - rec).mean(axis=-1) / (high - low)
            white = max(0.01, float(np.percentile(error, 99)))
        comparison = output.with_name(output.name[: -len("_reconstruction.png")] + "_comparison.png")
        errors = error_map(x, rec, (low, high), white)
        plots.save_png(plots.montage([[x[0], rec[0], errors[0]]], value_range=(low, high)), comparison)
        plots.save_png(to_display(rec[0], (low, high)), output)
        records.append({"input": str(ref), "output": str(output), "comparison": str(comparison),
                        "error_white_at": round(white, 4), "size": list(rec.shape[1:3]),
                        "psnr": float(psnr(x, rec, max_val=high - low)[0]),
                        "ssim": float(ssim(x, rec, max_val=high - low)[0]), "mae": float(mae(x, rec)[0])})
        if hu_per_value is not None:
            records[-1]["mae_hu"] = records[-1]["mae"] * hu_per_value
    return records


def overlay(image, labels, value_range=(0.0, 1.0)) -> np.ndarray:
    """A grey image (H, W, 1) with each labelled region tinted and its boundary drawn: uint8 (H, W, 3)."""
    grey = to_display(image, value_range)
    grey = grey[..., 0] if grey.ndim == 3 else grey
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    colours = np.array([[230, 40, 40], [40, 160, 230], [60, 200, 80], [230, 170, 30]], np.float32)
    for c in np.unique(labels[labels > 0]):
        region = labels == c
        colour = colours[(int(c) - 1) % len(colours)]
        rgb[region] = 0.65 * rgb[region] + 0.35 * colour
        rgb[mask_boundary(region)] = colour
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _spacing_of(ref, given):
    """(row, column) mm per pixel: the one given, else the DICOM file's PixelSpacing, else the
    ``pixel_spacing_mm`` a ``manifest.json`` beside the file states for it (medzoo's samples), else None."""
    if given is not None:
        return (float(given), float(given)) if np.ndim(given) == 0 else tuple(float(v) for v in given)
    from medzoo.data.dicom import is_dicom, read_dicom_header

    path = pathlib.Path(ref.path if hasattr(ref, "path") else ref[0])
    if is_dicom(path):
        return read_dicom_header(path)["pixel_spacing"]
    stated = _folder_manifest(path.parent).get(path.name, {}).get("pixel_spacing_mm")
    return None if stated is None else (float(stated), float(stated))


def _folder_manifest(folder: pathlib.Path) -> dict:
    """``{file name: entry}`` of a ``manifest.json`` in ``folder`` listing ``images`` (medzoo's sample sets)."""
    import json

    try:
        listed = json.loads((folder / "manifest.json").read_text()).get("images", [])
    except (OSError, ValueError, AttributeError):
        return {}
    return {item["file"]: item for item in listed if isinstance(item, dict) and "file" in item}


def _masks_of_other_inputs(files, exclude=()) -> tuple[list, list]:
    """``(kept, skipped)``: files matching an ``exclude`` glob, or that are the masks of other inputs (named
    ``<image stem>_mask.*``, or listed as an image's ``mask`` in a ``manifest.json`` beside them), are skipped."""
    import fnmatch

    stems = {(f.parent, f.stem) for f in files}
    kept, skipped = [], []
    for f in files:
        listed_as_mask = any(item.get("mask") == f.name for item in _folder_manifest(f.parent).values())
        named_as_mask = f.stem.endswith("_mask") and (f.parent, f.stem[: -len("_mask")]) in stems
        excluded = any(fnmatch.fnmatch(f.name, pattern) or fnmatch.fnmatch(str(f), pattern) for pattern in exclude)
        (skipped if listed_as_mask or named_as_mask or excluded else kept).append(f)
    return kept, skipped


def segment_files(model, inputs, output_dir, *, pixel_spacing=None, circumference=None, threshold=0.5,
                  largest_region=None, batch_size: int = 8, exclude=()) -> list:
    """Segment image files at native resolution: per image a mask PNG, an overlay PNG, and a CSV row.

    Args:
        model: a segmenter (zoo name, preset path or model).
        inputs: files and folders (DICOM by content, PNG, JPEG, NPY).
        output_dir: gets ``<stem>_mask.png`` (0/255, or the class index), ``<stem>_overlay.png``
            and ``segment.csv``.
        pixel_spacing: mm per pixel for every file (else DICOM's PixelSpacing, or the ``pixel_spacing_mm``
            of a ``manifest.json`` beside the file, as medzoo's fetal-head samples have; else pixels).
        circumference: also report the fitted-ellipse circumference of the mask (HC18's
            head circumference); default: on for the fetal-head models.
        threshold: probability above which a pixel is foreground (binary models).
        largest_region: keep each class's largest connected region, holes filled; default:
            on for the fetal-head models (one head per image).
        exclude: glob patterns of files to leave out. Files that are the masks of other inputs
            (``<stem>_mask.png`` beside ``<stem>.png``, or a manifest's ``mask``) are always left out.

    Returns:
        One dict per image: ``input``, ``mask``, ``overlay``, ``size``, ``area_px`` and, with
        a pixel spacing, ``area_mm2`` (and ``circumference_mm``; ``circumference_px`` without one).
        The files left out are logged.
    """
    import csv

    model = resolve_model(model)
    if not hasattr(model, "segment"):
        raise ConfigError(f"{getattr(model, 'name', model)} is not a segmentation model (try a seg-... zoo entry)")
    name = (getattr(model, "zoo_metadata", None) or {}).get("name", "")
    one_head_per_image = name.startswith("seg-fetalus")
    circumference = one_head_per_image if circumference is None else bool(circumference)
    largest_region = one_head_per_image if largest_region is None else bool(largest_region)
    low, high = value_range_of(model)
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    from medzoo.data import image_files

    files, skipped = _masks_of_other_inputs(image_files(inputs), exclude)
    if skipped:
        log.info("segment: left out %d file(s) that are masks of other inputs or excluded: %s", len(skipped),
                 ", ".join(f.name for f in skipped))
    if not files:
        raise DataError("no image left to segment: every input is a mask of another input or excluded")
    items = list(_native_inputs(model, files))
    stems = _unique_paths(output_dir, [ref.stem for _, ref in items], "")
    records = []
    for (x, ref), stem in zip(items, stems):
        labels = model.segment(x, threshold=threshold, largest_region=largest_region, batch_size=batch_size)[0]
        mask_png = plots.save_png(labels * 255 if labels.max() <= 1 else labels, f"{stem}_mask.png")
        overlay_png = plots.save_png(overlay(x[0], labels, (low, high)), f"{stem}_overlay.png")
        spacing = _spacing_of(ref, pixel_spacing)
        area = int((labels > 0).sum())
        record = {"input": str(ref), "mask": str(mask_png), "overlay": str(overlay_png),
                  "size": list(labels.shape), "area_px": area}
        if spacing is not None:
            record["area_mm2"] = area * spacing[0] * spacing[1]
        if circumference:
            if spacing is not None and not math.isclose(spacing[0], spacing[1], rel_tol=1e-3):
                raise DataError(f"{ref}: the circumference needs square pixels, not {spacing} mm")
            c = float(ellipse_circumference(labels > 0, spacing[0] if spacing else 1.0)[0])
            record["circumference_mm" if spacing else "circumference_px"] = c
        records.append(record)
    columns = list(dict.fromkeys(k for r in records for k in r if k != "size"))
    with open(output_dir / "segment.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in columns} for r in records)
    return records


def encode_files(model, inputs, output, *, batch_size: int = 32) -> tuple[np.ndarray, list]:
    """Encode image files and save the latents: ``.npy`` (the array) or ``.npz`` (``latents`` and ``files``).

    The latents are ``model.encode``'s: spatial code maps of an autoencoder, posterior
    means of a VAE, integer code maps (N, h, w) of a VQ-VAE. Rows follow the order of the
    files (folders in sorted order), which the ``.npz`` records. An any-size model's
    latents keep each image's size: one ``.npz`` with ``latent_0``, ``latent_1``, ...
    (and ``files`` and ``sizes``), since they cannot share one array.

    Returns:
        ``(latents, refs)``; ``latents`` is a list of arrays for an any-size model.
    """
    output = pathlib.Path(output)
    if output.suffix not in (".npy", ".npz"):
        raise ConfigError(f"the latents file must end in .npy or .npz, got {output.name!r}")
    model = resolve_model(model)
    output.parent.mkdir(parents=True, exist_ok=True)
    if getattr(model, "any_size", False):
        if output.suffix != ".npz":
            raise ConfigError("an any-size model's latents differ in size from image to image: write them to .npz")
        pairs = [(model.encode(x, batch_size=batch_size)[0], ref, x.shape[1:3]) for x, ref in
                 _native_inputs(model, inputs)]
        latents = [z for z, _, _ in pairs]
        np.savez(output, **{f"latent_{i}": z for i, z in enumerate(latents)},
                 files=np.asarray([str(ref) for _, ref, _ in pairs]),
                 sizes=np.asarray([size for _, _, size in pairs], np.int64))
        return latents, [ref for _, ref, _ in pairs]
    x, refs = read_model_inputs(model, inputs)
    latents = _in_batches(lambda b: model.encode(b, batch_size=batch_size), x, batch_size, "encoding")
    if output.suffix == ".npz":
        np.savez(output, latents=latents, files=np.asarray([str(ref) for ref in refs]))
    else:
        np.save(output, latents)
    return latents, refs


def compress_files(inputs, output, model=DEFAULT_MODEL, *, kind: str = DEFAULT_KIND, quality=None,
                   lossless: bool = False, ratio=None):
    """Compress image files into one medzoo stream (``medzoo.compress``) and write it to ``output``.

    Lossless: each file's pixels exactly as stored (DICOM stored values, 8/16-bit PNG, NPY; see
    :func:`medzoo.data.read_stored_pixels`), all of one size and type; ``model`` may be None
    (the causal coder alone) or a hyperprior codec whose reconstruction predicts them. Lossy
    with a hyperprior codec or an any-size autoencoder: the same stored pixels when their
    channels fit the codec (the stream decodes to the same dtype and bit depth), else the
    model's inputs. Lossy with a VQ-VAE: the files are read and preprocessed as the model's inputs.

    A fixed-size model codes its own size: files of another size are resized to it (with a
    :class:`~medzoo.ResizeWarning`), and ``given_pixels`` says how many pixels the files held.

    ``ratio`` (instead of ``quality``): the codec's offered level nearest that compression ratio of
    the stored bits (DICOM Bits Stored; else the pixel type's bits, 8 for model inputs), from the
    levels its preset measured (:func:`medzoo.codec.qualities.quality_for_ratio`).

    Returns:
        :class:`CompressedFiles`: the stream's :class:`~medzoo.codec.StreamHeader` (bytes, bits
        per pixel of the coded images, shapes), the images in stream order, and the pixels of
        the images as given, for the bits per pixel of what the user gave.
    """
    from medzoo.codec import dicom_io
    from medzoo.data import image_files, probe_image

    if ratio is not None and (lossless or model is None or quality is not None):
        raise ConfigError("a compression ratio picks a lossy codec's level: give it with a model and without "
                          + ("--lossless" if lossless else "a model named" if model is None else "a quality"))
    model = None if model is None else resolve_model(model)
    stored = lossless or (model is not None and _codes_stored_pixels(model))
    files = image_files(inputs) if stored else []
    dicom = bool(files) and all(probe_image(f).kind == "dicom" for f in files)
    reason = next(filter(None, (dicom_io.unsupported(f) for f in files)), None) if dicom else None
    if reason is not None:
        if not lossless:
            raise DataError(reason)
        warnings.warn(f"{reason}: coded as stored pixel arrays; medzoo decompress gives them back as PNG or "
                      ".npy files, not as DICOM files", stacklevel=2)
    if dicom and reason is None:  # DICOM in: the headers travel along
        # a ratio and the bit-depth warning are of Bits Stored (a 12-bit CT sits in 16-bit words)
        pixels, names, headers, bits = dicom_io.read_for_coding(files)
        refs = files
        if not lossless:
            quality = quality if ratio is None else _level_for_ratio(model, ratio, bits)
            _warn_if_jpeg2000_wins(model, bits)
        stream = dicom_io.pack(names, headers, compress(pixels, model, lossless=lossless, quality=quality))
    else:
        pixels, refs = _stored_pixels(inputs) if stored else (None, None)
        bits = 8 if pixels is None or not np.issubdtype(pixels.dtype, np.integer) else 8 * pixels.dtype.itemsize
        quality = quality if ratio is None else _level_for_ratio(model, ratio, bits)
        if not lossless and pixels is not None:
            _warn_if_jpeg2000_wins(model, bits)
        if lossless:
            stream = compress(pixels, model, lossless=True, quality=quality)
        elif pixels is not None and (pixels.shape[-1] if pixels.ndim == 4 else 1) == model.image_shape[-1]:
            stream = compress(pixels, model, quality=quality)
        else:
            x, refs = read_model_inputs(model, inputs)
            stream = compress(x, model, kind=kind, quality=quality)
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(output, stream)
    header = read_header(stream)
    if pixels is not None:
        given = header.num_images * header.image_shape[0] * header.image_shape[1]
    else:
        sizes = {ref.path: probe_image(ref.path) for ref in refs}
        given = sum(sizes[ref.path].height * sizes[ref.path].width for ref in refs)
    return CompressedFiles(header, refs, int(given), bits)


def _warn_if_jpeg2000_wins(model, bits: int) -> None:
    """A :class:`~medzoo.DomainShiftWarning` when a learned coder trained on 8-bit images gets more stored bits and
    its preset measured JPEG 2000 ahead on such images (``benchmarks/high_bit_depth.py``), with those figures."""
    metadata = getattr(model, "zoo_metadata", None) or {}
    measured = (metadata.get("metrics") or {}).get("high_bit_depth") or {}
    if bits <= 8 or not measured:
        return
    lost = {label: row for label, row in measured.items() if row["psnr"] < row["jpeg2000_psnr"]}
    if not lost:
        return
    label, row = min(lost.items(), key=lambda kv: (abs(kv[1]["bits"] - bits), kv[0]))
    warnings.warn(f"{metadata.get('name', 'this model')} was trained on 8-bit images and these store {bits} bits: "
                  f"on {label} ({row['bits']} bits) it gave {row['psnr']:.2f} dB over the stored range at "
                  f"{row['bpp']:.3f} bpp, where JPEG 2000 gives {row['jpeg2000_psnr']:.2f} dB at the same bits "
                  f"(JPEG 2000 ahead on {len(lost)} of {len(measured)} such test images); to keep every stored "
                  "value, compress losslessly (name no model)", DomainShiftWarning, stacklevel=3)


def _level_for_ratio(model, ratio, stored_bits) -> int:
    from medzoo.codec.qualities import quality_for_ratio

    return quality_for_ratio(getattr(model, "zoo_metadata", None) or {}, ratio, stored_bits)["quality"]


def _codes_stored_pixels(model) -> bool:
    """Whether ``model`` codes stored pixels (a hyperprior codec, an any-size latent coder), not model inputs."""
    from medzoo.codec.latent import is_latent_coder
    from medzoo.models.hyperprior import HyperpriorCodec  # Keras: only where a model was named

    return isinstance(model, HyperpriorCodec) or is_latent_coder(model)


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder: never a half-written file."""
    if path.is_dir():
        raise DataError(f"{path}: a folder; give the stream file to write")
    scratch = path.with_name(f".{path.name}.partial")
    try:
        scratch.write_bytes(data)
        scratch.replace(path)
    finally:
        scratch.unlink(missing_ok=True)


class CompressedFiles(NamedTuple):
    """What :func:`compress_files` wrote: the stream's header, the images in stream order, and the
    number of pixels of those images as given (before a fixed-size model resized them)."""

    header: Any
    refs: list
    given_pixels: int
    stored_bits: int = 8  #: bits per stored pixel of the input (DICOM Bits Stored), what a ratio is of

    @property
    def bits_per_given_pixel(self) -> float:
        """The stream's bits (header included) per pixel of the images as given."""
        return 8.0 * self.header.total_bytes / self.given_pixels

    @property
    def ratio(self) -> float:
        """The compression ratio of the stored bits (``stored_bits`` per pixel given, against the stream)."""
        return self.stored_bits / self.bits_per_given_pixel


def _stored_pixels(inputs) -> tuple[np.ndarray, list]:
    """Image files -> their stored pixels stacked (N, H, W) or (N, H, W, C), and the files in order."""
    from medzoo.data import image_files, read_stored_pixels

    files = image_files(inputs)
    if not files:
        raise DataError(f"no image files in {inputs}")
    stacks = [_as_stack(read_stored_pixels(f)) for f in files]
    kinds = {(a.shape[1:], a.dtype.str) for a in stacks}
    if len(kinds) > 1:
        raise DataError("a stream of stored pixels holds images of one size and pixel type; these differ "
                        f"({', '.join(sorted(f'{s} {d}' for s, d in kinds))}): compress them one by one")
    return np.concatenate(stacks), files


def _as_stack(pixels: np.ndarray) -> np.ndarray:
    """One file's pixels -> (N, H, W) grey or (N, H, W, C) colour: a single image gets a leading axis."""
    from medzoo.data.preprocess import image_layout

    stacked, channels = image_layout(pixels.shape)
    pixels = pixels if stacked else pixels[None]
    return pixels[..., 0] if pixels.ndim == 4 and channels == 1 else pixels


#: what ``decompress_file`` can write a stream's images as
OUTPUT_FORMATS = ("auto", "png", "npy")
#: the suffixes that make ``decompress_file``'s output one file rather than a folder
_FILE_SUFFIXES = {".png": "png", ".npy": "npy"}


def png_holds_exactly(pixels: np.ndarray) -> bool:
    """Whether a PNG file gives these stored pixels back exactly: 8-bit grey, grey + alpha, RGB or RGBA, or
    16-bit grey (signed, wider and 16-bit colour pixels need ``.npy``)."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    return (pixels.dtype == np.uint8 and channels in (1, 2, 3, 4)) or (pixels.dtype == np.uint16 and channels == 1)


def _png_bytes(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    image = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", optimize=pixels.dtype == np.uint8)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array))
    return buffer.getvalue()


def _single_file(output: pathlib.Path, count: int, fmt: str, what: str) -> tuple[bool, str]:
    """Checked before anything is decoded: whether ``output`` names the one file of a one-image stream (a
    ``.png``/``.npy`` path, which then sets the format) rather than a folder, and the format asked for."""
    suffix = output.suffix.lower()
    if suffix == ".dcm":
        raise DataError(f"{output}: the stream holds {what}, not DICOM files (only a stream of DICOM files "
                        "decodes to DICOM); give a folder, a .png or a .npy path")
    if suffix in _FILE_SUFFIXES and not output.is_dir():
        if count != 1:
            raise DataError(f"{output}: the stream holds {count} images; give a folder with -o")
        if fmt != "auto" and fmt != _FILE_SUFFIXES[suffix]:
            raise ConfigError(f"{output}: a {suffix} path, but the format asked for is {fmt}")
        return True, _FILE_SUFFIXES[suffix]
    if output.is_file():
        raise DataError(f"{output}: a file is in the way of the folder to write the {count} images to")
    return False, fmt


def _output_paths(output: pathlib.Path, stem: str, count: int, fmt: str, single: bool) -> list[pathlib.Path]:
    """``output`` itself, or a folder of ``<stem>_<index>.<format>`` files."""
    if single:
        return [output]
    digits = max(3, int(math.log10(count)) + 1)
    return [output / f"{stem}_{i:0{digits}d}.{fmt}" for i in range(count)]


def _write_all(files: list) -> list[pathlib.Path]:
    """Write ``[(path, bytes), ...]``, each through a temporary file: every file whole or not there."""
    for path, _ in files:
        if path.is_dir():
            raise DataError(f"{path}: a folder is in the way of the file to write there")
    for path, data in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)
    return [path for path, _ in files]


def decompress_file(stream_path, output, model=None, *, output_format: str = "auto") -> tuple:
    """Decode a medzoo stream file into image files.

    * A stream of DICOM files (``medzoo compress scan.dcm``): DICOM files with their original headers and
      the decoded stored pixels (:func:`medzoo.codec.dicom_io.write_dicoms`); ``output`` a folder, or a
      ``.dcm`` path for one file.
    * A stream of stored pixels (lossless: exactly those; lossy: the codec's, in the same dtype and bit
      depth): PNG where a PNG holds them exactly (8-bit, 16-bit grey), else ``.npy``
      (``output_format="npy"`` always ``.npy``; ``"png"`` refuses pixels a PNG would change).
    * A stream of model inputs: 8-bit PNGs of the decoded images (``"npy"``: the float32 images).

    Args:
        stream_path: a file written by :func:`compress_files` or ``medzoo.compress``.
        output: a folder (one ``<stream stem>_<index>`` file per image), or a ``.png`` / ``.npy`` path for a
            stream of one image. Every file is encoded before the first is written, and each is written
            whole (through a temporary file), so a bad stream leaves nothing behind.
        model: default, the zoo model the stream names.
        output_format: ``"auto"``, ``"png"`` or ``"npy"`` (a ``.png``/``.npy`` path decides it too).

    Returns:
        ``(header, images, paths)``: images (N, H, W, C) float32, or the exact integer pixels.
    """
    from medzoo.codec import dicom_io

    stream_path = pathlib.Path(stream_path)
    if not stream_path.is_file():
        raise DataError(f"{stream_path}: no such file")
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output format {output_format!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    data, header = read_stream_file(stream_path)  # its errors name the file
    output = pathlib.Path(output)
    if dicom_io.is_container(data):  # DICOM in, DICOM out: each file's header, the decoded stored pixels
        if output_format != "auto":
            raise ConfigError(f"output format {output_format!r}: the stream holds DICOM files and decodes to DICOM "
                              "files; a format applies to other streams only")
        if output.suffix.lower() in _FILE_SUFFIXES and not output.is_dir():
            raise DataError(f"{output}: the stream holds DICOM files and decodes to DICOM files; give a folder "
                            "or a .dcm path")
        pixels = decompress(data, model)
        stack = pixels[None] if pixels.ndim == 2 else pixels
        coder = f"{header.model_name} {header.model_version}".strip()
        return header, pixels, dicom_io.write_dicoms(data, output, stack, lossy=header.kind in LOSSY_PIXEL_MODES,
                                                     coder=coder)
    stored = header.kind in PIXEL_MODES
    what = "stored pixel arrays" if stored else "decoded images"
    single, fmt = _single_file(output, header.num_images, output_format, what)
    if stored:
        pixels = decompress(data, model)
        stack = pixels[None] if pixels.ndim == 2 else pixels
        exact = png_holds_exactly(stack[0])
        if fmt == "png" and not exact:
            channels = 1 if stack.ndim == 3 else stack.shape[-1]
            instead = "give a .npy path" if output.suffix.lower() == ".png" else "write .npy (output_format='npy')"
            raise DataError(f"{output}: a PNG cannot hold {stack.dtype} pixels of {channels} channel(s) exactly; "
                            f"{instead}")
        fmt = ("png" if exact else "npy") if fmt == "auto" else fmt
        encode = _png_bytes if fmt == "png" else _npy_bytes
        files = [(t, encode(image)) for t, image in
                 zip(_output_paths(output, stream_path.stem, len(stack), fmt, single), stack)]
        return header, pixels, _write_all(files)
    if header.format_version == HYPERPRIOR_FORMAT:
        model = resolve_model(model) if model is not None else None
        images = decompress(data, model)
        value_range = (0.0, 1.0)
    else:
        header, codes, model = decompress_codes(data, model)
        images = model.decode(codes)
        value_range = value_range_of(model)
    fmt = "png" if fmt == "auto" else fmt
    paths = _output_paths(output, stream_path.stem, len(images), fmt, single)
    if fmt == "png":
        files = [(t, _png_bytes(plots.montage([[image]], value_range=value_range, pad=0)))
                 for t, image in zip(paths, images)]
    else:
        files = [(t, _npy_bytes(np.asarray(image, np.float32))) for t, image in zip(paths, images)]
    return header, images, _write_all(files)


def folder_data(model, folder) -> tuple[np.ndarray, np.ndarray | None, tuple]:
    """A folder of image files as model inputs and labels, for the tasks' ``images=`` / ``labels=``.

    Labels follow :func:`medzoo.data.from_directory`'s ``labels="inferred"``: when every
    image lies in a first-level subfolder, the subfolders (sorted by name) are the classes
    0, 1, ...; when some lie directly in ``folder`` there are no labels.

    Returns:
        ``(images (N, H, W, C) float32, labels (N,) int64 or None, class names)``.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    model = resolve_model(model)
    x, refs = read_model_inputs(model, folder)
    parts = [ref.path.relative_to(folder).parts for ref in refs]
    if any(len(p) < 2 for p in parts):
        return x, None, ()
    class_names = tuple(sorted({p[0] for p in parts}))
    return x, np.asarray([class_names.index(p[0]) for p in parts], dtype=np.int64), class_names


SAMPLES = "samples"
"""``data=`` value naming the sample chest X-rays shipped in the package (:func:`medzoo.data.sample_images`)."""


def data_options(model, task: str, data) -> tuple:
    """What makes a task run on ``data``: ``(model, task kwargs, description of the data)``.

    ``data`` is an npz name or path (passed on as ``dataset=``; the task loads its split),
    a folder of images (read with the model's preprocessing, :func:`folder_data`, and passed
    as ``images=``, plus ``labels=`` when the folder has class subfolders and the task takes
    labels, and the subfolder names as ``class_names=`` when it takes those), or ``"samples"``:
    the 8 labelled chest X-rays shipped in the package. The model comes back loaded when it
    had to be (the first one, for a list); the description is None for an npz (the task
    names it itself).
    """
    import inspect

    from medzoo.evaluate import TASKS

    folder = pathlib.Path(data).expanduser()
    if data != SAMPLES and not folder.is_dir():
        return model, {"dataset": str(data)}, None
    params = inspect.signature(TASKS[task]).parameters
    if "images" not in params:
        raise ConfigError(f"the {task} task needs an npz with train, val and test splits, not {data!r}")
    if isinstance(model, (list, tuple)):
        model = [resolve_model(model[0]), *model[1:]]
    else:
        model = resolve_model(model)
    first = model[0] if isinstance(model, list) else model
    if data == SAMPLES:
        from medzoo.data import sample_images

        raw, labels = sample_images()
        images, what = first.preprocess(raw), "the sample chest X-rays shipped with medzoo"
        classes = ()  # labelled 0 normal, 1 pneumonia: the tasks' default names
    else:
        images, labels, classes = folder_data(first, folder)
        what = str(folder) + (f" (classes {', '.join(classes)})" if classes else "")
    kwargs = {"images": images}
    if labels is not None and "labels" in params:
        kwargs["labels"] = labels
        if classes and "class_names" in params:  # the folders' names, not the chest X-ray classes
            kwargs["class_names"] = classes
    return model, kwargs, what


def default_data(model):
    """``None`` when the dataset a model was trained on is on disk, else :data:`SAMPLES` (a fresh install).

    Lets a report run anywhere: with the data folder (``$MEDZOO_DATA_DIR``) it evaluates on
    the model's own test split, without it on the sample X-rays shipped in the package.
    """
    from medzoo.data import resolve_npz
    from medzoo.evaluate.common import dataset_of

    try:
        resolve_npz(dataset_of(resolve_model(model)))
    except DataError:
        return SAMPLES
    return None
