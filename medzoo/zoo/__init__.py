"""The zoo: preset directories, the weights manifest, the Hub, and ``load``.

Modules, each one concept: ``integrity`` (sha256 and the one file check),
``safety`` (which files and configs are accepted from outside), ``card`` (model
cards), ``presets`` (save/load preset directories), ``hub`` (hf:// references,
cache, download, upload), ``manifest`` (weights_manifest.json: schema, entries,
listing) and ``load`` (name or path -> verified model). The zoo builds on
:mod:`medzoo.models` and :mod:`medzoo.data`; they never import it.
"""

from medzoo.zoo.hub import FilesUnavailableError, parse_hf_uri, push_to_hub
from medzoo.zoo.integrity import sha256_file, verify_files
from medzoo.zoo.load import Fetched, fetch, load, write_mirror
from medzoo.zoo.manifest import (
    add_to_manifest,
    describe,
    get_entry,
    info,
    list_models,
    read_manifest,
    validate_manifest,
)
from medzoo.zoo.presets import load_preset, save_preset, update_preset

__all__ = [
    "Fetched",
    "FilesUnavailableError",
    "add_to_manifest",
    "describe",
    "fetch",
    "get_entry",
    "info",
    "list_models",
    "load",
    "load_preset",
    "parse_hf_uri",
    "push_to_hub",
    "read_manifest",
    "save_preset",
    "sha256_file",
    "update_preset",
    "validate_manifest",
    "verify_files",
    "write_mirror",
]
