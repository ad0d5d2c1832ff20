"""Speed at native size: megapixels per second to encode and to reconstruct a 1024 px and a 2048 px image,
per Keras backend, against a plain bicubic resize to and from a thumbnail of as many numbers, in one run.

Each backend runs in a fresh process (``KERAS_BACKEND`` is read once, at import) on this machine's
cores. The images are real: the first ``cxr_hannover_1024`` test radiograph at 1024 px, and the same
enlarged to 2048 px (bicubic). Each timing
is the median of ``--repeats`` calls after a warm-up call (tracing and compilation), one image per call,
tiled as the model's preset says (512 px tiles above 1024 x 1024, or the tiles its training crops call for).
The bicubic baseline is medzoo's numpy resize (``medzoo.metrics.bicubic_thumbnail``), the same
thumbnail the reconstruction bars compare against. Aim (issue 38): 0.5 MP/s for the 4x autoencoder
on the fastest backend.

    python benchmarks/native_speed.py
    python benchmarks/native_speed.py --models ae-chestxray-f4c3 --backends tensorflow torch --sizes 1024
"""

import json
import os
import subprocess
import sys

import _common

from medzoo.evaluate.common import format_table

_WORKER = r"""
import json, statistics, sys, time, warnings
import numpy as np, keras, medzoo
from medzoo.metrics import bicubic_thumbnail
warnings.simplefilter("ignore", medzoo.DomainShiftWarning)  # native-size radiographs: the point of the run
name, sizes, repeats = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], int(sys.argv[3])
model = medzoo.load(name, compile=False)
images = medzoo.load_dataset("cxr_hannover_1024", "test")[0]
base = model.preprocess(images[0][None])
rows = []
for size in sizes:
    x = base if size == base.shape[1] else np.clip(keras.ops.convert_to_numpy(
        keras.ops.image.resize(base, (size, size), interpolation="bicubic")), 0, 1).astype("float32")
    mp = size * size / 1e6
    numbers = int(np.prod(model.encode(x).shape[1:]))  # warm-up of encode, and the latent's size
    def median_seconds(fn):
        fn()  # warm-up: tracing, compilation, tiles
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    tile, overlap = model.default_tile
    tiled = size * size > model.auto_tile_pixels
    row = {"size": size, "megapixels": mp, "latent_numbers": numbers,
           "how": f"tiles of {tile} px, {overlap} px overlap" if tiled else "one pass",
           "encode": mp / median_seconds(lambda: model.encode(x)),
           "reconstruct": mp / median_seconds(lambda: model.reconstruct(x)),
           "bicubic": mp / median_seconds(lambda: bicubic_thumbnail(x, numbers))}
    rows.append(row)
print(json.dumps({"backend": keras.backend.backend(), "rows": rows}))
"""


def measure(backend: str, name: str, sizes, repeats: int) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", _WORKER, name, ",".join(map(str, sizes)), str(repeats)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"backend": backend, "error": lines[-1] if lines else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = _common.parser("native_speed", __doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", default=["tensorflow", "torch", "jax"])
    p.add_argument("--sizes", nargs="+", type=int, default=[1024, 2048])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    _common.setup_logging()
    models = _common.available(args.models or ["ae-chestxray-f4c3", "vae-chestxray-f8c4"])
    rows, results = [], {}
    for name in models:
        for backend in args.backends:
            result = measure(backend, name, args.sizes, args.repeats)
            results[f"{name}/{backend}"] = result
            if "error" in result:
                rows.append([name, backend, "-", "-", "-", "-", "-", f"not measured: {result['error']}"])
                continue
            for r in result["rows"]:
                rows.append([name, backend, f"{r['size']} px", r["encode"], r["reconstruct"], r["bicubic"],
                             r["reconstruct"] / r["bicubic"], r["how"]])
    text = format_table(["model", "backend", "image", "encode MP/s", "reconstruct MP/s", "bicubic MP/s",
                         "reconstruct / bicubic", "how"], rows,
                        title=f"speed at native size on {os.cpu_count()} CPU cores (median of {args.repeats} calls, "
                              "one image per call)")
    _common.write(args.output, "summary", text, results)
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
