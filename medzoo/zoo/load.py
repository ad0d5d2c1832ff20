"""``medzoo.load``: a zoo name, a preset folder or an ``hf://`` reference -> a verified, ready model.

For a zoo name the sources are tried in this order, and the first one that has
all the files is used (after checking each file's sha256 against the manifest):

1. an offline mirror (:mod:`medzoo.zoo.mirror`): ``$MEDZOO_MIRROR``, the only source
   when set, or a source checkout's ``presets/`` folder;
2. the medzoo cache (copies of earlier hub downloads),
3. the copy bundled in the package (the default model only: the wheel stays small),
4. the Hub repository at the commit the manifest pins (skipped with
   ``local_files_only=True``).

A copy whose digest is wrong is never skipped silently: it raises
:class:`~medzoo.errors.IntegrityError`. The source used is announced (logging, or
stderr when logging is not configured) and recorded in ``model.zoo_metadata["source"]``.

:func:`fetch` does the same without building the model: it makes the files available
(downloading into the cache if needed), verifies them, and says where they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import posixpath
import warnings

from medzoo.errors import ConfigError, IntegrityError, ModelNotFoundError
from medzoo.zoo.hub import (
    FilesUnavailableError,
    HubRef,
    announce,
    cache_root,
    cached_snapshot,
    download,
    is_commit,
    parse_hf_uri,
    resolve_cached_commit,
)
from medzoo.zoo.manifest import bundled_dir, find_entry, read_manifest
from medzoo.zoo.integrity import verify_files
from medzoo.zoo.mirror import MIRROR_ENV, mirror_root

#: where the presets of entries without a Hub copy live (each in presets/NAME/)
REPOSITORY = "https://github.com/medzoo/medzoo"
from medzoo.zoo.presets import load_preset, read_metadata, recorded_digests
from medzoo.zoo.safety import BASE_FILES

_SOURCES = {"mirror": "offline mirror", "cache": "medzoo cache", "bundled": "copy bundled in the package",
            "hub": "Hugging Face Hub", "path": "preset directory"}
_HINTS = {
    "mirror": "this is the mirror's copy ({folder}): replace it with a verified one (medzoo download NAME --to "
              "MIRROR on a machine with internet)",
    "cache": "this is medzoo's cached copy: delete {folder} or load with force_download=True to fetch it again",
    "bundled": "this is the copy bundled in the package: reinstall medzoo",
}


def _looks_like_path(text: str) -> bool:
    return any(sep in text for sep in ("/", os.sep)) or text.startswith((".", "~"))


def _no_download(where: str) -> str:
    """Why the files may not be downloaded now, and how to get them (``where``: what a download would fetch)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        why, how = "HF_HUB_OFFLINE is set (offline mode)", "unset HF_HUB_OFFLINE and load it once with network access"
    else:
        why, how = "local_files_only=True", "load it once with network access, without local_files_only"
    return (f"{why}; to get the weights, {how} ({where}), "
            "or point cache_dir (or $MEDZOO_CACHE) to a medzoo cache that has them")


def load(name_or_path, *, cache_dir=None, local_files_only=False, force_download=False, compile=True,
         manifest_path=None, autoencoder=None):
    """Load a pretrained model: a zoo name, a preset directory, or ``"hf://org/repo@revision"``.

    Args:
        name_or_path: a name from ``medzoo.list_models()``; a path to a preset
            directory (verified against the digests its metadata records); or a Hub
            reference ``hf://org/repo[@revision][/subfolder]`` holding a preset.
        cache_dir: medzoo cache folder (default ``$MEDZOO_CACHE`` or ``~/.cache/medzoo``).
        local_files_only: never touch the network; fail clearly if the files are not
            on disk (also implied by ``HF_HUB_OFFLINE=1``).
        force_download: ignore cached and bundled copies and download again.
        compile: compile the model (default optimizer) so it can be fine-tuned.
        manifest_path: another weights manifest than the package's.
        autoencoder: for a latent prior, the autoencoder it serves, already loaded (reused
            instead of loading it again); by default the prior loads the one it names.

    Returns:
        The model, with ``model.preprocess_spec`` (so ``model.preprocess(raw)`` and
        ``model.reconstruct(raw, preprocess=True)`` work) and ``model.zoo_metadata``
        (metadata.json plus ``source``: ``"mirror"``, ``"cache"``, ``"bundled"``, ``"hub"`` or ``"path"``).

    Raises:
        ModelNotFoundError: unknown name (with close matches).
        IntegrityError: a file does not have its published sha256.
        FilesUnavailableError: the files are neither on disk nor downloadable.
        ConfigError: a preset with unexpected files or a config naming non-medzoo classes.
    """
    from huggingface_hub import constants

    if local_files_only and force_download:
        raise ConfigError("local_files_only=True and force_download=True contradict each other")
    local_files_only = local_files_only or constants.is_offline_mode()
    options = dict(cache_dir=cache_dir, local_files_only=local_files_only, force_download=force_download,
                   compile=compile)
    model = _load(name_or_path, options, manifest_path)
    if type(model).__name__ == "LatentPrior":
        _attach_autoencoder(model, autoencoder, dict(options, manifest_path=manifest_path))
    return model


def _attach_autoencoder(prior, autoencoder, options) -> None:
    """Give a latent prior the autoencoder it names: the one passed in, or loaded like the prior."""
    wanted = prior.autoencoder_name
    recorded = ((prior.zoo_metadata.get("training") or {}).get("autoencoder") or {}).get("version")
    if autoencoder is None:
        try:
            autoencoder = load(wanted, **options)
        except (FilesUnavailableError, ModelNotFoundError) as exc:
            raise ConfigError(f"the prior {prior.zoo_metadata.get('name')} decodes with the autoencoder {wanted!r}, "
                              f"which could not be loaded: {exc}") from None
    name = (getattr(autoencoder, "zoo_metadata", None) or {}).get("name")
    version = (getattr(autoencoder, "zoo_metadata", None) or {}).get("version")
    if name is not None and name != wanted:
        raise ConfigError(f"this prior was trained on {wanted}'s latents, not {name}'s; pass autoencoder= {wanted} "
                          f"or leave it out")
    if recorded and version and version != recorded:
        warnings.warn(f"this prior was trained on {wanted} {recorded}'s latents; {version} is loaded, so its "
                      f"samples may be off until the prior is retrained", stacklevel=3)
    prior.attach(autoencoder)


def _load(name_or_path, options, manifest_path):
    if isinstance(name_or_path, os.PathLike):
        return _load_directory(pathlib.Path(name_or_path), options['compile'])
    if not isinstance(name_or_path, str):
        raise ConfigError(f"load() takes a zoo name, a path or 'hf://org/repo@revision', got {name_or_path!r}")
    if name_or_path.startswith("hf://"):
        return _load_hub_ref(parse_hf_uri(name_or_path), **options)
    if _looks_like_path(name_or_path):
        return _load_directory(pathlib.Path(name_or_path).expanduser(), options['compile'])
    manifest = read_manifest(manifest_path)
    if name_or_path not in {entry["name"] for entry in manifest["models"]} and pathlib.Path(name_or_path).is_dir():
        return _load_directory(pathlib.Path(name_or_path), options['compile'])
    return _load_entry(find_entry(manifest, name_or_path), manifest_path, **options)


def _finish(model, source: str, folder: pathlib.Path, what: str, **extra):
    model.zoo_metadata = {**model.zoo_metadata, "source": source, "path": str(folder), **extra}
    announce(f"loaded {what} from the {_SOURCES[source]} ({folder})")
    return model


def _load_directory(folder: pathlib.Path, compile: bool):
    return _finish(load_preset(folder, compile=compile), "path", folder, str(folder))


@dataclasses.dataclass(frozen=True)
class Fetched:
    """Where :func:`fetch` found a model's files, verified.

    Attributes:
        name: the zoo name (or the ``hf://`` reference) asked for.
        version: the manifest version (None for an ``hf://`` reference).
        source: ``"mirror"``, ``"cache"``, ``"bundled"`` or ``"hub"`` (downloaded just now).
        folder: the folder holding the verified preset files.
        files: ``{filename: sha256}`` of every file checked.
        hub: ``{"repo_id", "revision"}`` for files from the Hub or its cache, else None.
    """

    name: str
    version: str | None
    source: str
    folder: pathlib.Path
    files: dict
    hub: dict | None = None

    @property
    def size_bytes(self) -> int:
        return sum((self.folder / f).stat().st_size for f in self.files)


def fetch(name, *, cache_dir=None, local_files_only=False, force_download=False, manifest_path=None) -> Fetched:
    """Make a model's files available on disk and verify them, without building the model.

    The files are looked for exactly as :func:`load` looks for them (the cache, the copy
    bundled in the package, then the Hub at the pinned commit) and checked against the
    manifest's sha256 digests; a download goes into the medzoo cache, where later
    ``load`` calls find it. A bundled model needs no download: its bundled copy is verified.

    Args:
        name: a zoo name, or ``hf://org/repo[@revision][/subfolder]`` (checked against the
            digests its metadata.json records).
        cache_dir, local_files_only, force_download, manifest_path: as for :func:`load`.

    Returns:
        A :class:`Fetched` naming the folder and the verified files.

    Raises:
        ModelNotFoundError, IntegrityError, FilesUnavailableError, ConfigError: as :func:`load`.
    """
    from huggingface_hub import constants

    if local_files_only and force_download:
        raise ConfigError("local_files_only=True and force_download=True contradict each other")
    local_files_only = local_files_only or constants.is_offline_mode()
    options = dict(cache_dir=cache_dir, local_files_only=local_files_only, force_download=force_download)
    if not isinstance(name, str) or (_looks_like_path(name) and not name.startswith("hf://")):
        raise ConfigError(f"fetch() takes a zoo name or 'hf://org/repo@revision', got {name!r}; "
                          "a preset folder is already on disk (medzoo.load checks it)")
    if name.startswith("hf://"):
        ref = parse_hf_uri(name)
        source, folder, commit = _locate_hub_ref(ref, **options)
        expected = recorded_digests(read_metadata(folder))
        verify_files(folder, expected, origin=f"{_SOURCES[source]} of {ref.uri}")
        return Fetched(name, None, source, folder, expected, {"repo_id": ref.repo_id, "revision": commit})
    entry = find_entry(read_manifest(manifest_path), name)
    located = _locate_entry(entry, manifest_path, **options)
    with _hinted(located):
        verify_files(located.folder, located.files, origin=f"the {_SOURCES[located.source]}")
    return Fetched(name, entry["version"], located.source, located.folder, located.files, located.hub)


@dataclasses.dataclass(frozen=True)
class _Located:
    source: str
    folder: pathlib.Path
    files: dict
    ref: HubRef | None
    hub: dict | None


def _locate_entry(entry, manifest_path, *, cache_dir, local_files_only, force_download) -> _Located:
    """The first source holding all of an entry's files (downloading them if needed); not verified here."""
    name = entry["name"]
    expected = {record["filename"]: record["sha256"] for record in entry["files"]}
    hub = entry["sources"]["hub"]
    ref = HubRef(hub["repo_id"], hub["revision"], posixpath.dirname(hub["filename"])) if hub else None
    bundled = bundled_dir(entry, manifest_path)
    mirror, exclusive = mirror_root()
    mirrored = mirror / name if mirror is not None else None
    if exclusive:
        if force_download:
            raise ConfigError(f"force_download=True contradicts ${MIRROR_ENV}={mirror} (the only source when set)")
        if not all((mirrored / f).is_file() for f in expected):
            raise FilesUnavailableError(
                f"model {name!r} is not in the offline mirror ${MIRROR_ENV}={mirror} (expected {mirrored} with "
                f"{', '.join(expected)}); on a machine with internet, medzoo download {name} --to DIR writes it")
        return _Located("mirror", mirrored, expected, ref, None)

    candidates = []
    if not force_download:
        cached = cached_snapshot(ref, expected, cache_dir=cache_dir) if ref else None
        candidates = [(source, folder) for source, folder in (("mirror", mirrored), ("cache", cached),
                                                              ("bundled", bundled))
                      if folder is not None and all((folder / f).is_file() for f in expected)]
    if candidates:
        source, folder = candidates[0]
        hub_info = {"repo_id": ref.repo_id, "revision": ref.revision} if source == "cache" else None
        return _Located(source, folder, expected, ref, hub_info)

    looked = f"the cache ({cache_root(cache_dir)})" + (f" and the bundled copy ({bundled})" if bundled else "")
    if ref is None:
        if force_download:
            raise ConfigError(f"force_download=True, but model {name!r} has no hub source to download from")
        raise FilesUnavailableError(
            f"model {name!r} is not on the Hub yet and has no copy here (looked in {looked}). Its files are in the "
            f"medzoo repository's presets/{name}/: with a copy of it (git clone {REPOSITORY}), either set "
            f"{MIRROR_ENV}=CHECKOUT/presets, or run medzoo download {name} --from CHECKOUT --to DIR (copies and "
            f"verifies it) and set {MIRROR_ENV}=DIR")
    if local_files_only:
        raise FilesUnavailableError(
            f"model {name!r} is not available locally (looked in {looked}) and "
            + _no_download(f"it downloads {ref.uri} into the medzoo cache")
        )
    folder, commit = download(ref, list(expected), cache_dir=cache_dir, expected=expected)
    return _Located("hub", folder, expected, ref, {"repo_id": ref.repo_id, "revision": commit})


@contextlib.contextmanager
def _hinted(located: _Located):
    """Add what to do about it to an IntegrityError of a cached or bundled copy."""
    try:
        yield
    except IntegrityError as exc:
        if located.source not in _HINTS:
            raise
        hint = _HINTS[located.source].format(folder=located.folder)
        if located.source == "bundled" and located.ref is not None:
            hint += ", or load with force_download=True to use the Hub copy"
        raise IntegrityError(f"{exc}. {hint}") from None


def _load_entry(entry, manifest_path, *, cache_dir, local_files_only, force_download, compile):
    located = _locate_entry(entry, manifest_path, cache_dir=cache_dir, local_files_only=local_files_only,
                            force_download=force_download)
    with _hinted(located):
        model = load_preset(located.folder, compile=compile, verify=located.files)
    extra = {"hub": located.hub} if located.source == "hub" else {}
    return _finish(model, located.source, located.folder, f"{entry['name']} {entry['version']}", **extra)


def _locate_hub_ref(ref: HubRef, *, cache_dir, local_files_only, force_download):
    """``(source, folder, commit)`` of an ``hf://`` preset: the cached snapshot, or a fresh download."""
    folder = None
    if not force_download and (local_files_only or is_commit(ref.revision)):
        folder = cached_snapshot(ref, BASE_FILES, cache_dir=cache_dir)
    if folder is not None:
        return "cache", folder, resolve_cached_commit(ref, cache_dir=cache_dir)
    if local_files_only:
        raise FilesUnavailableError(
            f"{ref.uri} is not in the medzoo cache ({cache_root(cache_dir)}) and "
            + _no_download("it downloads into the medzoo cache")
        )
    folder, commit = download(ref, BASE_FILES, cache_dir=cache_dir)  # and the optional files its metadata records
    return "hub", folder, commit


def _load_hub_ref(ref: HubRef, *, cache_dir, local_files_only, force_download, compile):
    source, folder, commit = _locate_hub_ref(ref, cache_dir=cache_dir, local_files_only=local_files_only,
                                             force_download=force_download)
    if not is_commit(ref.revision):
        warnings.warn(
            f"{ref.uri} does not pin a commit, so what it loads can change; it resolved to commit {commit}: "
            f"load hf://{ref.repo_id}@{commit}{'/' + ref.subfolder if ref.subfolder else ''} for reproducible results",
            stacklevel=3,
        )
    model = load_preset(folder, compile=compile)  # digests recorded in the downloaded metadata.json
    return _finish(model, source, folder, ref.uri, hub={"repo_id": ref.repo_id, "revision": commit})


def copy_from_checkout(names, source, folder, *, manifest_path=None) -> list[Fetched]:
    """Copy zoo entries from a medzoo checkout (or its ``presets/`` folder) into a mirror ``folder/<name>/``.

    For entries with no Hub copy (the weights live in the repository): every file is
    checked against the manifest's sha256 in the checkout and again in the copy, so a
    checkout of another version is refused rather than mixed in.
    """
    from medzoo.zoo.mirror import copy_preset

    source, folder = pathlib.Path(source).expanduser(), pathlib.Path(folder).expanduser()
    presets = source / "presets" if (source / "presets").is_dir() else source
    manifest = read_manifest(manifest_path)
    written = []
    for name in names:
        entry = find_entry(manifest, name)
        expected = {record["filename"]: record["sha256"] for record in entry["files"]}
        origin = presets / entry["name"]
        if not all((origin / f).is_file() for f in expected):
            raise FilesUnavailableError(f"{origin} does not hold {entry['name']}'s files ({', '.join(expected)}): "
                                        f"--from takes a medzoo checkout or its presets/ folder")
        verify_files(origin, expected, origin=f"the checkout's copy in {origin}")
        target = folder / entry["name"]
        if target.resolve() != origin.resolve():
            copy_preset(origin, list(expected), target)
        verify_files(target, expected, origin=f"the mirror copy in {target}")
        written.append(Fetched(entry["name"], entry["version"], "mirror", target, expected))
    return written


def write_mirror(names, folder, *, cache_dir=None, local_files_only=False, force_download=False,
                 manifest_path=None) -> list[Fetched]:
    """Write an offline mirror: each zoo entry's verified preset into ``folder/<name>/``.

    Each model is fetched as :func:`fetch` does (downloading it if needed), then copied; the
    copy is verified again, so a mirror holds only files with the manifest's sha256. Point
    ``$MEDZOO_MIRROR`` at ``folder`` on a machine without internet.

    Returns:
        One :class:`Fetched` per name, describing the mirror copy (``source="mirror"``).
    """
    from medzoo.zoo.mirror import copy_preset

    folder = pathlib.Path(folder).expanduser()
    written = []
    for name in names:
        fetched = fetch(name, cache_dir=cache_dir, local_files_only=local_files_only, force_download=force_download,
                        manifest_path=manifest_path)
        target = folder / name
        if target.resolve() != fetched.folder.resolve():
            copy_preset(fetched.folder, list(fetched.files), target)
        verify_files(target, fetched.files, origin=f"the mirror copy in {target}")
        written.append(dataclasses.replace(fetched, source="mirror", folder=target, hub=None))
    return written
