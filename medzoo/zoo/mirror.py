"""Offline mirrors of the zoo: a folder with one preset sub-folder per entry, named after it.

The repository keeps every preset this way (``presets/<name>/``: what gets published to the
Hub), so a checkout's ``presets/`` is itself a mirror; ``medzoo download NAME... --to DIR``
writes one for a site without internet. Which mirror ``medzoo.load`` uses:

* ``$MEDZOO_MIRROR``: every entry resolves from that folder and nowhere else (offline; an
  entry missing there is an error, never a download);
* else, in a source checkout, its ``presets/`` folder, tried first and then the cache, the
  copy bundled in the package and the Hub.

Files from a mirror are checked against the manifest's sha256 like any other copy: a
tampered file is refused with an :class:`~medzoo.errors.IntegrityError`.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

from medzoo.errors import ConfigError

MIRROR_ENV = "MEDZOO_MIRROR"
#: the repository's store of every preset (exists in a source checkout, not in an installed wheel)
CHECKOUT_PRESETS = pathlib.Path(__file__).resolve().parents[2] / "presets"


def mirror_root() -> tuple[pathlib.Path | None, bool]:
    """``(folder, exclusive)``: ``$MEDZOO_MIRROR`` (exclusive), else a checkout's ``presets/`` (not), else None."""
    configured = os.environ.get(MIRROR_ENV)
    if configured:
        folder = pathlib.Path(configured).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"${MIRROR_ENV}={configured} is not a folder (a mirror holds one preset folder per "
                              "model: medzoo download NAME --to DIR writes one)")
        return folder, True
    if CHECKOUT_PRESETS.is_dir():
        return CHECKOUT_PRESETS, False
    return None, False


def copy_preset(source: pathlib.Path, filenames, target: pathlib.Path) -> pathlib.Path:
    """Copy a preset's ``filenames`` into ``target`` (replaced whole, never left half-written)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}-new-", dir=target.parent))
    try:
        for name in filenames:
            shutil.copyfile(source / name, staging / name)
        if target.exists():
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
            os.replace(target, old / "preset")
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
