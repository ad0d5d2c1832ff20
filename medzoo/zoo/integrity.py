"""sha256 digests and the one check every zoo file passes before it is used.

Whatever the source of a preset (the cache, the copy bundled in the package, a
hub download, a folder on disk), its files go through :func:`verify_files`
before a single weight is read, so there is exactly one place that decides
whether a file is trusted.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
from typing import Mapping

from medzoo.errors import IntegrityError

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: str | os.PathLike) -> dict:
    """``{"filename", "size", "sha256"}`` of a file, the form the manifest lists files in."""
    path = pathlib.Path(path)
    return {"filename": path.name, "size": path.stat().st_size, "sha256": sha256_file(path)}


def verify_files(directory: str | os.PathLike, expected: Mapping[str, str], *, origin: str) -> None:
    """Check that each ``filename -> sha256`` of ``expected`` matches the file in ``directory``.

    Args:
        directory: the folder holding the files.
        expected: the published digests (from the manifest, or recorded in a preset's metadata).
        origin: where the files came from, for the error message (e.g. ``"the cache (/path)"``).

    Raises:
        IntegrityError: for a missing file or a digest mismatch; the message names the
            file, the expected and the actual digest.
    """
    directory = pathlib.Path(directory)
    for filename, want in sorted(expected.items()):
        path = directory / filename
        if not path.is_file():
            raise IntegrityError(f"{filename} is missing from {origin} ({directory})")
        actual = sha256_file(path)
        if actual != want:
            raise IntegrityError(
                f"{filename} from {origin} has sha256 {actual}, expected {want}; the file was not used"
            )
