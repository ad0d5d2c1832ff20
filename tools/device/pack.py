"""Pack one self-contained payload for a call of the lent accelerator (64 MiB per call, working tree included).

A call carries its payload folder (ignored by git, named in the call's ``carry``) and runs
``bash P/launch.sh P BUDGET_S JOB...``: it installs the wheels, unpacks the data into per-job
``MEDZOO_DATA_DIR`` folders, trains the named runs side by side with ``--time-budget`` and returns
each run's final weights (optimizer state stripped, under 16 MiB a file) and one archive of the
rest. Nothing survives between calls, so every payload holds all its call needs. Finish each run
here, where the test splits are: ``medzoo train NAME --output RUN --finish --weights final``.

    python tools/device/pack.py chest .gpu_chest     # ae-chestxray-f4c3, vae-chestxray-f8c4 (native stages)
    python tools/device/pack.py ct .gpu_ct           # ae-ct-f4c3, vae-ct-f8c4
    python tools/device/pack.py chest-native .gpu_cn # later chest stages, from weights in stages/
    python tools/device/pack.py generalist-native .gpu_gn  # vae-generalist-f8c4's native stage: five sets

Training subsets are chosen by medzoo's own rule (``max_train_images``, seeded), so ``--finish``
on a machine with the whole set records exactly what was seen. Validation on the device is a
small seeded subset, for monitoring only: the final weights ship. Images travel compressed
losslessly (CT and the native radiographs as reversible JPEG 2000 files, 30% and 2% below PNG;
the thumbnail sets' images as one reversible JPEG 2000 codestream each, labels lzma'd), checked
bit for bit here.
Needs ``MEDZOO_DATA_DIR`` with the native sets rebuilt, and pip access for the wheels.
"""
import argparse
import csv
import io
import lzma
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from medzoo.data import load_npz
from medzoo.recipes.catalog import get_recipe
from medzoo.recipes.train import _kept_indices

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
#: keras and what the device image lacks of its needs (it has JAX, numpy, h5py, Pillow)
WHEELS = ["keras==3.15.1", "namex==0.1.0", "optree==0.20.0", "pydicom==3.0.2"]
#: per payload: native folder sets (validation images kept, None: all), npz sets (train, val) per job
#: data folder, and starting weights (init_from paths, restored at the same place there) that the
#: working tree no longer carries: a call carries tracked files too, and all 64 MiB count
PAYLOADS = {
    "chest": {"folders": {"cxr_hannover_1024": 6}, "npz": {"chest": {"kermany_pediatric_cxr_128": (1000, 200)}},
              "init": ["stages/ae-chestxray-f4c3-native-s2", "medzoo/presets/vae-chestxray-f8c4"]},
    "ct": {"folders": {"ct_tcia_512": None}, "npz": {},
           "init": ["stages/ae-chestxray-f4c3-native-s2", "medzoo/presets/vae-chestxray-f8c4"]},
    "chest-native": {"folders": {"cxr_hannover_1024": 6}, "npz": {"chest": {"kermany_pediatric_cxr_128": (1000, 200)}},
                     "init": []},
    # the generalist keeps its four thumbnail sets beside the native radiographs, 250 of each (launch.sh's
    # max_train_images): 256 px ultrasound would not fit 64 MiB otherwise. It starts from presets/, which the
    # tree carries when slim.py sets aside every other folder there
    "generalist-native": {"folders": {"cxr_hannover_1024": 6},
                          "npz": {"gen": {name: (250, 20) for name in ("kermany_pediatric_cxr_128",
                                                                        "brain_tumor_figshare_128", "busbra_256",
                                                                        "hc18_256")}},
                          "init": []},
}
#: sets that travel as reversible JPEG 2000 (30% below PNG for CT, only 2% for the 8-bit radiographs)
J2K = {"ct_tcia_512", "cxr_hannover_1024"}


def pack_npz(name, n_train, n_val, dest: pathlib.Path, tag: str) -> None:
    recipe = get_recipe("ae-chestxray-f4c3").with_overrides(max_train_images=n_train)
    x, y = load_npz(name, "train")
    keep = _kept_indices(recipe, name, "train", y, len(x))  # what --finish selects from the whole set
    xv, yv = load_npz(name, "val")
    vkeep = np.sort(np.random.default_rng(0).permutation(len(xv))[:n_val])
    arrays = {"train_images": x[keep], "val_images": xv[vkeep]}
    if y is not None:
        arrays["train_labels"], arrays["val_labels"] = y[keep], yv[vkeep]
    for key, value in arrays.items():
        if key.endswith("_images") and value.dtype == np.uint8:
            (dest / f"{tag}__{name}__{key}.j2ks.npz").write_bytes(pack_images(value))
            continue
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(value))
        (dest / f"{tag}__{name}__{key}.npy.xz").write_bytes(lzma.compress(buf.getvalue(), preset=6))


def pack_images(images: np.ndarray) -> bytes:
    """A stack of grey uint8 images as one reversible JPEG 2000 codestream each, in an npz (``shape``, ``sizes``,
    ``data``): about a third smaller than lzma here; unpack.py stacks them back."""
    frames = []
    for image in images.reshape(len(images), *images.shape[1:3]):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG2000", irreversible=False, no_jp2=True)
        if not np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue()))), image):
            sys.exit("a JPEG 2000 round trip is not exact")
        frames.append(buf.getvalue())
    out = io.BytesIO()
    np.savez(out, shape=np.asarray(images.shape), sizes=np.asarray([len(f) for f in frames]),
             data=np.frombuffer(b"".join(frames), np.uint8))
    return out.getvalue()


def pack_folder(name, val_keep, dest: pathlib.Path) -> None:
    src = pathlib.Path(os.environ["MEDZOO_DATA_DIR"]) / "native" / name
    rows = list(csv.DictReader(open(src / "splits.csv")))
    vals = [r for r in rows if r["split"] == "val"]
    if val_keep is not None:
        vals = [vals[i] for i in sorted(np.random.default_rng(0).permutation(len(vals))[:val_keep])]
    kept = [r for r in rows if r["split"] == "train"] + vals
    folder = dest / "native" / name
    with open(_made(folder) / "splits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    for row in kept:
        target = _made((folder / row["file"]).parent) / pathlib.Path(row["file"]).name
        if name in J2K:
            pixels = np.asarray(Image.open(src / row["file"]))
            Image.fromarray(pixels).save(target.with_suffix(".j2k"), "JPEG2000", irreversible=False, no_jp2=True)
            if not np.array_equal(np.asarray(Image.open(target.with_suffix(".j2k"))), pixels):
                sys.exit(f"{row['file']}: JPEG 2000 round trip is not exact")
        else:
            shutil.copy(src / row["file"], target)


def _made(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("payload", choices=sorted(PAYLOADS))
    p.add_argument("out", type=pathlib.Path, help="a folder in the checkout that .git/info/exclude ignores")
    args = p.parse_args()
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    data = _made(out / "data")
    spec = PAYLOADS[args.payload]
    for name, val_keep in spec["folders"].items():
        pack_folder(name, val_keep, data)
    for tag, sets in spec["npz"].items():
        for name, (n_train, n_val) in sets.items():
            pack_npz(name, n_train, n_val, data, tag)
    for path in spec["init"]:  # restored at the same repository path there
        shutil.copytree(REPO / path, out / "init" / path)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "-d", str(out / "whl"), *WHEELS], check=True)
    for script in ("launch.sh", "unpack.py", "strip.py"):
        shutil.copy(HERE / script, out / script)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB (the call also carries the working tree; 64 MiB in all)")


if __name__ == "__main__":
    main()
