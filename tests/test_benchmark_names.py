"""A script of ``benchmarks/`` runs with its folder first on ``sys.path``, so a script named like a module that
medzoo's libraries import shadows it there: ``benchmarks/compression.py`` broke every benchmark under JAX,
whose compilation cache tries ``from compression import zstd`` (the standard library's since Python 3.14)."""

import importlib.metadata
import sys

from conftest import REPO_ROOT

#: standard-library modules newer than some Python medzoo supports, which libraries already try to import
NEWER_STDLIB = {"compression", "annotationlib"}


def test_no_benchmark_script_is_named_like_a_module_a_library_may_import():
    scripts = {path.stem for path in (REPO_ROOT / "benchmarks").glob("*.py")}
    assert {"reconstruction", "codec_comparison", "_common"} <= scripts
    taken = set(sys.stdlib_module_names) | NEWER_STDLIB | set(importlib.metadata.packages_distributions())
    assert not scripts & taken, sorted(scripts & taken)
