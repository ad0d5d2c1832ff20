"""The any-size residual architecture against the fixed-size convolutional one, at equal latent size and time.

For each dataset (Kermany chest X-rays at 128 px, BUS-BRA breast ultrasound at 256 px):
both architectures get a latent 4x smaller per side with 1 channel (1/16 of the pixel
count) and the same wall-clock training budget on this machine: the conv network on
whole images (the only size it takes), the residual one on 64 px random crops. Test
PSNR / SSIM on whole test images in the model's input space, next to a bicubic
thumbnail that keeps as many numbers as the latent (downscale 4x, upscale back).

Then speed: training and inference images per second at 128, 256 and 512 px for both,
and the time and peak memory (resident set, measured in a fresh process) of a tiled
4,096 x 4,096 reconstruction.

    python benchmarks/architecture.py                   # 4 minutes of training per model
    python benchmarks/architecture.py --minutes 1 --max-images 64   # a quick look
"""

import json
import subprocess
import sys
import textwrap
import time

import numpy as np

import _common

DATASETS = {"kermany_pediatric_cxr_128": "chest X-ray 128 px", "busbra_256": "breast US 256 px"}
CROP = 64
ARCHITECTURES = {
    # the fixed-size design of the first zoo: plain 3x3 convolutions, BatchNorm, ReLU
    "conv": dict(architecture="conv", filters=[32, 64], depth=2, latent_channels=1),
    # models v2: residual blocks, GroupNorm, SiLU, space-to-depth stem (ae-chestxray-f4c1's network)
    "residual": dict(architecture="residual", filters=[48, 96], depth=2, blocks_per_level=2, latent_channels=1),
}


class _TimeBudget:
    """A Keras callback that stops training once ``seconds`` of wall time have passed."""

    def __new__(cls, seconds):
        import keras

        class Budget(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start = time.perf_counter()
                self.images = 0

            def on_train_batch_end(self, batch, logs=None):
                self.images += self.batch_size
                if time.perf_counter() - self.start > seconds:
                    self.model.stop_training = True

        budget = Budget()
        budget.batch_size = 32
        return budget


def build(arch: str, size=None):
    import keras

    import medzoo

    shape = (None, None, 1) if arch == "residual" else (size, size, 1)
    model = medzoo.ConvAutoencoder(input_shape=shape, reconstruction_loss="l1", seed=0, **ARCHITECTURES[arch])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def train_and_test(arch: str, dataset: str, minutes: float, max_images, seed: int) -> dict:
    import medzoo
    from medzoo.metrics import psnr, ssim

    train, _ = medzoo.load_npz(dataset, "train")
    test, _ = medzoo.load_npz(dataset, "test")
    if max_images:
        test = test[np.random.default_rng(seed).permutation(len(test))[:max_images]]
    spec = medzoo.PreprocessSpec(size=None, normalize="fixed", input_range=(0, 255))
    size = train.shape[1]
    model = build(arch, size)
    crop = CROP if arch == "residual" else None
    data = medzoo.from_arrays(train, spec, batch_size=32, shuffle=True, seed=seed, crop_size=crop, repeat=True,
                              drop_remainder=True)
    budget = _TimeBudget(minutes * 60)
    model.fit(data, epochs=10_000, steps_per_epoch=50, callbacks=[budget], verbose=0)
    x = np.asarray(spec.apply(test))
    rec = model.reconstruct(x, batch_size=16)
    return {"params": model.count_params(), "train_images": budget.images, "train_pixels": budget.images * (
        crop or size) ** 2, "psnr": float(psnr(x, rec).mean()), "ssim": float(ssim(x, rec).mean()),
            "latent_numbers": int(np.prod(model.encode(x[:1]).shape[1:])), "image_pixels": size * size}


def throughput(arch: str, size: int, seconds: float = 8.0) -> tuple[float, float]:
    """(training, inference) images per second at ``size`` px, after a warm-up."""
    import tensorflow as tf

    model = build(arch, size)
    x = np.random.default_rng(0).random((32, size, size, 1), dtype=np.float32)
    batch = 32 if size <= 128 else 8 if size <= 256 else 2
    ds = tf.data.Dataset.from_tensors(x[:batch]).repeat()
    model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
        steps += 2
    train_rate = steps * batch / (time.perf_counter() - start)
    model.reconstruct(x[:batch], batch_size=batch, tile_size="auto")
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.reconstruct(x[:batch], batch_size=batch)
        n += batch
    return train_rate, n / (time.perf_counter() - start)


_TILED = textwrap.dedent('''
    import json, resource, sys, time
    import numpy as np, medzoo
    model = medzoo.ConvAutoencoder(input_shape=(None, None, 1), seed=0, **json.loads(sys.argv[1]))
    side = int(sys.argv[2])
    model.reconstruct(np.zeros((1, 64, 64, 1), np.float32))  # graphs built, weights in memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    x = np.random.default_rng(0).random((1, side, side, 1), dtype=np.float32)
    start = time.perf_counter()
    rec = model.reconstruct(x, tile_size=512, overlap=64)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert rec.shape == x.shape
    print(json.dumps({"seconds": seconds, "peak_gb": peak / 2**20, "before_gb": before / 2**20}))
''')


def tiled_4k(side: int = 4096) -> dict:
    """A tiled reconstruction of a ``side`` x ``side`` image in a fresh process: time and peak RSS (GB)."""
    out = subprocess.run([sys.executable, "-c", _TILED, json.dumps(ARCHITECTURES["residual"]), str(side)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = _common.parser("architecture", __doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=4.0, help="training wall time per model and dataset")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512])
    p.add_argument("--tiled-side", type=int, default=4096)
    p.add_argument("--parts", nargs="+", default=["quality", "speed", "tiled"], choices=["quality", "speed", "tiled"],
                   help="what to measure (speed and memory want an otherwise idle machine)")
    args = p.parse_args(argv)
    _common.setup_logging()
    from medzoo.evaluate.common import format_table
    from medzoo.metrics import psnr, ssim
    from medzoo.metrics import bicubic_thumbnail

    import medzoo

    tables, quality, rows = [], {}, []
    for dataset in args.datasets if "quality" in args.parts else []:
        test, _ = medzoo.load_npz(dataset, "test")
        if args.max_images:
            test = test[np.random.default_rng(args.seed).permutation(len(test))[:args.max_images]]
        x = (test[..., None] / 255.0).astype(np.float32)
        thumb, _ = bicubic_thumbnail(x, x.shape[1] * x.shape[2] // 16)
        rows.append([DATASETS.get(dataset, dataset), "bicubic thumbnail 4x", "-", "-", x.shape[1] ** 2 // 16,
                     float(psnr(x, thumb).mean()), float(ssim(x, thumb).mean())])
        for arch in ARCHITECTURES:
            r = train_and_test(arch, dataset, args.minutes, args.max_images, args.seed)
            quality[f"{dataset}/{arch}"] = r
            rows.append([DATASETS.get(dataset, dataset), arch, r["params"], r["train_images"], r["latent_numbers"],
                         r["psnr"], r["ssim"]])
            print(f"{dataset} {arch}: {r}", flush=True)
    if rows:
        tables.append(format_table(["data", "model", "params", "images seen", "latent numbers", "PSNR dB", "SSIM"],
                                   rows, title=f"equal latent size (1/16 of the pixels), {args.minutes:g} min of "
                                               "training each"))

    speed, rows = {}, []
    for size in args.sizes if "speed" in args.parts else []:
        row = [size]
        for arch in ARCHITECTURES:
            train_rate, infer_rate = throughput(arch, size)
            speed[f"{arch}/{size}"] = {"train": train_rate, "inference": infer_rate}
            row += [train_rate, infer_rate]
        rows.append(row)
    if rows:
        tables.append(format_table(["px", "conv train img/s", "conv infer img/s", "residual train img/s",
                                    "residual infer img/s"], rows, title="throughput on this machine (float32)"))

    tiled = tiled_4k(args.tiled_side) if "tiled" in args.parts else {}
    if tiled:
        tables.append(format_table(["image", "tile / overlap", "seconds", "peak RSS GB", "RSS before GB"],
                                   [[f"{args.tiled_side} x {args.tiled_side}", "512 / 64", tiled["seconds"],
                                     tiled["peak_gb"], tiled["before_gb"]]],
                                   title="tiled reconstruction (residual, fresh process)"))
    text = "\n\n".join(tables)
    _common.write(args.output, "summary", text, {"quality": quality, "speed": speed, "tiled": tiled,
                                                 "minutes": args.minutes})
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
