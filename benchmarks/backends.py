"""The same model's training and inference speed on each Keras backend, in one run.

Each backend runs in a fresh process (``KERAS_BACKEND`` is read once, at import): the
any-size residual autoencoder of ``ae-chestxray-f4c1`` (and, with ``--family``, a VAE
or VQ-VAE of the same network) trains with ``fit`` on 64 px crops of real chest X-rays
held in numpy, then reconstructs whole 128 px test images. Images per second after a
warm-up epoch, on this machine.

    python benchmarks/backends.py
    python benchmarks/backends.py --backends tensorflow jax --seconds 20
    python benchmarks/backends.py --backends tensorflow torch --group-norm keras fused   # the fused GroupNorm's gain

``--group-norm keras fused`` measures each backend twice, with Keras's own GroupNorm and with medzoo's
fused kernels (``medzoo.models.normalization``, picked by ``MEDZOO_GROUP_NORM`` in the worker's
environment); JAX runs Keras's code either way.

A backend that is not installed gets a row saying so; the others are still measured.
"""

import json
import os
import subprocess
import sys

import _common

from medzoo.models.normalization import GROUP_NORM_ENV, GROUP_NORM_KERNELS

_WORKER = r"""
import json, sys, time
import numpy as np, keras, medzoo
family, seconds = sys.argv[1], float(sys.argv[2])
arch = dict(input_shape=(None, None, 1), architecture="residual", filters=[48, 96], depth=2, blocks_per_level=2, seed=0)
cls, extra = {"autoencoder": (medzoo.ConvAutoencoder, {"latent_channels": 1, "reconstruction_loss": "l1"}),
              "vae": (medzoo.VAE, {"latent_channels": 1, "reconstruction_loss": "l1"}),
              "vqvae": (medzoo.VQVAE, {"num_embeddings": 256, "embedding_dim": 4})}[family]
train, _ = medzoo.load_npz("kermany_pediatric_cxr_128", "train")
test, _ = medzoo.load_npz("kermany_pediatric_cxr_128", "test")
rng = np.random.default_rng(0)
ys, xs = rng.integers(0, 65, 2048), rng.integers(0, 65, 2048)
crops = np.stack([train[i % len(train), y:y + 64, x:x + 64] for i, (y, x) in enumerate(zip(ys, xs))])
crops = (crops[..., None] / 255.0).astype("float32")
whole = (test[:256, :, :, None] / 255.0).astype("float32")
model = cls(**arch, **extra)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
model.fit(crops[:256], batch_size=32, epochs=1, verbose=0)          # warm-up: tracing and compilation
seen, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    model.fit(crops, batch_size=32, epochs=1, verbose=0)
    seen += len(crops)
train_rate = seen / (time.perf_counter() - start)
model.reconstruct(whole[:64], batch_size=64)
done, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    model.reconstruct(whole, batch_size=64)
    done += len(whole)
print(json.dumps({"backend": keras.backend.backend(), "train": train_rate, "inference": done / (time.perf_counter() - start),
                  "params": model.count_params()}))
"""


def measure(backend: str, family: str, seconds: float, group_norm: str = "fused") -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", GROUP_NORM_ENV: group_norm}
    out = subprocess.run([sys.executable, "-c", _WORKER, family, str(seconds)], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        return {"backend": backend, "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = _common.parser("backends", __doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    p.add_argument("--family", nargs="+", default=["autoencoder"], choices=["autoencoder", "vae", "vqvae"])
    p.add_argument("--seconds", type=float, default=30.0, help="timed seconds per measurement")
    p.add_argument("--group-norm", nargs="+", choices=GROUP_NORM_KERNELS, default=["fused"],
                   help="GroupNorm kernels: Keras's own, medzoo's fused ones (default), or both in one run")
    args = p.parse_args(argv)
    from medzoo.evaluate.common import format_table

    rows, results = [], {}
    for family in args.family:
        base = None
        for backend in args.backends:
            for kernels in args.group_norm:
                r = measure(backend, family, args.seconds, kernels)
                results[f"{family}/{backend}/{kernels}"] = r
                if "error" in r:
                    rows.append([family, backend, kernels, "-", "-", "-", r["error"][:60]])
                    continue
                base = base or r
                rows.append([family, backend, kernels, r["params"], r["train"], r["inference"],
                             f"{r['train'] / base['train']:.2f}x / {r['inference'] / base['inference']:.2f}x"])
    first = f"{args.backends[0]}" + (f", {args.group_norm[0]} group norm" if len(args.group_norm) > 1 else "")
    text = format_table(["model", "backend", "group norm", "params", "train img/s (64 px crops)",
                         "inference img/s (128 px)", f"vs {first} (train / inference)"], rows,
                        title="the same model on each Keras backend, this machine, float32")
    _common.write(args.output, "summary", text, results)
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
