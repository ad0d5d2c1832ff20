"""The wheel: what it ships, and that an installed copy works without the source tree or a network.

The wheel is built offline (``pip wheel --no-build-isolation --no-index``, so setuptools
and wheel come from the test environment: the ``test`` extra lists them) from a copy of
the source tree in a temporary folder, so nothing is written into the checkout. It is
installed into a fresh virtual environment that has no pip and no medzoo of its own; a
``.pth`` file makes this environment's third-party packages (TensorFlow, Keras, ...)
visible to it. A ``.pth`` line that names a folder only adds that folder to
``sys.path``; the ``.pth`` files inside it, among them the editable install's hook that
maps ``medzoo`` to the source tree, are not run, so ``import medzoo`` there can only find
the installed copy, which the test checks.
"""

import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "medzoo"
# what a build never needs (mirrors .gitignore): version control, environments, build outputs, caches, run outputs
NOT_COPIED = (".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.py[cod]", ".pytest_cache",
              ".ipynb_checkpoints", "runs", "checkpoints", "logs", "outputs", ".whl", ".gl")


def _pip(*args, **kwargs):
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    return subprocess.run([sys.executable, "-m", "pip", *args], env=env, check=True, capture_output=True, text=True,
                          timeout=900, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    missing = [name for name in ("setuptools", "wheel") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"{missing} must be installed to build the wheel offline: pip install -e '.[test]'")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(tmp / "dist"), str(source))
    [built] = (tmp / "dist").glob("medzoo-*.whl")
    return built


def _manifest() -> dict:
    return json.loads((PACKAGE / "weights_manifest.json").read_text())


def test_the_wheel_ships_the_package_the_manifest_and_the_default_preset_and_nothing_else(wheel):
    """The default model only: the others come from the Hub or an offline mirror, so the wheel stays small."""
    assert wheel.stat().st_size < 20e6, wheel.stat().st_size
    bundled = [entry["name"] for entry in _manifest()["models"] if entry["sources"]["bundled"]]
    from medzoo.evaluate.demo import DEFAULT_MODEL
    from medzoo.zoo.manifest import priors_of

    assert sorted(bundled) == sorted([DEFAULT_MODEL, *priors_of(DEFAULT_MODEL)])  # the demo's VAE and its prior
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("medzoo/weights_manifest.json") == (PACKAGE / "weights_manifest.json").read_bytes()
        presets = {name for name in names if name.startswith("medzoo/presets/")}
        expected = set()
        for entry in _manifest()["models"]:
            if entry["sources"]["bundled"]:
                assert {f["filename"] for f in entry["files"]} >= {"config.json", "model.weights.h5", "metadata.json",
                                                                  "README.md"}
                for record in entry["files"]:
                    name = f"medzoo/{entry['sources']['bundled']}/{record['filename']}"
                    expected.add(name)
                    assert name in names, f"{name} is not in the wheel"
                    assert hashlib.sha256(archive.read(name)).hexdigest() == record["sha256"], name
        assert expected and presets == expected  # every bundled preset file, and no stray file next to them

    samples = {p.relative_to(REPO_ROOT).as_posix() for p in (PACKAGE / "samples").rglob("*") if p.is_file()}
    assert len(samples) > 10 and samples <= names, f"samples missing from the wheel: {sorted(samples - names)}"
    modules = {p.relative_to(REPO_ROOT).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert modules and modules <= names, f"modules missing from the wheel: {sorted(modules - names)}"
    tops = {name.split("/")[0] for name in names}
    assert tops == {"medzoo", wheel.name.split("-py")[0] + ".dist-info"}  # no tests/, notebooks/, benchmarks/
    unwanted = [name for name in names
                if "__pycache__" in name or name.endswith((".pyc", ".pyo")) or "/." in f"/{name}"]
    assert unwanted == []  # no caches, no hidden files or half-written staging folders


def test_an_installed_wheel_lists_and_loads_the_zoo_without_the_source_tree(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _pip("--python", str(python), "install", "--no-deps", "--no-index", str(wheel))
    [target] = {pathlib.Path(p) for p in subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.split()}
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (target / "_test_environment.pth").write_text("".join(f"{p}\n" for p in sorted(ours) if os.path.isdir(p)))
    assert (python.parent / ("medzoo.exe" if os.name == "nt" else "medzoo")).is_file()  # the console script

    script = """
import json, os, pathlib, sys
import numpy as np
import medzoo
from medzoo.cli import main
from medzoo.codec.stream import decompress_codes
models = [m["name"] for m in medzoo.list_models()]
model = medzoo.load("vae-chestxray-f8c4", compile=False)
raw = medzoo.data.sample_images()[0]
x = model.preprocess(raw)
mse = float(np.mean((np.asarray(x) - np.asarray(model.reconstruct(x))) ** 2))
demo = pathlib.Path(sys.argv[2])
demo_exit = main(["--log-level", "WARNING", "demo", "--output", str(demo)])  # what the console script runs
try:
    medzoo.load("vqvae-chestxray")
    missing = None
except medzoo.MedzooError as exc:
    missing = str(exc)
# the hint of an entry without a Hub copy, followed: copy it out of a checkout, verified, into a mirror
hint_exit = main(["--log-level", "WARNING", "download", "ae-ct-f4c3", "--from", sys.argv[4], "--to", sys.argv[5]])
os.environ["MEDZOO_MIRROR"] = sys.argv[5]
followed = medzoo.load("ae-ct-f4c3", compile=False).zoo_metadata
followed = {"source": followed["source"], "path": followed["path"], "version": followed["version"]}
os.environ["MEDZOO_MIRROR"] = sys.argv[3]  # the repository's presets folder, as an offline mirror
sources = {name: medzoo.load(name, compile=False).zoo_metadata["source"] for name in models}
stream = medzoo.compress(raw)  # vqvae-chestxray from the mirror, its entropy model shipped with it
vq = medzoo.load("vqvae-chestxray", compile=False)
header, codes, _ = decompress_codes(stream)
decoded = medzoo.decompress(stream)
from_source = sorted(m.__file__ for m in list(sys.modules.values())
                     if (getattr(m, "__file__", None) or "").startswith(sys.argv[1]))  # the checkout's medzoo/
print(json.dumps({"file": medzoo.__file__, "models": models, "source": model.zoo_metadata["source"],
                  "path": model.zoo_metadata["path"], "psnr": float(10 * np.log10(1 / mse)),
                  "demo_exit": demo_exit, "demo_files": sorted(p.name for p in demo.iterdir()),
                  "missing": missing, "sources": sources, "hint_exit": hint_exit, "followed": followed,
                  "stream": {"bytes": len(stream), "model": header.model_name, "images": header.num_images},
                  "codes_exact": bool(np.array_equal(codes, vq.encode(vq.preprocess(raw)))),
                  "decoded_max_diff": float(np.abs(decoded - vq.decode(codes)).max()),
                  "vq_files": sorted(vq.zoo_metadata["files"]), "vq_path": vq.zoo_metadata["path"],
                  "from_source": from_source}))
"""
    (tmp_path / "no-data").mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", MEDZOO_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"),
               TF_CPP_MIN_LOG_LEVEL="2", MEDZOO_DATA_DIR=str(tmp_path / "no-data"))  # a fresh install: no data
    run = subprocess.run([str(python), "-I", "-c", script, str(PACKAGE) + os.sep, str(tmp_path / "demo"),
                          str(REPO_ROOT / "presets"), str(REPO_ROOT), str(tmp_path / "mirror")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert pathlib.Path(result["file"]).is_relative_to(env_dir), result["file"]
    assert result["from_source"] == []  # not one module imported from the checkout
    assert result["models"] == [entry["name"] for entry in _manifest()["models"]]
    assert result["source"] == "bundled" and pathlib.Path(result["path"]).is_relative_to(env_dir)
    assert result["psnr"] > 25  # the trained weights on the sample X-rays shipped in the wheel, not an untrained model
    # offline, without a mirror, the other entries say where to get them; with MEDZOO_MIRROR every entry loads
    assert "not on the Hub yet" in result["missing"] and "MEDZOO_MIRROR" in result["missing"]
    assert "medzoo download vqvae-chestxray --from CHECKOUT --to DIR" in result["missing"]  # a way that works
    assert result["hint_exit"] == 0 and result["followed"]["source"] == "mirror"
    assert pathlib.Path(result["followed"]["path"]) == tmp_path / "mirror" / "ae-ct-f4c3"
    assert result["sources"] == {name: "mirror" for name in result["models"]}

    # medzoo demo, the main job: its report folder, from the bundled model and the sample X-rays alone
    assert result["demo_exit"] == 0, run.stderr[-3000:]
    assert {"report.md", "metrics.json", "reconstructions.png", "samples.png",
            "interpolation.png"} <= set(result["demo_files"])
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["source"] == "bundled"
    # compress/decompress with no data folder: the entropy model shipped in the preset, nothing fitted
    assert "entropy_model.npz" in result["vq_files"] and pathlib.Path(result["vq_path"]) == REPO_ROOT / "presets" / \
        "vqvae-chestxray"
    assert result["stream"] == {"bytes": result["stream"]["bytes"], "model": "vqvae-chestxray", "images": 8}
    assert result["stream"]["bytes"] < 8 * 128 * 128 / 50  # well below a bit per pixel
    assert result["codes_exact"] and result["decoded_max_diff"] < 1e-6  # decompress = the model's decoding of the codes
    assert not (tmp_path / "cache" / "codec").exists()
