"""Shared pytest fixtures: where the real data lives, and a quiet TensorFlow."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _shared_data_dir() -> pathlib.Path:
    env = os.environ.get("MEDZOO_DATA_DIR")
    return pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "data"


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
