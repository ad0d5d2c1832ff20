"""``weights_manifest.json``: the one list of pretrained models, its schema, and the views of it.

The manifest lives in the package (``medzoo/weights_manifest.json``, shipped in the
wheel; the repository root has a symlink to it). Each entry says what a model is
(family, config, input contract), where it came from (training data, licence,
citation, recipe), how good it is (test metrics), which files make it up (size
and sha256 of each, a VQ-VAE's ``entropy_model.npz`` included) and where to get them (the copy bundled in the package
and/or a Hub repository pinned to a commit).

An entry, abridged::

    {"name": "ae_cxr128", "family": "autoencoder", "description": "...", "version": "1.0.0",
     "licence": "CC-BY-4.0", "parameters": 1234567, "weights_dtype": "float32",
     "config": {...keras.saving.serialize_keras_object(model)...},
     "input": {"shape": [128, 128, 1], "channels": 1, "value_range": [0.0, 1.0],
               "preprocess": {...PreprocessSpec.to_config()...}},
     "training": {"recipe": "ae_cxr128", "epochs": 40, "wall_time_s": 812.5,
                  "dataset": {"name": "kermany_pediatric_cxr_128", "licence": "CC-BY-4.0", "citation": "..."},
                  "splits": {"train": "train", "model_selection": "val", "metrics": "test"}, ...},
     "metrics": {"test": {"psnr": 31.2, "ssim": 0.91}},
     "files": [{"filename": "config.json", "size": 1042, "sha256": "..."}, ...],
     "sources": {"bundled": "presets/ae_cxr128",
                 "hub": {"repo_id": "org/medzoo-ae-cxr128", "revision": "<40-hex commit>",
                         "filename": "model.weights.h5"}}}

:func:`validate_manifest` is the schema, as code: it raises :class:`ConfigError`
naming the path of the first bad field (``models[0].files[1].sha256: ...``).
:func:`add_to_manifest` is how entries are made: from a preset directory.

A retired entry (one a newer entry beats on every measure, ``benchmarks/retirement.py``)
leaves ``models`` and its bundled files, and its name stays under ``retired`` as an alias,
so code that names it keeps working: ``load``, ``info`` and ``get_entry`` give the
replacement, with a ``FutureWarning`` that says so (:func:`retire`)::

    "retired": [{"name": "dae-chestxray", "replaced_by": "dae-chestxray-f4c3",
                 "last_version": "1.0.0", "note": "..."}]
"""

from __future__ import annotations

import copy
import difflib
import html
import math
import os
import pathlib
import posixpath
import shutil
import warnings

from medzoo.data import PreprocessSpec
from medzoo.errors import ConfigError, ModelNotFoundError
from medzoo.zoo.hub import HubRef, is_commit, parse_hf_uri
from medzoo.zoo.integrity import SHA256_PATTERN, file_record
from medzoo.zoo.mirror import CHECKOUT_PRESETS, copy_preset
from medzoo.zoo.card import geometry_label, input_label
from medzoo.zoo.presets import (
    NAME_PATTERN,
    VERSION_PATTERN,
    WEIGHTS_DTYPES,
    check_preset,
    read_json,
    write_json,
)
from medzoo.zoo.safety import (
    ENTROPY_MODEL_FILE,
    FAMILY_CLASS_NAMES,
    MODEL_CLASSES,
    PRESET_FILES,
    REQUIRED_FILES,
    WEIGHTS_FILE,
    check_model_config,
)

FORMAT_VERSION = 1
#: the manifest shipped in the package
DEFAULT_MANIFEST = pathlib.Path(__file__).resolve().parent.parent / "weights_manifest.json"
#: folder (next to the manifest) that holds the bundled presets, one sub-folder per name
BUNDLE_DIR = "presets"

REQUIRED_KEYS = ("name", "family", "description", "version", "licence", "config", "input", "training", "metrics",
                 "files", "sources")
#: ``kept_because``: why an entry that a newer one outdoes on some measures stays in the zoo (the zoo table says)
OPTIONAL_KEYS = ("parameters", "weights_dtype", "kept_because")
#: keys every manifest entry's ``training`` must have (non-empty); more keys are welcome
TRAINING_KEYS = ("recipe", "dataset", "splits", "epochs")
#: keys of ``training["dataset"]`` that must be non-empty (and the licence not "unknown")
DATASET_KEYS = ("name", "licence", "citation")
_ENTRY_ORDER = ("name", "family", "description", "version", "licence", "parameters", "weights_dtype", "config",
                "input", "training", "metrics", "files", "sources")


# ------------------------------------------------------------------ schema
def _fail(path: str, problem: str):
    raise ConfigError(f"{path}: {problem}")


def _expect(value, kind, path: str, what: str):
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        _fail(path, f"expected {what}, got {value!r}"[:300])
    return value


def _check_keys(data: dict, path: str, required, optional=()) -> None:
    missing = [key for key in required if key not in data]
    if missing:
        _fail(f"{path}.{missing[0]}", "missing")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        _fail(f"{path}.{unknown[0]}", f"unknown field (known: {', '.join([*required, *optional])})")


def _check_number_tree(value, path: str) -> None:
    """Metrics: nested dicts whose leaves are finite numbers."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_number_tree(item, f"{path}.{key}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, f"expected a finite number (or a dict of them), got {value!r}")


def _validate_input(data, config: dict, path: str) -> None:
    _expect(data, dict, path, "an object")
    _check_keys(data, path, ("shape", "channels", "value_range", "preprocess"))
    shape = _expect(data["shape"], list, f"{path}.shape", "[height, width, channels]")

    def positive(v):
        return not isinstance(v, bool) and isinstance(v, int) and v >= 1

    fixed = len(shape) == 3 and all(positive(v) for v in shape)
    any_size = len(shape) == 3 and shape[0] is None and shape[1] is None and positive(shape[2])
    if not (fixed or any_size):
        _fail(f"{path}.shape", f"expected three positive integers, or [null, null, channels] for an any-size "
                               f"model, got {shape!r}")
    if data["channels"] != shape[2]:
        _fail(f"{path}.channels", f"{data['channels']!r} differs from shape[2] = {shape[2]}")
    try:
        spec = PreprocessSpec.from_config(data["preprocess"])
    except ConfigError as exc:
        _fail(f"{path}.preprocess", str(exc))
    if list(spec.output_shape) != shape:
        _fail(f"{path}.preprocess", f"makes images of shape {list(spec.output_shape)}, not {shape}")
    if data["value_range"] != list(spec.value_range):
        _fail(f"{path}.value_range", f"{data['value_range']!r} differs from the preprocessing's {spec.value_range}")
    options = config.get("config", {})
    # a latent prior takes no images: it makes (and varies) images of its autoencoder, any size, image_channels deep
    model_shape = [None, None, options.get("image_channels")] if "autoencoder" in options else options.get(
        "input_shape")
    if model_shape != shape:
        _fail(f"{path}.shape", f"{shape} differs from the model config's input_shape")


def _validate_training(data, path: str) -> None:
    _expect(data, dict, path, "an object")
    for key in TRAINING_KEYS:
        if key not in data or data[key] in (None, "", [], {}):
            _fail(f"{path}.{key}", "missing (published weights must say what data and recipe made them)")
    _expect(data["recipe"], str, f"{path}.recipe", "the recipe name")
    dataset = _expect(data["dataset"], dict, f"{path}.dataset", "an object {name, licence, citation, ...}")
    for key in DATASET_KEYS:
        value = dataset.get(key)
        if not isinstance(value, str) or not value.strip() or value.strip().lower() == "unknown":
            _fail(f"{path}.dataset.{key}", f"expected a non-empty, known value, got {value!r}")
    _expect(data["splits"], (dict, str), f"{path}.splits", "the splits used (an object or a string)")
    epochs = data["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        _fail(f"{path}.epochs", f"expected a positive integer, got {epochs!r}")
    wall = data.get("wall_time_s")
    if wall is not None and (isinstance(wall, bool) or not isinstance(wall, (int, float)) or wall < 0):
        _fail(f"{path}.wall_time_s", f"expected seconds (a number >= 0), got {wall!r}")


def _validate_files(files, path: str) -> None:
    _expect(files, list, path, "a list of {filename, size, sha256}")
    seen = set()
    for i, record in enumerate(files):
        where = f"{path}[{i}]"
        _expect(record, dict, where, "an object")
        _check_keys(record, where, ("filename", "size", "sha256"))
        if record["filename"] not in PRESET_FILES:
            _fail(f"{where}.filename", f"{record['filename']!r} is not a preset file {list(PRESET_FILES)}")
        if record["filename"] in seen:
            _fail(f"{where}.filename", f"{record['filename']!r} is listed twice")
        seen.add(record["filename"])
        size = record["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            _fail(f"{where}.size", f"expected a byte count, got {size!r}")
        if not isinstance(record["sha256"], str) or not SHA256_PATTERN.match(record["sha256"]):
            _fail(f"{where}.sha256", f"expected 64 lowercase hex digits, got {record['sha256']!r}")
    for name in REQUIRED_FILES:
        if name not in seen:
            _fail(path, f"{name} is missing")


def _validate_sources(sources, name: str, path: str) -> None:
    _expect(sources, dict, path, "an object")
    _check_keys(sources, path, ("bundled", "hub"))
    bundled, hub = sources["bundled"], sources["hub"]  # both null: not published yet, in offline mirrors only
    if bundled is not None and bundled != f"{BUNDLE_DIR}/{name}":
        _fail(f"{path}.bundled", f"expected {BUNDLE_DIR + '/' + name!r} or null, got {bundled!r}")
    if hub is not None:
        where = f"{path}.hub"
        _expect(hub, dict, where, "an object")
        _check_keys(hub, where, ("repo_id", "revision", "filename"))
        if not is_commit(hub["revision"]):
            _fail(f"{where}.revision", f"expected a pinned 40-hex commit id, got {hub['revision']!r}")
        filename = hub["filename"]
        if not isinstance(filename, str) or posixpath.basename(filename) != WEIGHTS_FILE:
            _fail(f"{where}.filename", f"expected the path of {WEIGHTS_FILE} in the repo, got {filename!r}")
        try:
            HubRef(hub["repo_id"], hub["revision"], posixpath.dirname(filename))
        except ConfigError as exc:
            _fail(where, str(exc))


def validate_entry(entry, path: str = "entry") -> None:
    """Check one manifest entry; raise :class:`ConfigError` naming the first bad field."""
    _expect(entry, dict, path, "an object")
    _check_keys(entry, path, REQUIRED_KEYS, OPTIONAL_KEYS)
    name = entry["name"]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        _fail(f"{path}.name", f"expected a name matching {NAME_PATTERN.pattern}, got {name!r}")
    if entry["family"] not in FAMILY_CLASS_NAMES:
        _fail(f"{path}.family", f"expected one of {sorted(FAMILY_CLASS_NAMES)}, got {entry['family']!r}")
    _expect(entry["description"], str, f"{path}.description", "a string")
    if not isinstance(entry["version"], str) or not VERSION_PATTERN.match(entry["version"]):
        _fail(f"{path}.version", f"expected 'MAJOR.MINOR.PATCH', got {entry['version']!r}")
    if not isinstance(entry["licence"], str) or not entry["licence"].strip():
        _fail(f"{path}.licence", f"expected a licence id such as 'CC-BY-4.0', got {entry['licence']!r}")
    params = entry.get("parameters", 1)
    if isinstance(params, bool) or not isinstance(params, int) or params < 1:
        _fail(f"{path}.parameters", f"expected a positive integer, got {params!r}")
    if entry.get("weights_dtype", "float32") not in WEIGHTS_DTYPES:
        _fail(f"{path}.weights_dtype", f"expected one of {WEIGHTS_DTYPES}, got {entry['weights_dtype']!r}")
    config = entry["config"]
    try:
        check_model_config(config)
    except ConfigError as exc:
        _fail(f"{path}.config", str(exc))
    family_class = FAMILY_CLASS_NAMES[entry["family"]]
    if MODEL_CLASSES[config["registered_name"]] != family_class:
        _fail(f"{path}.config.class_name",
              f"{config['class_name']!r} is not the {entry['family']} class {family_class}")
    _validate_input(entry["input"], config, f"{path}.input")
    _validate_training(entry["training"], f"{path}.training")
    _expect(entry["metrics"], dict, f"{path}.metrics", "an object")
    if not entry["metrics"]:
        _fail(f"{path}.metrics", "empty (published weights must report test-set figures)")
    _check_number_tree(entry["metrics"], f"{path}.metrics")
    _validate_files(entry["files"], f"{path}.files")
    if entry["family"] != "vqvae" and any(f["filename"] == ENTROPY_MODEL_FILE for f in entry["files"]):
        _fail(f"{path}.files", f"{ENTROPY_MODEL_FILE} belongs to VQ-VAEs only, not to a {entry['family']}")
    _validate_sources(entry["sources"], name, f"{path}.sources")
    if "kept_because" in entry and (not isinstance(entry["kept_because"], str) or not entry["kept_because"].strip()):
        _fail(f"{path}.kept_because", f"expected a sentence, got {entry['kept_because']!r}")


RETIRED_KEYS = ("name", "replaced_by", "last_version", "note")


def validate_manifest(data) -> None:
    """Check a whole manifest (``{"format_version": 1, "models": [...]}``, optionally ``"retired": [...]``);
    raise ConfigError with the field path."""
    _expect(data, dict, "manifest", "an object")
    _check_keys(data, "manifest", ("format_version", "models"), optional=("retired",))
    if data["format_version"] != FORMAT_VERSION:
        _fail("format_version", f"this medzoo reads format {FORMAT_VERSION}, got {data['format_version']!r}")
    _expect(data["models"], list, "models", "a list")
    names = set()
    for i, entry in enumerate(data["models"]):
        validate_entry(entry, f"models[{i}]")
        if entry["name"] in names:
            _fail(f"models[{i}].name", f"{entry['name']!r} appears twice")
        names.add(entry["name"])
    aliases = set()
    for i, record in enumerate(_expect(data.get("retired", []), list, "retired", "a list")):
        path = f"retired[{i}]"
        _expect(record, dict, path, "an object")
        _check_keys(record, path, RETIRED_KEYS)
        for key in RETIRED_KEYS:
            _expect(record[key], str, f"{path}.{key}", "a non-empty string")
            if not record[key].strip():
                _fail(f"{path}.{key}", "expected a non-empty string")
        if record["name"] in names:
            _fail(f"{path}.name", f"{record['name']!r} is retired but still an entry of models")
        if record["name"] in aliases:
            _fail(f"{path}.name", f"{record['name']!r} appears twice")
        if record["replaced_by"] not in names:
            _fail(f"{path}.replaced_by", f"{record['replaced_by']!r} is not an entry of models")
        aliases.add(record["name"])


# --------------------------------------------------------------- reading
def _manifest_file(path=None) -> pathlib.Path:
    """The manifest path with symlinks resolved, so bundled presets are found next to the real file."""
    return pathlib.Path(path or DEFAULT_MANIFEST).expanduser().resolve()


def read_manifest(path=None) -> dict:
    """Read and validate a manifest (default: the one shipped in the package)."""
    path = _manifest_file(path)
    if not path.is_file():
        raise ConfigError(f"no weights manifest at {path}")
    data = read_json(path)
    try:
        validate_manifest(data)
    except ConfigError as exc:
        raise ConfigError(f"{path} is invalid: {exc}") from None
    return data


def retired_record(manifest: dict, name) -> dict | None:
    """The ``retired`` record of ``name`` (what it now gives, its last version, why), or None if it is not retired."""
    return next((dict(r) for r in manifest.get("retired", []) if r["name"] == name), None)


def find_entry(manifest: dict, name) -> dict:
    """The entry called ``name`` (a deep copy), or ModelNotFoundError with close matches.

    A retired name gives its replacement's entry, with a FutureWarning naming both.
    """
    for entry in manifest["models"]:
        if entry["name"] == name:
            return copy.deepcopy(entry)
    if isinstance(name, str) and name != name.strip().lower():  # zoo names are lower case: VAE-ChestXray-F8C4 too
        return find_entry(manifest, name.strip().lower())
    record = retired_record(manifest, name)
    if record is not None:
        warnings.warn(retirement_message(record), FutureWarning, stacklevel=3)
        return find_entry(manifest, record["replaced_by"])
    names = [entry["name"] for entry in manifest["models"]]
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
    known = f" Known models: {', '.join(names)}." if names else " The zoo has no pretrained models yet."
    raise ModelNotFoundError(f"unknown model {name!r}{hint}{known} (medzoo list, or medzoo.list_models(), "
                             f"describes them)")


def retirement_message(record: dict) -> str:
    """What a user who names a retired model is told."""
    return (f"{record['name']!r} (last version {record['last_version']}) is retired; it now gives "
            f"{record['replaced_by']!r}: {record['note']} Use {record['replaced_by']!r} to silence this warning.")


def get_entry(name, *, manifest_path=None) -> dict:
    """The manifest entry of a model (a copy); unknown names raise ModelNotFoundError with suggestions."""
    return find_entry(read_manifest(manifest_path), name)


def priors_of(autoencoder: str, *, manifest_path=None) -> list[str]:
    """The zoo's latent priors (family ``prior``) that generate with the autoencoder called ``autoencoder``."""
    return [entry["name"] for entry in read_manifest(manifest_path)["models"]
            if entry["family"] == "prior" and entry["config"]["config"].get("autoencoder") == autoencoder]


def bundled_dir(entry: dict, manifest_path=None) -> pathlib.Path | None:
    """Where the bundled copy of an entry lives (next to the manifest), or None if it is not bundled."""
    bundled = entry["sources"]["bundled"]
    return _manifest_file(manifest_path).parent / bundled if bundled else None


# ---------------------------------------------------------------- writing
def _hub_source(hub) -> dict | None:
    if hub is None:
        return None
    if isinstance(hub, str):
        ref = parse_hf_uri(hub)
        hub = {"repo_id": ref.repo_id, "revision": ref.revision, "filename": ref.path_in_repo(WEIGHTS_FILE)}
    if not isinstance(hub, dict):
        raise ConfigError(f"hub must be {{repo_id, revision[, filename]}} or 'hf://org/repo@commit', got {hub!r}")
    return {"repo_id": hub.get("repo_id"), "revision": hub.get("revision"),
            "filename": hub.get("filename", WEIGHTS_FILE)}


def _bundle(preset_dir: pathlib.Path, target: pathlib.Path) -> None:
    """Copy the preset files to ``target``, replacing what was there, without a half-copied state."""
    if target.exists() and target.resolve() == preset_dir.resolve():
        return
    copy_preset(preset_dir, [p.name for p in preset_dir.iterdir()], target)  # check_preset allowed only preset files


def add_to_manifest(preset_dir, *, manifest_path=None, bundle=True, hub=None) -> dict:
    """Make a manifest entry from a preset directory, and write it into the manifest.

    Args:
        preset_dir: a folder written by ``save_preset`` (checked: files, digests, config);
            its optional files (a VQ-VAE's ``entropy_model.npz``, see
            ``medzoo.codec.entropy.save_to_preset``) are listed and bundled with the others.
        manifest_path: the manifest to update (default: the package's; created if missing).
        bundle: copy the preset into ``presets/<name>/`` next to the manifest (package
            data, shipped in the wheel) and record it as a source: only the default model
            (``medzoo demo``'s); the others pass ``bundle=False``. For the package's manifest
            the preset is also kept in a checkout's ``presets/<name>/`` (what ``medzoo push``
            publishes and what an offline mirror holds).
        hub: the Hub copy as ``{"repo_id", "revision"[, "filename"]}`` or
            ``"hf://org/repo@commit"``; revision must be a commit id (``push_to_hub``
            returns it); filename defaults to ``model.weights.h5`` at the repo root.

    Returns:
        The entry. An entry of the same name is replaced; entries stay sorted by name.

    Raises:
        ConfigError: the preset or the resulting entry is invalid (the message names
            the field, e.g. ``ae_cxr128.training.dataset.citation: expected a non-empty...``).
    """
    preset_dir = pathlib.Path(preset_dir)
    metadata, config = check_preset(preset_dir)
    name = metadata["name"]
    entry = {
        "name": name,
        "family": metadata["family"],
        "description": metadata.get("description", ""),
        "version": metadata["version"],
        "licence": metadata["licence"],
        "parameters": metadata["parameters"],
        "weights_dtype": metadata["weights"]["dtype"],
        "config": config,
        "input": metadata["input"],
        "training": metadata.get("training") or {},
        "metrics": metadata.get("metrics") or {},
        "files": [file_record(preset_dir / f) for f in PRESET_FILES if (preset_dir / f).is_file()],
        "sources": {"bundled": f"{BUNDLE_DIR}/{name}" if bundle else None, "hub": _hub_source(hub)},
    }
    path = _manifest_file(manifest_path)
    manifest = read_manifest(path) if path.exists() else {"format_version": FORMAT_VERSION, "models": []}
    previous = next((e for e in manifest["models"] if e["name"] == name), None)
    if previous is not None:  # what no preset holds survives a refresh: why it stays, and a Hub pin of the same files
        if previous.get("kept_because"):
            entry["kept_because"] = previous["kept_because"]
        if hub is None and previous["sources"].get("hub") and previous["files"] == entry["files"]:
            entry["sources"]["hub"] = previous["sources"]["hub"]
    entry = {key: entry[key] for key in (*_ENTRY_ORDER, "kept_because") if key in entry}
    validate_entry(entry, name)

    models = sorted([e for e in manifest["models"] if e["name"] != name] + [entry], key=lambda e: e["name"])
    manifest = {**manifest, "format_version": FORMAT_VERSION, "models": models}
    validate_manifest(manifest)
    if bundle:
        _bundle(preset_dir, path.parent / BUNDLE_DIR / name)
    if manifest_path is None and CHECKOUT_PRESETS.is_dir():
        _bundle(preset_dir, CHECKOUT_PRESETS / name)
    _write_manifest(manifest, path)
    return copy.deepcopy(entry)


def _write_manifest(manifest: dict, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write_json(tmp, manifest)
    os.replace(tmp, path)


def pin_hub_sources(sources: dict, *, manifest_path=None) -> None:
    """Record ``{name: {"repo_id", "revision", "filename"}}`` as those entries' hub sources (commits, validated)."""
    path = _manifest_file(manifest_path)
    manifest = read_manifest(path)
    unknown = set(sources) - {entry["name"] for entry in manifest["models"]}
    if unknown:
        raise ConfigError(f"no manifest entries named {sorted(unknown)}")
    models = [{**entry, "sources": {**entry["sources"], "hub": _hub_source(sources[entry["name"]])}}
              if entry["name"] in sources else entry for entry in manifest["models"]]
    manifest = {**manifest, "models": models}
    validate_manifest(manifest)
    _write_manifest(manifest, path)


def retire(name, replaced_by, note, *, manifest_path=None) -> dict:
    """Retire an entry in favour of a better one: its name becomes an alias of ``replaced_by``.

    The entry and its bundled files leave the package; ``load(name)`` then gives the
    replacement with a FutureWarning carrying ``note`` (say why, e.g. what
    ``benchmarks/retirement.py`` measured). Returns the ``retired`` record.
    """
    path = _manifest_file(manifest_path)
    manifest = read_manifest(path)
    old = find_entry(manifest, name)
    if old["name"] != name:
        raise ConfigError(f"{name!r} is already retired (it gives {old['name']!r})")
    find_entry(manifest, replaced_by)
    record = {"name": name, "replaced_by": replaced_by, "last_version": old["version"], "note": note}
    manifest = {**manifest, "models": [e for e in manifest["models"] if e["name"] != name],
                "retired": sorted([*manifest.get("retired", []), record], key=lambda r: r["name"])}
    validate_manifest(manifest)
    folder = bundled_dir(old, path)
    _write_manifest(manifest, path)
    for stale in (folder, CHECKOUT_PRESETS / name if manifest_path is None else None):
        if stale is not None and stale.is_dir():
            shutil.rmtree(stale)
    return dict(record)


# ------------------------------------------------------------------ views
def _human_size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


def _human_count(count) -> str:
    if not count:
        return "?"
    return f"{count / 1e6:.2f}M" if count >= 1e6 else f"{count / 1e3:.1f}k" if count >= 1e3 else str(count)


class ModelTable(list):
    """``list_models()`` result: a list of summary dicts that prints (and renders in notebooks) as a table."""

    COLUMNS = ("name", "family", "input", "params", "size", "licence", "sources", "description")

    def rows(self):
        """One dict of display strings per model, keyed by :attr:`COLUMNS` (what every rendering shows)."""
        for m in self:
            yield {
                "name": m["name"], "family": m["family"], "input": input_label(m["input_shape"]),
                "params": _human_count(m["parameters"]), "size": _human_size(m["size_bytes"]),
                "licence": m["licence"], "sources": "+".join(m["sources"]),
                "description": m["description"] if len(m["description"]) <= 50 else m["description"][:49] + "…",
            }

    #: the manifest's ``retired`` records: names that now give another entry
    retired: list = []

    def __str__(self):
        if not self:
            return "no pretrained models in the zoo yet"
        rows = list(self.rows())
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in self.COLUMNS}
        lines = ["  ".join(c.ljust(widths[c]) for c in self.COLUMNS).rstrip(),
                 "  ".join("-" * widths[c] for c in self.COLUMNS)]
        lines += ["  ".join(r[c].ljust(widths[c]) for c in self.COLUMNS).rstrip() for r in rows]
        if self.retired:
            lines += ["", "retired names (each gives its replacement): "
                      + ", ".join(f"{r['name']} -> {r['replaced_by']}" for r in self.retired)]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self):
        head = "".join(f"<th>{c}</th>" for c in self.COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in self.COLUMNS) + "</tr>"
                       for r in self.rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def list_models(*, manifest_path=None) -> ModelTable:
    """The pretrained models of the zoo: a list of summary dicts that prints as a table.

    Each dict has name, family, description, version, licence, input_shape,
    value_range, parameters, size_bytes, sources (``"bundled"``, ``"hub"``) and
    metrics; ``info(name)`` gives the full manifest entry.
    """
    manifest = read_manifest(manifest_path)
    table = ModelTable()
    table.retired = copy.deepcopy(manifest.get("retired", []))
    for entry in manifest["models"]:
        table.append({
            "name": entry["name"],
            "family": entry["family"],
            "description": entry["description"],
            "version": entry["version"],
            "licence": entry["licence"],
            "input_shape": tuple(entry["input"]["shape"]),
            "value_range": tuple(entry["input"]["value_range"]),
            "parameters": entry.get("parameters"),
            "size_bytes": sum(f["size"] for f in entry["files"]),
            "sources": [s for s in ("bundled", "hub") if entry["sources"][s]],
            "metrics": copy.deepcopy(entry["metrics"]),
        })
    return table


def info(name, *, manifest_path=None) -> dict:
    """Everything the manifest says about one model: config, input contract, training, metrics, files, sources.

    A codec's entry (a hyperprior, or an autoencoder trained for rate) also has ``"codec"``:
    ``{"qualities": [...]}``, one row per quality level (``quality``, ``lambda`` or ``factor`` and
    ``step``, ``bpp`` of real streams, ``psnr``, ``ssim`` on its test split).
    """
    entry = get_entry(name, manifest_path=manifest_path)
    if entry["family"] == "codec" or entry["metrics"].get("qualities"):
        split = (entry["training"].get("splits") or {}).get("metrics", "test")
        measured = entry["metrics"].get("qualities") or {}
        per_dataset = entry["metrics"].get("per_dataset") or {}
        of = f" of {next(iter(per_dataset))}" if per_dataset else ""  # a mixture's codec: its first dataset
        entry["codec"] = {"qualities": [{"quality": int(q), **row} for q, row in sorted(measured.items(),
                                                                                      key=lambda kv: int(kv[0]))],
                          "measured_on": f"split {split!r}{of}, each image in a stream of its own (header included)"}
    return entry


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _training_stages(training: dict) -> list[dict]:
    """The training records of a model and of every stage it was initialised from, newest first."""
    stages = []
    while isinstance(training, dict) and training:
        stages.append(training)
        training = (training.get("initialized_from") or {}).get("training")
    return stages


def _first_source(training: dict) -> str:
    source = None
    while isinstance(training, dict) and training.get("initialized_from"):
        source = training["initialized_from"]
        training = source.get("training")
    return f"{source.get('model')} {source.get('version') or ''}".strip() if source else "scratch"


def _metric_rows(metrics: dict, label: str) -> list[tuple[str, str]]:
    """Metrics as a small table: one row per dataset (or per codec quality), the figures in columns."""
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    groups = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    per_dataset = groups.get("per_dataset")
    # several datasets: the top-level figures are the mean of their means (each dataset an equal share), not a
    # mean over images, and the image count is their sum; say so rather than call it "all"
    top = (f"equal-share mean of {len(per_dataset)} datasets" if isinstance(per_dataset, dict) and len(per_dataset) > 1
           else "all" if groups else "")
    table = [(top, scalars)] if scalars else []
    for group, rows in groups.items():
        table += [(f"{group} {name}" if group not in ("per_dataset",) else name, dict(_flatten(row)))
                  for name, row in rows.items()] if all(isinstance(r, dict) for r in rows.values()) else \
            [(group, dict(_flatten(rows)))]
    columns = list(dict.fromkeys(k for _, row in table for k in row))

    def cell(value):
        return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    names = [name for name, _ in table]
    cells = [[cell(row.get(c)) for c in columns] for _, row in table]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    first = max((len(n) for n in names), default=0)
    lines = [" " * first + "  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths))]
    lines += [f"{name:<{first}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(row, widths))
              for name, row in zip(names, cells)]
    return [(label if i == 0 else "", line.rstrip()) for i, line in enumerate(lines)]


def describe(name, *, manifest_path=None) -> str:
    """A readable summary of one model's manifest entry (``medzoo info NAME``; ``info(name)`` has everything)."""
    entry = get_entry(name, manifest_path=manifest_path)
    inp, training = entry["input"], entry["training"]
    spec = inp.get("preprocess") or {}
    dataset = training.get("dataset") or {}
    dataset = dataset if isinstance(dataset, dict) else {"name": str(dataset)}
    lines = [f"{entry['name']} {entry['version']}  ({entry['family']}, {_human_count(entry.get('parameters'))} "
             f"parameters, {entry.get('weights_dtype', 'float32')} weights, licence {entry['licence']})",
             entry["description"], ""]
    rows = [("input", f"{input_label(inp['shape'])}, values in [{inp['value_range'][0]:g}, "
                      f"{inp['value_range'][1]:g}]")]
    if spec:
        normalize = spec.get("normalize")
        if normalize == "minmax" and spec.get("percentiles"):
            normalize += " (percentiles {:g}-{:g})".format(*spec["percentiles"])
        rows.append(("preprocess", f"{geometry_label(spec)}, "
                                   f"{spec.get('channels')} channel(s), normalize {normalize}"))
    trained = f"recipe {training.get('recipe')}, {training.get('epochs')} epochs on {dataset.get('name')}"
    if training.get("classes") is not None:
        trained += f" (classes {training['classes']} only)"
    if training.get("wall_time_s"):
        trained += f", {training['wall_time_s']:.0f} s" + (f" on {training['hardware']}" if training.get("hardware") else "")
    if training.get("max_train_images"):
        trained += f" (a seeded subset of at most {training['max_train_images']} training images per dataset)"
    stages = _training_stages(training)
    if len(stages) > 1:
        total = sum(stage.get("wall_time_s") or 0 for stage in stages)
        trained += (f" (the last of {len(stages)} stages, from {_first_source(training)}; "
                    f"{total:.0f} s of training in all)")
    if entry["family"] == "prior":  # what it makes and with which autoencoder
        ae, sampling = training.get("autoencoder") or {}, training.get("sampling") or {}
        rows.append(("generates", f"labels {', '.join(training.get('labels') or []) or 'none'} (or none: any); "
                                  f"decodes with {ae.get('name')} {ae.get('version') or ''}; {sampling.get('steps')} "
                                  f"steps, guidance {sampling.get('guidance')} (medzoo generate {entry['name']})"))
    rows += [("training", trained), ("data", f"{dataset.get('licence', '?')}; {dataset.get('citation', '?')}")]
    splits = training.get("splits") or {}
    rows += _metric_rows(entry["metrics"], f"metrics ({splits.get('metrics', 'test')})")
    rows += [("files" if i == 0 else "", f"{f['filename']:<18} {_human_size(f['size']):>8}  sha256 {f['sha256']}")
             for i, f in enumerate(entry["files"])]
    hub = entry["sources"]["hub"]
    rows.append(("sources", "; ".join(
        ([f"bundled in the package ({entry['sources']['bundled']})"] if entry["sources"]["bundled"] else [])
        + ([f"hf://{hub['repo_id']}@{hub['revision']}"] if hub else ["no Hub copy"]))))
    width = max(len(label) for label, _ in rows)
    lines += [f"{label:<{width}}  {text}".rstrip() for label, text in rows]
    return "\n".join(lines)
