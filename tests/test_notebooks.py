"""The notebooks in notebooks/: stored clean, and every one executes top to bottom.

Each notebook runs with nbclient in a kernel of the interpreter running pytest
(so against the installed medzoo), in a temporary copy of the notebooks folder
(its working directory: nothing is written into the repository), with
``MEDZOO_QUICK=1`` (the notebooks shrink epochs and data), ``HF_HUB_OFFLINE=1``
and no ``HF_TOKEN`` (so nothing is uploaded). A cell that raises fails the test
with the cell's traceback; the executed copy is kept in pytest's tmp folder.

The repository URL of the "Open in Colab" badges and install cells is
:data:`REPO`; the test checks every notebook uses it, so changing it means a
search-and-replace of ``medzoo/medzoo`` in notebooks/*.ipynb plus this constant.
"""

import json
import os
import pathlib
import shutil
import sys
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: the GitHub repository of the badges and the install cells (``owner/name``)
REPO = "medzoo/medzoo"
#: seconds any single cell may run under MEDZOO_QUICK=1 before the test fails
CELL_TIMEOUT = 600


def test_the_notebooks_are_there():
    names = {path.name for path in NOTEBOOKS}
    assert {"01_quickstart.ipynb", "02_finetune_on_your_dicoms.ipynb", "03_anomaly_detection.ipynb",
            "04_compression_vs_jpeg.ipynb", "05_distributed_training.ipynb",
            "06_segmentation.ipynb", "07_generate_and_augment.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_clean_with_badge_and_install_cell(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
                f"cell {i} of {path.name} has outputs: store notebooks without outputs "
                "(jupyter nbconvert --clear-output --inplace notebooks/*.ipynb)")
    first, install = nb["cells"][0], nb["cells"][1]
    badge = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{path.name}"
    assert first["cell_type"] == "markdown" and badge in "".join(first["source"]), f"{path.name}: Colab badge"
    source = "".join(install["source"])
    assert install["cell_type"] == "code" and f'MEDZOO_REPO = "https://github.com/{REPO}"' in source
    assert "import medzoo\nexcept ImportError:" in source and "%pip install" in source


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A ``python3`` kernel spec of this interpreter, first on JUPYTER_PATH, and the notebooks' environment.

    Without it a user-level ``python3`` spec of another Python (``~/.local/share/jupyter``)
    could win over the one ipykernel installs into this environment.
    """
    from ipykernel.kernelspec import write_kernel_spec

    jupyter = tmp_path / "jupyter"
    write_kernel_spec(jupyter / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(p for p in (str(jupyter), os.environ.get("JUPYTER_PATH")) if p))
    monkeypatch.setenv("MEDZOO_QUICK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-hf-token"))  # nor a token saved by huggingface-cli login
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the figures
    # conftest.py has pointed MEDZOO_DATA_DIR at the shared data; the notebooks fall back to downloads without it
    return jupyter


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, kernel_env):
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable, spec.argv
    workdir = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK_DIR, workdir, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    nb = nbformat.read(workdir / path.name, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, startup_timeout=120,
                            resources={"metadata": {"path": str(workdir)}})
    started = time.perf_counter()
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / f"executed-{path.name}")
        print(f"{path.name}: {time.perf_counter() - started:.1f} s (executed copy: {tmp_path / ('executed-' + path.name)})")
