"""Speed at native size: megapixels per second to encode and to reconstruct a 1024 px and a 2048 px image,
per Keras backend, against a plain bicubic resize to and from a thumbnail of as many numbers, in one run.

Each backend runs in a fresh process (``KERAS_BACKEND`` is read once, at import) on this machine's
cores. The images are real: the first ``cxr_hannover_1024`` test radiograph at 1024 px, and the same
enlarged to 2048 px (bicubic); a CT model (its input in Hounsfield units) gets the first ``ct_tcia_512``
test slice instead, at 512 px and enlarged to each other size asked for (``--sizes 512 1024``). Each timing
is the median of ``--repeats`` calls after a warm-up call (tracing and compilation), one image per call,
tiled as the model's preset says (512 px tiles above 1024 x 1024, or the tiles its training crops call for).
The bicubic baseline is medzoo's numpy resize (``medzoo.metrics.bicubic_thumbnail``), the same
thumbnail the reconstruction bars compare against. Aim (issue 38): 0.5 MP/s for the 4x autoencoder
on the fastest backend.

``--group-norm keras fused`` times each model twice per backend, with Keras's own GroupNorm and with
medzoo's fused kernels (``medzoo.models.normalization``; ``MEDZOO_GROUP_NORM`` in each worker's
environment): the speed-up in one run, on the same image. JAX runs Keras's code either way.

``--profile`` says where the time goes, on the 1024 px image, for each backend: reconstruct in one
pass, in tiles without overlap and in the preset's overlapping tiles (the overlap's cost and the
tiles' own); encode against decode; all cores against one thread (``OMP_NUM_THREADS``,
``TF_NUM_INTRAOP_THREADS``, XLA's Eigen pool); and on PyTorch, whose layers run eagerly as torch
modules, the share of each Keras layer type and of each stage of the network (forward hooks, one
tiled reconstruction).

``--overlaps`` weighs the tile overlap's cost against what it buys, on the first backend given: for
each overlap, the mean PSNR over a split of ``cxr_hannover_1024`` (a CT model: ``ct_tcia_512``; ``--split``, default val: choose
on validation, report on test) reconstructed in the preset's tile size, and the reconstruction speed
of the 1024 px test radiograph. This is how a preset's ``inference_tile`` is chosen. ``--tile-sizes``
does the same for tile sizes at the preset's overlap (a tile as large as the image: one pass), and
``--tilings`` for explicit pairs (136/8 covers 1024 px in 8 x 8 tiles, where 128/16 needs 9 x 9).

    python benchmarks/native_speed.py
    python benchmarks/native_speed.py --models ae-chestxray-f4c3 --backends tensorflow torch --sizes 1024
    python benchmarks/native_speed.py --models ae-chestxray-f4c3 --backends tensorflow torch --group-norm keras fused
    python benchmarks/native_speed.py --models ae-chestxray-f4c3 --profile
    python benchmarks/native_speed.py --models ae-chestxray-f4c3 --overlaps 0 8 16 32 64 --backends tensorflow
    python benchmarks/native_speed.py --models ae-chestxray-f4c3 --tile-sizes 96 160 256 1024 --backends tensorflow
    python benchmarks/native_speed.py --models ae-chestxray-f4c3 --tilings 128/16 136/8 144/16 --backends tensorflow
"""

import json
import os
import subprocess
import sys

import _common

from medzoo.evaluate.common import format_table
from medzoo.models.normalization import GROUP_NORM_ENV, GROUP_NORM_KERNELS

#: what every worker shares: calls timed alike (the median of ``repeats`` calls after a warm-up: tracing,
#: compilation, tiles) on the same image, the first ``cxr_hannover_1024`` test radiograph as the model sees it
#: (a CT model: the first ``ct_tcia_512`` test slice, since a radiograph is no CT in Hounsfield units)
_PRELUDE = r"""
import statistics, time
import medzoo
def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
def native_set(model):
    return "ct_tcia_512" if getattr(model.preprocess_spec, "units", None) == "HU" else "cxr_hannover_1024"
def first_image(model):
    x = model.preprocess(medzoo.load_dataset(native_set(model), "test")[0][0][None])
    return x, x.shape[1] * x.shape[2] / 1e6
"""

_WORKER = _PRELUDE + r"""
import json, sys, warnings
import numpy as np, keras, medzoo
from medzoo.metrics import bicubic_thumbnail
warnings.simplefilter("ignore", medzoo.DomainShiftWarning)  # native-size radiographs: the point of the run
name, sizes, repeats = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], int(sys.argv[3])
model = medzoo.load(name, compile=False)
base, _ = first_image(model)
rows = []
for size in sizes:
    x = base if size == base.shape[1] else np.clip(keras.ops.convert_to_numpy(
        keras.ops.image.resize(base, (size, size), interpolation="bicubic")), 0, 1).astype("float32")
    mp = size * size / 1e6
    numbers = int(np.prod(model.encode(x).shape[1:]))  # warm-up of encode, and the latent's size
    tile, overlap = model.default_tile
    tiled = size * size > model.auto_tile_pixels
    row = {"size": size, "megapixels": mp, "latent_numbers": numbers,
           "how": f"tiles of {tile} px, {overlap} px overlap" if tiled else "one pass",
           "encode": mp / median_seconds(lambda: model.encode(x), repeats),
           "reconstruct": mp / median_seconds(lambda: model.reconstruct(x), repeats),
           "bicubic": mp / median_seconds(lambda: bicubic_thumbnail(x, numbers), repeats)}
    rows.append(row)
print(json.dumps({"backend": keras.backend.backend(), "rows": rows}))
"""


_PROFILE_WORKER = _PRELUDE + r"""
import collections, json, sys, warnings
import numpy as np, keras, medzoo
warnings.simplefilter("ignore", medzoo.DomainShiftWarning)
name, repeats, hooks = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "hooks"
model = medzoo.load(name, compile=False)
x, mp = first_image(model)
tile, overlap = model.default_tile
def seconds(fn):
    return median_seconds(fn, repeats)
z = model.encode(x, tile_size=tile, overlap=overlap)
out = {"backend": keras.backend.backend(), "tile": [tile, overlap], "megapixels": mp, "seconds": {
    "one pass": seconds(lambda: model.reconstruct(x, tile_size=None)),
    "tiles, no overlap": seconds(lambda: model.reconstruct(x, tile_size=tile, overlap=0)),
    "tiles as the preset": seconds(lambda: model.reconstruct(x, tile_size=tile, overlap=overlap)),
    "encode (tiles as the preset)": seconds(lambda: model.encode(x, tile_size=tile, overlap=overlap)),
    "decode (tiles as the preset)": seconds(lambda: model.decode(z, tile_size=tile, overlap=overlap,
                                                                  output_size=x.shape[1:3])),
}}
if hooks:  # torch only: every leaf Keras layer is a torch module, run eagerly; time each call
    layers = [l for l in model._flatten_layers(include_self=False, recursive=True)
              if not list(l._flatten_layers(include_self=False, recursive=False))]
    by_type, by_stage, started = collections.Counter(), collections.Counter(), {}
    def before(layer):
        return lambda module, args: started.__setitem__(id(layer), time.perf_counter())
    def after(layer, stage):
        def hook(module, args, result):
            spent = time.perf_counter() - started.pop(id(layer))
            by_type[type(layer).__name__] += spent
            by_stage[stage] += spent
        return hook
    owners = {}
    for part in ("encoder", "decoder"):
        for l in getattr(model, part)._flatten_layers(include_self=False, recursive=True):
            owners[id(l)] = part
    for l in layers:
        stage = f"{owners.get(id(l), 'model')} {l.name.split('_')[0]}"
        l.register_forward_pre_hook(before(l))
        l.register_forward_hook(after(l, stage))
    model.reconstruct(x, tile_size=tile, overlap=overlap)  # warm-up with the hooks in place
    by_type.clear(); by_stage.clear()
    start = time.perf_counter()
    model.reconstruct(x, tile_size=tile, overlap=overlap)
    total = time.perf_counter() - start
    out["hooks"] = {"total": total, "by_type": dict(by_type), "by_stage": dict(by_stage)}
print(json.dumps(out))
"""

_TILING_WORKER = _PRELUDE + r"""
import json, sys, warnings
import numpy as np, keras, medzoo
from medzoo.models.tiling import set_inference_tile
warnings.simplefilter("ignore", medzoo.DomainShiftWarning)
name, repeats, split, max_images = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[5]) or None
model = medzoo.load(name, compile=False)
preset_tile = list(model.default_tile)
# "TILE/OVERLAP" pairs, "-" standing for the preset's value
tilings = [[p if v == "-" else int(v) for v, p in zip(pair.split("/"), preset_tile)] for pair in sys.argv[4].split(",")]
x, mp = first_image(model)
rows = []
for tile, overlap in tilings:
    set_inference_tile(model, (tile, overlap))
    result = medzoo.evaluate.reconstruction(model, dataset=native_set(model), split=split, max_images=max_images,
                                            thumbnail=False)
    rows.append({"tile": tile, "overlap": overlap, "psnr": float(np.mean(result.per_image["psnr"])), "images": len(
        result.per_image["psnr"]), "reconstruct": mp / median_seconds(
        lambda: model.reconstruct(x, tile_size=tile, overlap=overlap), repeats)})
print(json.dumps({"backend": keras.backend.backend(), "preset_tile": preset_tile, "rows": rows}))
"""


#: environment of a run on one core per backend (PyTorch's and oneDNN's OpenMP, TensorFlow's pools, XLA's Eigen)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def _run(worker: str, backend: str, args: list, extra_env=None) -> dict:
    """Run a worker script in a fresh process on ``backend``; its last stdout line is JSON."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **(extra_env or {})}
    out = subprocess.run([sys.executable, "-c", worker, *map(str, args)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"backend": backend, "error": lines[-1] if lines else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(backend: str, name: str, sizes, repeats: int, group_norm: str = "fused") -> dict:
    return _run(_WORKER, backend, [name, ",".join(map(str, sizes)), repeats], {GROUP_NORM_ENV: group_norm})


def profile(name: str, backends, repeats: int, output) -> str:
    """Where the time goes at 1024 px: tiling, encoder and decoder, threads, and (PyTorch) layers."""
    rows, shares, results = [], [], {}
    for backend in backends:
        for threads, env in ((os.cpu_count(), None), (1, ONE_THREAD)):
            hooks = "hooks" if backend == "torch" and env is None else "-"
            result = _run(_PROFILE_WORKER, backend, [name, repeats, hooks], env)
            results[f"{backend}/{threads} threads"] = result
            if "error" in result:
                rows.append([backend, threads, "-", "-", "-", f"not measured: {result['error']}"])
                continue
            secs, mp = result["seconds"], result["megapixels"]
            tiled = secs["tiles as the preset"]
            for what, s in secs.items():
                rows.append([backend, threads, what, mp / s, s / tiled,
                             f"{result['tile'][0]} px tiles, {result['tile'][1]} px overlap" if "tiles" in what
                             or "code" in what else ""])
            if "hooks" in result:
                total = result["hooks"]["total"]
                for kind in ("by_type", "by_stage"):
                    spent = result["hooks"][kind]
                    for key, s in sorted(spent.items(), key=lambda kv: -kv[1]):
                        shares.append([backend, kind.replace("by_", ""), key, s, s / total])
                    shares.append([backend, kind.replace("by_", ""), "outside layers (tiling, glue)",
                                   total - sum(spent.values()), 1 - sum(spent.values()) / total])
    text = format_table(["backend", "threads", "1024 px image", "MP/s", "time / tiled reconstruct", "how"], rows,
                        title=f"{name}: where the time goes at 1024 px (median of {repeats} calls)")
    if shares:
        text += "\n\n" + format_table(["backend", "grouped by", "layers", "seconds", "share"], shares,
                                         title="one tiled reconstruction, timed per Keras layer (forward hooks; "
                                               "the hooks add their own small cost)")
    _common.write(output, "profile", text, results)
    return text


def tilings(name: str, backend: str, pairs, split: str, repeats: int, max_images, output) -> str:
    """PSNR on ``split`` and reconstruction speed at 1024 px for each ``"TILE/OVERLAP"`` pair ("-": the preset's)."""
    print(f"{name} on {backend}: the {split} split reconstructed {len(pairs)} times, once per tiling (minutes "
          "each on two cores)...", file=sys.stderr, flush=True)
    result = _run(_TILING_WORKER, backend, [name, repeats, split, ",".join(pairs), max_images or 0])
    if "error" in result:
        return f"{name} on {backend}: not measured: {result['error']}"
    rows = result["rows"]
    best = max(r["psnr"] for r in rows)
    table = [[r["tile"], r["overlap"], r["images"], r["psnr"], r["psnr"] - best, r["reconstruct"]] for r in rows]
    tile, overlap = result["preset_tile"]
    text = format_table(["tile px", "overlap px", f"{split} images", "PSNR dB", "vs best",
                         "reconstruct MP/s (first test image)"], table,
                        title=f"{name} on {backend} by tiling (preset: {tile} px tiles, {overlap} px overlap; "
                              f"speed: median of {repeats} calls)")
    _common.write(output, "tilings", text, result)
    return text


def main(argv=None):
    p = _common.parser("native_speed", __doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", default=["tensorflow", "torch", "jax"])
    p.add_argument("--sizes", nargs="+", type=int, default=[1024, 2048])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--group-norm", nargs="+", choices=GROUP_NORM_KERNELS, default=["fused"],
                   help="GroupNorm kernels to time each model with: Keras's own, medzoo's fused ones (default), or "
                        "both for the speed-up in one run")
    p.add_argument("--profile", action="store_true", help="where the time goes at 1024 px (see above)")
    p.add_argument("--overlaps", nargs="+", type=int, metavar="PX",
                   help="PSNR and speed for each of these tile overlaps at the preset's tile size, on the first "
                        "backend (see above)")
    p.add_argument("--tile-sizes", nargs="+", type=int, metavar="PX",
                   help="the same for each of these tile sizes at the preset's overlap")
    p.add_argument("--tilings", nargs="+", metavar="TILE/OVERLAP",
                   help="the same for each of these tile size and overlap pairs (e.g. 136/8: 8 x 8 tiles at 1024 px)")
    p.add_argument("--split", default="val", help="with --overlaps, --tile-sizes or --tilings: the "
                   "split of cxr_hannover_1024 (a CT model: ct_tcia_512) (default val)")
    args = p.parse_args(argv)
    if args.profile and (args.overlaps or args.tile_sizes or args.tilings):
        p.error("--profile is a run of its own; give it without --overlaps, --tile-sizes and --tilings")
    for pair in args.tilings or []:
        tile, sep, overlap = pair.partition("/")
        if not sep or not tile.isdigit() or not overlap.isdigit():
            p.error(f"--tilings takes TILE/OVERLAP pairs of pixels, e.g. 136/8; got {pair!r}")
    _common.setup_logging()
    models = _common.available(args.models or ["ae-chestxray-f4c3", "vae-chestxray-f8c4"])
    if args.overlaps or args.tile_sizes or args.tilings:
        pairs = [f"-/{o}" for o in args.overlaps or []] + [f"{t}/-" for t in args.tile_sizes or []] + list(
            args.tilings or [])
        for name in models:
            print(tilings(name, args.backends[0], pairs, args.split, args.repeats, args.max_images, args.output))
        print(f"\nwrote {args.output}")
        return
    if args.profile:
        for name in models:
            print(profile(name, args.backends, args.repeats, args.output))
        print(f"\nwrote {args.output}")
        return
    rows, results = [], {}
    for name in models:
        for backend in args.backends:
            for kernels in args.group_norm:
                result = measure(backend, name, args.sizes, args.repeats, kernels)
                results[f"{name}/{backend}/{kernels}"] = result
                if "error" in result:
                    rows.append([name, backend, kernels, "-", "-", "-", "-", "-", f"not measured: {result['error']}"])
                    continue
                for r in result["rows"]:
                    rows.append([name, backend, kernels, f"{r['size']} px", r["encode"], r["reconstruct"],
                                 r["bicubic"], r["reconstruct"] / r["bicubic"], r["how"]])
    text = format_table(["model", "backend", "group norm", "image", "encode MP/s", "reconstruct MP/s", "bicubic MP/s",
                         "reconstruct / bicubic", "how"], rows,
                        title=f"speed at native size on {os.cpu_count()} CPU cores (median of {args.repeats} calls, "
                              "one image per call)")
    _common.write(args.output, "summary", text, results)
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
