"""Publishing the zoo: every preset of a checkout's ``presets/`` to its own Hub repository, pinned in the manifest.

The wheel ships the default model only; the other presets reach users from the Hugging Face
Hub, one model repository per entry (``<org>/<name>``, its model card the repository's
README). :func:`publish` (``medzoo push``) uploads each preset, after checking its files
against the manifest's sha256, and records the commit it made as the entry's pinned hub
source, so ``medzoo.load`` downloads exactly those bytes.
"""

from __future__ import annotations

import pathlib

from medzoo.errors import ConfigError
from medzoo.zoo.hub import push_to_hub
from medzoo.zoo.integrity import verify_files
from medzoo.zoo.manifest import find_entry, pin_hub_sources, read_manifest
from medzoo.zoo.mirror import CHECKOUT_PRESETS
from medzoo.zoo.safety import WEIGHTS_FILE


def publish(names=None, *, org: str, store=None, token=None, manifest_path=None) -> dict[str, str]:
    """Upload presets to ``hf://<org>/<name>`` and pin each commit in the manifest.

    Args:
        names: zoo names (default: every entry of the manifest).
        org: the Hub user or organisation that owns the repositories.
        store: the folder holding ``<name>/`` presets (default: the checkout's ``presets/``).
        token: a Hugging Face token with write access (default: the logged-in one).
        manifest_path: the manifest to update (default: the package's).

    Returns:
        ``{name: commit}`` of what was uploaded.

    Raises:
        ConfigError: no store, an unknown name; IntegrityError: a preset file differs from the manifest.
    """
    store = pathlib.Path(store) if store is not None else CHECKOUT_PRESETS
    if not store.is_dir():
        raise ConfigError(f"no presets folder at {store}: publish from a checkout of the repository (or pass store=)")
    manifest = read_manifest(manifest_path)
    names = list(names) if names else [entry["name"] for entry in manifest["models"]]
    entries = {name: find_entry(manifest, name) for name in names}
    commits = {}
    for name, entry in entries.items():
        folder = store / name
        verify_files(folder, {r["filename"]: r["sha256"] for r in entry["files"]}, origin=f"the store {store}")
        commits[name] = push_to_hub(folder, f"{org}/{name}", token=token,
                                    commit_message=f"{name} {entry['version']} (medzoo preset)")
    pin_hub_sources({name: {"repo_id": f"{org}/{name}", "revision": commit, "filename": WEIGHTS_FILE}
                     for name, commit in commits.items()}, manifest_path=manifest_path)
    return commits
