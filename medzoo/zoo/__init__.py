"""The zoo: preset directories, the weights manifest, the Hub, and ``load``.

Modules, each one concept: ``integrity`` (sha256 and the one file check),
``safety`` (which files and configs are accepted from outside), ``card`` (model
cards) and ``presets`` (save/load preset directories). The zoo builds on
:mod:`medzoo.models` and :mod:`medzoo.data`; they never import it.
"""

from medzoo.zoo.integrity import sha256_file, verify_files
from medzoo.zoo.presets import load_preset, save_preset, update_preset

__all__ = ["load_preset", "save_preset", "sha256_file", "update_preset", "verify_files"]
