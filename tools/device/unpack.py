"""On the device: turn a packed payload (tools/device/pack.py) into per-job MEDZOO_DATA_DIR folders.

    python unpack.py PAYLOAD_DATA_DIR DATA_ROOT

Each npz subset goes to DATA_ROOT/<tag>/<name>.npz (tag "chest": the Kermany subset of the chest
runs; "gen": the generalist's four sets); the native folder sets go to DATA_ROOT/native_sets/ (JPEG 2000 back to PNG) and are linked
into every job folder (chest/, ct/) as native/<name>.
"""
import io, json, lzma, os, pathlib, shutil, sys

import numpy as np
from PIL import Image

src, root = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
arrays = {}
for f in sorted(src.glob("*.npy.xz")):
    tag, name, key = f.name[:-len(".npy.xz")].split("__")
    arrays.setdefault((tag, name), {})[key] = np.load(io.BytesIO(lzma.decompress(f.read_bytes())))
for f in sorted(src.glob("*.j2ks.npz")):  # images packed as one JPEG 2000 codestream each (pack_images)
    tag, name, key = f.name[:-len(".j2ks.npz")].split("__")
    packed = np.load(f)
    ends = np.cumsum(packed["sizes"])
    data = packed["data"].tobytes()
    frames = [np.asarray(Image.open(io.BytesIO(data[e - n:e]))) for n, e in zip(packed["sizes"], ends)]
    arrays.setdefault((tag, name), {})[key] = np.stack(frames).reshape(packed["shape"])
for (tag, name), a in arrays.items():
    d = root / tag
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / f"{name}.npz", **a)
    print(tag, name, {k: v.shape for k, v in a.items()})
native = src / "native"
if native.is_dir():
    for folder in native.iterdir():
        dest = root / "native_sets" / folder.name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(folder, dest)
        for j in dest.rglob("*.j2k"):  # CT travels as lossless JPEG 2000; the folder reader takes PNG
            Image.open(j).save(j.with_suffix(".png"), compress_level=1)
            j.unlink()
        print("native", folder.name, len(list(dest.rglob("*.png"))), "images")
for tag in ("chest", "gen", "ct"):
    (root / tag / "native").mkdir(parents=True, exist_ok=True)
    for folder in (root / "native_sets").iterdir() if (root / "native_sets").is_dir() else []:
        link = root / tag / "native" / folder.name
        if link.is_symlink():
            link.unlink()
        os.symlink(folder.resolve(), link)
