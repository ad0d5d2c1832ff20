"""Shared pytest fixtures: where the real data lives, and a quiet TensorFlow."""

import importlib
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _shared_data_dir() -> pathlib.Path:
    env = os.environ.get("MEDZOO_DATA_DIR")
    return pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "data"


# library code (load_npz by name) and test subprocesses find the data through this variable
os.environ.setdefault("MEDZOO_DATA_DIR", str(_shared_data_dir()))


def import_benchmark(name: str):
    """A script of ``benchmarks/`` as a module, imported as it runs (its folder first on ``sys.path``)."""
    folder = str(REPO_ROOT / "benchmarks")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The folder of real, openly licensed images (``../shared/data`` or ``$MEDZOO_DATA_DIR``)."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"test data folder {path} is missing: set MEDZOO_DATA_DIR to the shared data folder")
    return path


@pytest.fixture(scope="session")
def dicom_dir(data_dir) -> pathlib.Path:
    return data_dir / "dicom"


@pytest.fixture(scope="session")
def cxr128_path(data_dir) -> pathlib.Path:
    return data_dir / "pediatric_cxr_kermany" / "kermany_pediatric_cxr_128.npz"


@pytest.fixture(scope="session")
def tiny_cxr(data_dir):
    """48 real chest X-rays (Kermany test split) at 32x32, float32 in [0, 1], shape (48, 32, 32, 1).

    Small enough that a 4-filter model trains for a few epochs in a second or two.
    """
    import numpy as np

    with np.load(data_dir / "pediatric_cxr_kermany" / "kermany_pediatric_cxr_64.npz") as f:
        images = f["test_images"][::10][:48]
    return (images[:, ::2, ::2, None] / 255.0).astype("float32")
