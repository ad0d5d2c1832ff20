"""The Hugging Face Hub side of the zoo: ``hf://`` references, the medzoo cache, download and upload.

Downloads go through ``huggingface_hub.hf_hub_download`` into a temporary folder
*inside* the cache; the files are verified there (:func:`~medzoo.zoo.integrity.verify_files`)
and only then renamed into place, so a file with the wrong digest is never used
and never left in the cache.

Cache layout (root: ``cache_dir``, else ``$MEDZOO_CACHE``, else ``~/.cache/medzoo``)::

    <root>/hub/<org>--<repo>/<commit>[.<subfolder>]/   the verified preset files
    <root>/hub/<org>--<repo>/refs/<branch or tag>      the commit it last resolved to
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
import sys
import tempfile
import urllib.parse

from medzoo.errors import ConfigError, IntegrityError, MedzooError
from medzoo.zoo.integrity import verify_files
from medzoo.zoo.presets import check_preset, read_metadata, recorded_digests
from medzoo.zoo.safety import METADATA_FILE, PRESET_FILES
from medzoo.version import __version__

CACHE_ENV = "MEDZOO_CACHE"
REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")

log = logging.getLogger("medzoo.zoo")


class FilesUnavailableError(MedzooError, FileNotFoundError):
    """A model's files cannot be had: not on disk with ``local_files_only``, or the hub refused or failed."""


def announce(message: str) -> None:
    """Tell the user what the zoo is doing: through logging if it is configured, else on stderr."""
    log.info(message)
    if not log.hasHandlers():
        print(f"medzoo: {message}", file=sys.stderr)


def cache_root(cache_dir=None) -> pathlib.Path:
    """The medzoo cache folder: ``cache_dir``, else ``$MEDZOO_CACHE``, else ``~/.cache/medzoo``."""
    root = cache_dir or os.environ.get(CACHE_ENV) or pathlib.Path("~") / ".cache" / "medzoo"
    return pathlib.Path(root).expanduser()


def is_commit(revision) -> bool:
    """Whether ``revision`` is a full commit hash, the only immutable kind of revision."""
    return isinstance(revision, str) and bool(COMMIT_PATTERN.match(revision))


@dataclasses.dataclass(frozen=True)
class HubRef:
    """A preset on the Hub: repository, revision (``None``: the default branch) and folder in the repo."""

    repo_id: str
    revision: str | None = None
    subfolder: str = ""

    def __post_init__(self):
        if not isinstance(self.repo_id, str) or not REPO_ID_PATTERN.match(self.repo_id):
            raise ConfigError(f"a Hub repo id looks like 'org/name', got {self.repo_id!r}")
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision.strip()):
            raise ConfigError(f"revision must be a non-empty string, got {self.revision!r}")
        parts = self.subfolder.split("/") if self.subfolder else []
        if any(part in ("", ".", "..") for part in parts):
            raise ConfigError(f"subfolder must be a plain relative path inside the repo, got {self.subfolder!r}")

    @property
    def uri(self) -> str:
        revision = f"@{urllib.parse.quote(self.revision, safe='')}" if self.revision else ""
        return f"hf://{self.repo_id}{revision}" + (f"/{self.subfolder}" if self.subfolder else "")

    def path_in_repo(self, filename: str) -> str:
        return f"{self.subfolder}/{filename}" if self.subfolder else filename


def parse_hf_uri(uri: str) -> HubRef:
    """``hf://org/repo[@revision][/subfolder]`` -> :class:`HubRef` (a ``/`` in the revision is written ``%2F``)."""
    if not isinstance(uri, str) or not uri.startswith("hf://"):
        raise ConfigError(f"expected a hub reference 'hf://org/repo@revision', got {uri!r}")
    parts = uri[len("hf://"):].strip("/").split("/")
    if len(parts) < 2:
        raise ConfigError(f"expected a hub reference 'hf://org/repo@revision', got {uri!r}")
    repo, _, revision = parts[1].partition("@")
    return HubRef(f"{parts[0]}/{repo}", urllib.parse.unquote(revision) or None, "/".join(parts[2:]))


def _repo_dir(root: pathlib.Path, ref: HubRef) -> pathlib.Path:
    return root / "hub" / ref.repo_id.replace("/", "--")


def _snapshot_dir(root: pathlib.Path, ref: HubRef, commit: str) -> pathlib.Path:
    suffix = f".{urllib.parse.quote(ref.subfolder, safe='')}" if ref.subfolder else ""
    return _repo_dir(root, ref) / f"{commit}{suffix}"


def _ref_file(root: pathlib.Path, ref: HubRef) -> pathlib.Path:
    return _repo_dir(root, ref) / "refs" / urllib.parse.quote(ref.revision or "main", safe="")


def resolve_cached_commit(ref: HubRef, *, cache_dir=None) -> str | None:
    """The commit of ``ref``: itself if pinned, else the one its branch resolved to at the last download."""
    if is_commit(ref.revision):
        return ref.revision
    ref_file = _ref_file(cache_root(cache_dir), ref)
    commit = ref_file.read_text().strip() if ref_file.is_file() else None
    return commit if is_commit(commit) else None


def cached_snapshot(ref: HubRef, filenames, *, cache_dir=None) -> pathlib.Path | None:
    """The cache folder holding all ``filenames`` of ``ref``, or None (not verified here: the loader does)."""
    commit = resolve_cached_commit(ref, cache_dir=cache_dir)
    if commit is None:
        return None
    folder = _snapshot_dir(cache_root(cache_dir), ref, commit)
    return folder if all((folder / name).is_file() for name in filenames) else None


def _download_errors() -> tuple[type[BaseException], ...]:
    """What ``hf_hub_download`` raises when the hub or the network fails to deliver a file.

    Hub errors and ``OSError`` (its size check; every error of the ``requests`` it used
    before 1.0), and the base error of the HTTP library it uses now (``httpx``), whose
    errors are not ``OSError``: a connection cut off mid-stream, after huggingface_hub's
    own attempts to resume, ends in one. ``HfHubHTTPError`` derives from that base error,
    so its bases name it whatever the library is.
    """
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    http_errors = tuple(cls for cls in HfHubHTTPError.__mro__[1:]
                        if cls.__module__.partition(".")[0] not in ("huggingface_hub", "builtins"))
    return (HfHubHTTPError, LocalEntryNotFoundError, OSError, *http_errors)


def _download_failure(filename: str, ref: HubRef, exc: BaseException) -> str:
    """The message of a failed download: what failed, and whether trying again can help."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    message = f"could not download {filename} from {ref.uri}: {type(exc).__name__}: {exc}"
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return message  # the hub refused (no such repo, revision or file, no access): retrying will not help
    return (f"{message}\nThe hub or the network failed mid-way; nothing was cached (a partial file is never "
            "kept), so calling medzoo.load again (no force_download needed) retries the download from the start")


def download(ref: HubRef, filenames, *, cache_dir=None, expected=None) -> tuple[pathlib.Path, str]:
    """Download ``filenames`` of ``ref``, verify them, and move them into the cache.

    Args:
        ref: what to download.
        filenames: preset file names to fetch (from ``ref.subfolder``).
        cache_dir: the medzoo cache root (see :func:`cache_root`).
        expected: ``{filename: sha256}`` to check, e.g. from the zoo manifest; ``None``
            checks the digests that the downloaded metadata.json records, and also
            downloads the optional files it records (a VQ-VAE's entropy model).

    Returns:
        ``(folder, commit)``: the cache folder now holding the files, and the commit
        they were downloaded at.

    Raises:
        IntegrityError: a file does not have its expected digest; nothing was cached.
        FilesUnavailableError: the hub (or the network) did not deliver a file.
    """
    import huggingface_hub


    root = cache_root(cache_dir)
    repo_dir = _repo_dir(root, ref)
    repo_dir.mkdir(parents=True, exist_ok=True)
    announce(f"downloading {', '.join(filenames)} from {ref.uri} into {repo_dir}")
    filenames = list(filenames)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=repo_dir) as tmp:
        tmp = pathlib.Path(tmp)
        hf_cache, staging = tmp / "hf", tmp / "files"
        staging.mkdir()
        commit = None

        def fetch(filename):
            nonlocal commit
            try:
                path = huggingface_hub.hf_hub_download(
                    ref.repo_id, ref.path_in_repo(filename), revision=commit or ref.revision, cache_dir=hf_cache,
                    library_name="medzoo", library_version=__version__,
                )
            except _download_errors() as exc:
                raise FilesUnavailableError(_download_failure(filename, ref, exc)) from exc
            # hf_hub_download returns <cache>/models--org--repo/snapshots/<commit>/<path in repo>
            commit = pathlib.Path(path).relative_to(hf_cache).parts[2]  # later files: the same commit
            os.replace(os.path.realpath(path), staging / filename)

        for filename in filenames:
            fetch(filename)
        try:
            if expected is None:
                expected = recorded_digests(read_metadata(staging))
                unrecorded = sorted(set(filenames) - set(expected) - {METADATA_FILE})
                if unrecorded:
                    raise IntegrityError(f"metadata.json of {ref.uri} records no sha256 for {unrecorded}")
                for filename in sorted(set(expected) - set(filenames)):  # optional files the preset has
                    fetch(filename)
                    filenames.append(filename)
            verify_files(staging, expected, origin=f"the download of {ref.uri} at commit {commit}")
        except IntegrityError as exc:
            raise IntegrityError(f"{exc}; the download was discarded and nothing was cached") from None
        folder = _snapshot_dir(root, ref, commit)
        folder.mkdir(parents=True, exist_ok=True)
        for filename in filenames:
            os.replace(staging / filename, folder / filename)
        if not is_commit(ref.revision):
            ref_file = _ref_file(root, ref)
            ref_file.parent.mkdir(exist_ok=True)
            (tmp / "ref").write_text(commit)
            os.replace(tmp / "ref", ref_file)
    return folder, commit


def push_to_hub(preset_dir, repo_id, *, revision=None, private=False, token=None, commit_message=None) -> str:
    """Upload a preset directory to a Hub model repository and return the commit id to pin.

    The preset is checked first (only preset files, digests, a safe config), so
    nothing is published that ``medzoo.load`` would refuse. Only the preset files
    are uploaded, to the repository root of branch ``revision`` (created if needed;
    default: the main branch).

    Args:
        preset_dir: a folder written by :func:`~medzoo.zoo.presets.save_preset`.
        repo_id: ``"org/name"``; the repository is created if it does not exist.
        revision: branch to commit to.
        private: create the repository as private.
        token: a Hugging Face token (default: the logged-in one).
        commit_message: defaults to "Upload <name> <version> (medzoo preset)".

    Returns:
        The commit id (``oid``): record it as the revision in the manifest
        (``add_to_manifest(..., hub={"repo_id": repo_id, "revision": oid})``).
    """
    import huggingface_hub

    metadata, _ = check_preset(preset_dir)
    HubRef(repo_id, revision)  # validates both
    preset_dir = pathlib.Path(preset_dir)
    files = sorted(p.name for p in preset_dir.iterdir() if p.name in PRESET_FILES)
    api = huggingface_hub.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(preset_dir),
        repo_type="model",
        revision=revision,
        allow_patterns=files,
        commit_message=commit_message or f"Upload {metadata['name']} {metadata['version']} (medzoo preset)",
    )
    announce(f"uploaded {metadata['name']} to hf://{repo_id}@{info.oid}")
    return info.oid
