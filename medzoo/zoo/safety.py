"""What the zoo agrees to load from outside: a few named files, and configs of medzoo classes only.

A preset holds JSON (``config.json``, ``metadata.json``), a Markdown card and an
HDF5 weights file, and a VQ-VAE preset may add ``entropy_model.npz`` (its codec's
probability model: integer arrays and a JSON header, read with ``allow_pickle=False``):
never a pickle, a ``.keras`` archive or anything else that can carry code. Model
configs are checked *before* Keras sees them: the top-level object must be a
registered medzoo model family, nested objects must be medzoo-registered or plain
Keras classes, and Keras constructs that wrap arbitrary Python (``Lambda`` layers,
serialized functions and lambdas) are refused. Only then is the config
deserialized, with ``safe_mode=True``.
"""

from __future__ import annotations

import pathlib

from medzoo.errors import ConfigError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
CARD_FILE = "README.md"
#: a VQ-VAE's entropy model (medzoo.codec.entropy), the probability model its compressed streams are coded with
ENTROPY_MODEL_FILE = "entropy_model.npz"

#: the files ``save_preset`` writes, in the order they are written (metadata.json last: it vouches for the others)
BASE_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, METADATA_FILE)
#: files a preset may add (``presets.attach_file``); recorded and verified like the others
OPTIONAL_FILES = (ENTROPY_MODEL_FILE,)
#: every file a preset may contain
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, ENTROPY_MODEL_FILE, METADATA_FILE)
#: the files a preset must contain to be loaded
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)

#: zoo family -> the name of its class (``medzoo.models.FAMILIES`` without importing Keras; a test keeps them equal)
FAMILY_CLASS_NAMES = {"autoencoder": "ConvAutoencoder", "vae": "VAE", "vqvae": "VQVAE", "codec": "HyperpriorCodec",
                      "segmenter": "Segmenter", "prior": "LatentPrior"}
#: registered Keras names of the classes a preset's top-level config may name -> class name
MODEL_CLASSES = {f"medzoo>{name}": name for name in FAMILY_CLASS_NAMES.values()}
#: Keras class names that run arbitrary Python code, refused even from the keras package
_CODE_CARRIERS = {"Lambda", "TFSMLayer", "function", "__lambda__", "__python_function__"}


def check_preset_files(directory: str | pathlib.Path) -> pathlib.Path:
    """Refuse a preset folder with missing required files or with anything but :data:`PRESET_FILES`."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a preset directory")
    names = {p.name for p in directory.iterdir()}
    unexpected = sorted(names - set(PRESET_FILES))
    if unexpected:
        raise ConfigError(
            f"preset {directory} contains unexpected files {unexpected}; a medzoo preset holds only "
            f"{list(PRESET_FILES)} (no pickles, .keras archives or code). Remove them or use another folder"
        )
    missing = [name for name in REQUIRED_FILES if name not in names]
    if missing:
        raise ConfigError(f"preset {directory} lacks {missing}")
    return directory


def check_model_config(config) -> None:
    """Raise :class:`ConfigError` unless ``config`` names a medzoo model family and only safe nested objects.

    Checked on the plain JSON, before any class is looked up or imported.
    """
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise ConfigError("config.json is not a serialized Keras object (needs 'class_name' and 'config')")
    registered = config.get("registered_name")
    if registered not in MODEL_CLASSES:
        raise ConfigError(
            f"config.json names {registered or config.get('class_name')!r} (module {config.get('module')!r}); "
            f"medzoo only loads its own model families {sorted(MODEL_CLASSES)}"
        )
    if config.get("class_name") != MODEL_CLASSES[registered] or not str(
        config.get("module") or "medzoo."
    ).startswith("medzoo."):
        raise ConfigError(
            f"config.json: class_name {config.get('class_name')!r} / module {config.get('module')!r} "
            f"do not match the registered medzoo class {registered!r}"
        )
    _check_nested(config.get("config"), "config")
    _check_nested(config.get("build_config"), "build_config")


def _check_nested(value, path: str) -> None:
    """Walk a config: every nested serialized object must be medzoo-registered or a plain Keras class."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_nested(item, f"{path}[{i}]")
        return
    if not isinstance(value, dict):
        return
    if "class_name" in value:
        class_name = value.get("class_name")
        module = str(value.get("module") or "")
        registered = value.get("registered_name")
        if class_name in _CODE_CARRIERS:
            raise ConfigError(f"config.json: {path} is a {class_name!r}, which carries Python code; refused")
        if isinstance(registered, str) and registered.startswith("medzoo>"):
            import keras

            import medzoo.models  # noqa: F401  (registers medzoo's classes)

            if keras.saving.get_registered_object(registered) is None:
                raise ConfigError(f"config.json: {path} names {registered!r}, which medzoo does not define")
        elif not (module == "keras" or module.startswith("keras.")) or registered not in (None, class_name):
            raise ConfigError(
                f"config.json: {path} names {class_name!r} from module {module!r} "
                f"(registered as {registered!r}); only medzoo and Keras classes are allowed"
            )
    for key, item in value.items():
        _check_nested(item, f"{path}.{key}")


def deserialize_model(config: dict):
    """Check ``config`` (:func:`check_model_config`) and build the model with ``safe_mode=True``.

    A ``compile_config`` is ignored: presets carry no optimizer state, and the
    loader compiles with the model's default optimizer instead.
    """
    import keras

    from medzoo.models import AutoencoderModel, LatentPrior

    check_model_config(config)
    config = {key: value for key, value in config.items() if key != "compile_config"}
    model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    if not isinstance(model, (AutoencoderModel, LatentPrior)):  # unreachable after the check, kept as a last line
        raise ConfigError(f"config.json built a {type(model).__name__}, not a medzoo model")
    return model
