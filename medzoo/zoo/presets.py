"""Preset directories: a trained model as four plain files (five for a VQ-VAE), in the keras-hub layout.

::

    <preset>/
      config.json         keras.saving.serialize_keras_object(model), without optimizer
      model.weights.h5    the weights only (float32, or float16 to halve the size)
      README.md           the model card, with Hugging Face front matter
      metadata.json       versions, parameter count, input spec, training, metrics,
                          and the sha256 of the other files
      entropy_model.npz   optional, VQ-VAEs only: the probability model of the code maps
                          that ``medzoo.compress`` codes with (added by :func:`attach_file`)

A preset is what the zoo bundles, uploads and downloads; :func:`load_preset`
turns one back into a model that carries its input contract
(``model.preprocess_spec``) and its metadata (``model.zoo_metadata``).

float16 weights: ``save_preset(..., weights_dtype="float16")`` rounds every
floating weight to float16 in the file (a weight that would overflow stays
float32); :func:`load_preset` gets float32 variables back. Rounding changes the
outputs slightly, so the metrics of a float16 preset must be measured on the
stored weights: save, reload with :func:`load_preset`, evaluate, then record
the figures with :func:`update_preset`.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import tempfile
import warnings

import h5py
import numpy as np

from medzoo.data import PreprocessSpec
from medzoo.errors import ConfigError
from medzoo.zoo.card import render_card
from medzoo.zoo.integrity import sha256_file, verify_files
from medzoo.zoo.safety import (
    BASE_FILES,
    CARD_FILE,
    CONFIG_FILE,
    ENTROPY_MODEL_FILE,
    FAMILY_CLASS_NAMES,
    METADATA_FILE,
    OPTIONAL_FILES,
    PRESET_FILES,
    WEIGHTS_FILE,
    check_model_config,
    check_preset_files,
    deserialize_model,
)
from medzoo.version import __version__

METADATA_FORMAT = 1
WEIGHTS_DTYPES = ("float32", "float16")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")
_FLOAT16_MAX = float(np.finfo(np.float16).max)


# ----------------------------------------------------------------- helpers
def check_name(name) -> str:
    """A zoo name: lowercase letters, digits, ``_ . -``; it is also a folder name."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"name must match {NAME_PATTERN.pattern} (lowercase, digits, _ . -), got {name!r}")
    return name


def check_version(version) -> str:
    """A weights version: ``"MAJOR.MINOR.PATCH"``."""
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise ConfigError(f"version must look like '1.0.0', got {version!r}")
    return version


def family_of(model) -> str:
    """The zoo family name (``medzoo.models.FAMILIES``) of a model instance."""
    from medzoo.models import FAMILIES

    for family, cls in FAMILIES.items():
        if type(model) is cls:
            return family
    raise ConfigError(
        f"only the medzoo model families {sorted(FAMILIES)} can be saved as presets, got {type(model).__name__}"
    )


def _json_default(value):
    if isinstance(value, np.generic):  # numpy scalars from metrics code
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def as_json(value, what: str):
    """A deep copy of ``value`` made of JSON types (numpy scalars converted), or ConfigError."""
    try:
        return json.loads(json.dumps(value, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON-serializable (finite numbers, str, lists, dicts): {exc}") from exc


def write_json(path: pathlib.Path, data) -> None:
    """Write JSON with the formatting every medzoo file uses (2-space indent, trailing newline)."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: pathlib.Path) -> dict:
    try:
        data = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path} as JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_metadata(directory) -> dict:
    """The ``metadata.json`` of a preset, checked for the fields the loader needs."""
    metadata = read_json(pathlib.Path(directory) / METADATA_FILE)
    try:
        PreprocessSpec.from_config(metadata["input"]["preprocess"])
        family, class_name = metadata["family"], metadata["class_name"]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{directory}/{METADATA_FILE} lacks {exc} (not written by medzoo.save_preset?)") from exc
    if FAMILY_CLASS_NAMES.get(family) != class_name:
        raise ConfigError(f"{directory}/{METADATA_FILE}: family {family!r} does not match class {class_name!r}")
    if family != "vqvae" and (pathlib.Path(directory) / ENTROPY_MODEL_FILE).exists():
        raise ConfigError(f"{directory} holds {ENTROPY_MODEL_FILE}, which only a VQ-VAE preset may have "
                          f"(this one is a {family})")
    return metadata


def recorded_digests(metadata: dict) -> dict[str, str]:
    """``filename -> sha256`` that a preset's metadata records for its other files (may be empty)."""
    files = metadata.get("files") or {}
    if not isinstance(files, dict) or not set(files) <= set(PRESET_FILES) - {METADATA_FILE}:
        raise ConfigError(f"metadata.json 'files' must map preset file names to sha256 digests, got {files!r}")
    return dict(files)


def check_preset(directory) -> tuple[dict, dict]:
    """Check a preset without building it: allowed files, recorded digests, a safe config.

    Returns:
        ``(metadata, config)``. Used before a preset is bundled or uploaded, so the
        zoo never publishes what :func:`load_preset` would refuse.
    """
    directory = check_preset_files(directory)
    metadata = read_metadata(directory)
    recorded = recorded_digests(metadata)
    if set(recorded) != (set(PRESET_FILES) - {METADATA_FILE}) & {p.name for p in directory.iterdir()}:
        raise ConfigError(f"{directory}/{METADATA_FILE} must record the sha256 of every other file of the preset")
    verify_files(directory, recorded, origin=f"the preset {directory}")
    config = read_json(directory / CONFIG_FILE)
    check_model_config(config)
    return metadata, config


# ----------------------------------------------------------------- weights
def _copy_weights(src: h5py.Group, dst: h5py.Group, float16: bool, kept: list[str], skip=()) -> None:
    """Copy an h5 tree, optionally storing float datasets as float16 (those that would overflow stay)."""
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for key, item in src.items():
        if key in skip:
            continue
        if isinstance(item, h5py.Group):
            _copy_weights(item, dst.create_group(key), float16, kept)
            continue
        data = np.asarray(item[()])
        if float16 and data.dtype.kind == "f" and data.dtype.itemsize > 2:
            finite = data[np.isfinite(data)]
            if finite.size == 0 or np.abs(finite).max() <= _FLOAT16_MAX:
                data = data.astype(np.float16)
            else:
                kept.append(item.name)
        dst.create_dataset(key, data=data)


def _save_weights(model, path: pathlib.Path, weights_dtype: str) -> list[str]:
    """Save the model's weights (no optimizer state) to ``path``; return the datasets kept as float32.

    Keras writes the file, which is then copied dataset by dataset: HDF5 does not
    reclaim the space of deleted datasets, so rewriting is what makes float16 smaller.
    """
    raw = path.with_name("raw.weights.h5")
    model.save_weights(raw)
    kept: list[str] = []
    with h5py.File(raw, "r") as src, h5py.File(path, "w") as dst:
        # "optimizer" holds training state (Adam moments), not part of a pretrained model
        _copy_weights(src, dst, weights_dtype == "float16", kept, skip=("optimizer",))
    raw.unlink()
    return kept


# --------------------------------------------------------------- save/load
def save_preset(
    model,
    directory,
    *,
    name,
    spec,
    description="",
    training=None,
    metrics=None,
    licence="CC-BY-4.0",
    version="1.0.0",
    weights_dtype="float32",
) -> pathlib.Path:
    """Write ``model`` as a preset directory (config.json, model.weights.h5, README.md, metadata.json).

    Args:
        model: a medzoo model (ConvAutoencoder, VAE or VQVAE).
        directory: the preset folder; created if needed. An existing preset there is
            replaced file by file; a folder holding other files is refused.
        name: the zoo name (lowercase, digits, ``_ . -``).
        spec: the :class:`~medzoo.data.PreprocessSpec` the model was trained with;
            its output shape must equal the model's input shape.
        description: one or two sentences for the model card and ``list_models``.
        training: JSON-able provenance, e.g. ``{"recipe": ..., "dataset": {"name", "licence",
            "citation", ...}, "splits": {...}, "epochs": ..., "wall_time_s": ...}``; the zoo
            manifest requires these keys (``medzoo.zoo.manifest.TRAINING_KEYS``).
        metrics: JSON-able test-set figures, e.g. ``{"test": {"psnr": 31.2}}``.
        licence: licence of the weights (SPDX id).
        version: ``"MAJOR.MINOR.PATCH"`` of these weights.
        weights_dtype: ``"float32"`` or ``"float16"`` (half the size; measure the
            metrics on the stored weights, see the module docstring).

    Returns:
        The preset directory as a ``pathlib.Path``.
    """
    family = family_of(model)
    check_name(name)
    check_version(version)
    if not isinstance(spec, PreprocessSpec):
        raise ConfigError(f"spec must be a medzoo.data.PreprocessSpec, got {type(spec).__name__}")
    if tuple(spec.output_shape) != tuple(model.image_shape):
        raise ConfigError(
            f"the spec makes images of shape {spec.output_shape} but the model takes {tuple(model.image_shape)}"
        )
    if weights_dtype not in WEIGHTS_DTYPES:
        raise ConfigError(f"weights_dtype must be one of {WEIGHTS_DTYPES}, got {weights_dtype!r}")
    if not isinstance(licence, str) or not licence.strip():
        raise ConfigError("licence must be a non-empty string (an SPDX id such as 'CC-BY-4.0')")
    training = as_json(training or {}, "training")
    metrics = as_json(metrics or {}, "metrics")
    if not isinstance(training, dict) or not isinstance(metrics, dict):
        raise ConfigError("training and metrics must be dicts")
    import keras

    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)  # a preset carries no optimizer
    config = as_json(config, "the model config")
    check_model_config(config)  # never write what load_preset would refuse

    directory = pathlib.Path(directory)
    if directory.exists():
        unexpected = sorted(p.name for p in directory.iterdir() if p.name not in PRESET_FILES)
        if unexpected:
            raise ConfigError(f"{directory} holds other files {unexpected}; save the preset into an empty folder")
        for filename in OPTIONAL_FILES:  # made for the weights being replaced: stale from now on
            (directory / filename).unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix=f".{directory.name}-", dir=directory.parent) as tmp:
        tmp = pathlib.Path(tmp)
        write_json(tmp / CONFIG_FILE, config)
        kept = _save_weights(model, tmp / WEIGHTS_FILE, weights_dtype)
        metadata = {
            "format_version": METADATA_FORMAT,
            "name": name,
            "family": family,
            "class_name": type(model).__name__,
            "description": description,
            "version": version,
            "licence": licence,
            "parameters": int(model.count_params()),
            "input": {
                "shape": list(model.image_shape),
                "channels": int(model.image_shape[-1]),
                "value_range": list(spec.value_range),
                "preprocess": spec.to_config(),
            },
            "training": training,
            "metrics": metrics,
            "weights": {"file": WEIGHTS_FILE, "dtype": weights_dtype, **({"kept_float32": kept} if kept else {})},
            "medzoo_version": __version__,
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
        }
        _write_card_and_metadata(tmp, metadata)
        for filename in BASE_FILES:  # metadata.json last: it vouches for the others
            os.replace(tmp / filename, directory / filename)
    return directory


def _write_card_and_metadata(directory: pathlib.Path, metadata: dict) -> None:
    """Render README.md, then write metadata.json with the digests of the other three files."""
    (directory / CARD_FILE).write_text(render_card(metadata), encoding="utf-8")
    metadata["files"] = {name: sha256_file(directory / name) for name in (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)}
    write_json(directory / METADATA_FILE, metadata)


def update_preset(directory, *, description=None, training=None, metrics=None) -> dict:
    """Replace the description, training info or metrics of a preset; the weights stay untouched.

    The config and weights are verified against the recorded digests first, the card
    is re-rendered and metadata.json rewritten. Typical use: record the metrics of
    a float16 preset after measuring them on ``load_preset(directory)``.

    Returns:
        The new metadata.
    """
    metadata, _ = check_preset(directory)
    directory = pathlib.Path(directory)
    if description is not None:
        metadata["description"] = str(description)
    if training is not None:
        metadata["training"] = as_json(training, "training")
    if metrics is not None:
        metadata["metrics"] = as_json(metrics, "metrics")
    with tempfile.TemporaryDirectory(prefix=f".{directory.name}-", dir=directory.parent) as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / CARD_FILE).write_text(render_card(metadata), encoding="utf-8")
        metadata["files"] = {**metadata["files"], CARD_FILE: sha256_file(tmp / CARD_FILE)}
        write_json(tmp / METADATA_FILE, metadata)
        for filename in (CARD_FILE, METADATA_FILE):
            os.replace(tmp / filename, directory / filename)
    return metadata


def attach_file(directory, source, filename, *, metadata=None) -> dict:
    """Add (or replace) an optional file of a preset, e.g. a VQ-VAE's ``entropy_model.npz``.

    The preset is verified first; the file is copied in and its sha256 recorded in
    metadata.json, so ``load``, ``add_to_manifest`` and ``push_to_hub`` treat it like
    the preset's other files. ``metadata`` (a JSON-able dict) is merged into
    metadata.json's top level, and the model card re-rendered from the result.

    Args:
        directory: the preset folder.
        source: the file to copy in.
        filename: its name in the preset, one of :data:`~medzoo.zoo.safety.OPTIONAL_FILES`.
        metadata: e.g. ``{"entropy_model": {...summary...}}``.

    Returns:
        The new metadata.
    """
    if filename not in OPTIONAL_FILES:
        raise ConfigError(f"{filename!r} is not an optional preset file {list(OPTIONAL_FILES)}")
    directory = pathlib.Path(directory)
    metadata_now, _ = check_preset(directory)
    if filename == ENTROPY_MODEL_FILE and metadata_now["family"] != "vqvae":
        raise ConfigError(f"only a VQ-VAE preset has an {ENTROPY_MODEL_FILE}; {directory} is a "
                          f"{metadata_now['family']}")
    extra = as_json(metadata or {}, "metadata")
    reserved = sorted(set(extra) & {"files", "name", "family", "class_name", "version", "weights", "input"})
    if reserved:
        raise ConfigError(f"attach_file cannot change the metadata fields {reserved}")
    new = {**metadata_now, **extra}
    with tempfile.TemporaryDirectory(prefix=f".{directory.name}-", dir=directory.parent) as tmp:
        tmp = pathlib.Path(tmp)
        shutil.copyfile(source, tmp / filename)
        (tmp / CARD_FILE).write_text(render_card(new), encoding="utf-8")
        new["files"] = {**new["files"], filename: sha256_file(tmp / filename), CARD_FILE: sha256_file(tmp / CARD_FILE)}
        write_json(tmp / METADATA_FILE, new)
        for name in (filename, CARD_FILE, METADATA_FILE):  # metadata.json last: it vouches for the others
            os.replace(tmp / name, directory / name)
    return new


def load_preset(directory, *, compile=True, verify=None):
    """Build the model stored in a preset directory, after checking every file.

    Args:
        directory: the preset folder.
        compile: compile with the model's default optimizer (Adam 1e-3), ready to fine-tune.
        verify: optional ``{filename: sha256}`` (e.g. from the zoo manifest), checked
            before anything is read. Files it does not cover are checked against the
            digests recorded in metadata.json.

    Returns:
        The model, with ``model.preprocess_spec`` (its input contract) and
        ``model.zoo_metadata`` (metadata.json plus ``"source"`` and ``"path"``).

    Raises:
        IntegrityError: a file does not have its expected sha256.
        ConfigError: unexpected files in the folder, a config naming a class outside
            medzoo, or weights that do not fit the config.
    """
    from medzoo.backend import import_tensorflow_quietly

    import_tensorflow_quietly()  # before Keras loads it: TensorFlow's CUDA probe prints errors on a CPU machine
    directory = check_preset_files(directory)
    verify = dict(verify or {})
    unknown = sorted(set(verify) - set(PRESET_FILES))
    if unknown:
        raise ConfigError(f"verify names files {unknown} that are not part of a preset {list(PRESET_FILES)}")
    verify_files(directory, verify, origin=f"the preset {directory}")
    metadata = read_metadata(directory)
    recorded = {k: v for k, v in recorded_digests(metadata).items() if k not in verify}
    if recorded:
        verify_files(directory, recorded, origin=f"the preset {directory} (digests recorded in {METADATA_FILE})")
    elif not verify:
        warnings.warn(f"{directory}/{METADATA_FILE} records no sha256 digests; file integrity was not checked",
                      stacklevel=2)

    model = deserialize_model(read_json(directory / CONFIG_FILE))
    if type(model).__name__ != metadata["class_name"]:
        raise ConfigError(
            f"config.json builds a {type(model).__name__} but metadata.json says {metadata['class_name']}"
        )
    spec = PreprocessSpec.from_config(metadata["input"]["preprocess"])
    if tuple(spec.output_shape) != tuple(model.image_shape):
        raise ConfigError(
            f"metadata.json's preprocessing makes {spec.output_shape} images but the model takes {model.image_shape}"
        )
    try:
        model.load_weights(directory / WEIGHTS_FILE)
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"{directory / WEIGHTS_FILE} does not fit the architecture in config.json: {exc}") from exc
    model.preprocess_spec = spec
    model.zoo_metadata = {**metadata, "source": "path", "path": str(directory)}
    model.training_resolution = (metadata.get("training") or {}).get("resolution")
    domain = (metadata.get("training") or {}).get("domain")
    from medzoo.models.domain import DomainProfile  # the models package imports Keras: only when a model loads
    from medzoo.models.tiling import set_inference_tile

    tiling = (metadata.get("training") or {}).get("tiling")
    if isinstance(tiling, dict):  # the tiles it was measured with: about its training crops' size
        set_inference_tile(model, (tiling["tile"], tiling["overlap"]))

    model.domain_profile = DomainProfile.from_dict(domain) if isinstance(domain, dict) else None
    if compile:
        model.compile()
    return model
