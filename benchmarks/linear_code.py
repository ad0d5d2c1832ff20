"""How far a *linear* code of as many numbers gets: the ceiling an autoencoder must clear to earn its nonlinearity.

A model's latent keeps ``1/r`` of an image's values. The bicubic thumbnail (the zoo's bar) is
one linear code of that size; the best linear code of blocks is the Karhunen-Loeve transform
(PCA): split the image into ``b x b`` blocks and keep each block's ``b^2 / r`` leading principal
components, fitted on the training split. Larger blocks capture more correlation, so the KLT
climbs with ``b``. This prints, per test split, the PSNR of the thumbnail, of the block KLT at
each block size and, from its manifest entry or metadata, of the model itself, all in the model's input space.

Why it matters (issue 38): on the 1024 px chest radiographs an 8x8 KLT keeping 12 of 64 values
already matched the first native stage of ``ae-chestxray-f4c3``, so the model's shortfall was
training, not a limit of the latent's size.

    python benchmarks/linear_code.py                                  # ae-chestxray-f4c3 on the Hannover test split
    python benchmarks/linear_code.py --models ae-ct-f4c3 --datasets ct_tcia_512 --blocks 4 8 16
"""

import json
import pathlib
import warnings

import numpy as np

import _common

import medzoo
from medzoo.evaluate.common import format_table
from medzoo.metrics import bicubic_thumbnail, psnr


def blocks(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W) -> (number of whole blocks, size^2): the image's non-overlapping ``size x size`` blocks."""
    h, w = image.shape[0] // size * size, image.shape[1] // size * size
    return image[:h, :w].reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3).reshape(-1, size * size)


def klt_psnr(train: list, test: list, size: int, keep: int) -> float:
    """Mean PSNR over ``test`` of each block projected on the ``keep`` leading components fitted on ``train``."""
    x = np.concatenate([blocks(t, size) for t in train])
    mean = x.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((x - mean).T))
    basis = vectors[:, ::-1][:, :keep]
    psnrs = []
    for image in test:
        b = blocks(image, size)
        psnrs.append(min(float(psnr(b[None], ((b - mean) @ basis @ basis.T + mean)[None])[0]), 120.0))
    return float(np.mean(psnrs))


def _model_psnr(info: dict, dataset: str):
    """The test PSNR a model's metadata or manifest entry records on ``dataset``, if any."""
    metrics = info.get("metrics") or {}
    if "per_dataset" in metrics:
        return (metrics["per_dataset"].get(dataset) or {}).get("psnr")
    trained_on = ((info.get("training") or {}).get("dataset") or {}).get("name")
    return metrics.get("psnr") if trained_on == dataset else None


def main(argv=None):
    p = _common.parser("linear_code", __doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["cxr_hannover_1024"], help="test splits (default cxr_hannover_1024)")
    p.add_argument("--blocks", nargs="+", type=int, default=[4, 8, 16, 32], help="KLT block sizes (default 4 8 16 32)")
    p.add_argument("--max-train", type=int, default=20, help="training images the KLT is fitted on (default 20)")
    args = p.parse_args(argv)
    _common.setup_logging()
    warnings.simplefilter("ignore", medzoo.DomainShiftWarning)  # native-size images: the point of the run
    models = _common.available(args.models or ["ae-chestxray-f4c3"])
    rows, results = [], {}
    for name in models:
        model = medzoo.load(name, compile=False)
        info = medzoo.info(name) if name in {m["name"] for m in medzoo.list_models()} else \
            json.loads((pathlib.Path(name) / "metadata.json").read_text())
        for dataset in args.datasets:
            def prepared(split, limit=None):
                images = medzoo.load_dataset(dataset, split)[0][:limit]
                return [np.asarray(model.preprocess(np.asarray(i)[None]), np.float64)[0, ..., 0] for i in images]

            test, train = prepared("test"), prepared("train", args.max_train)
            side = test[0].shape[0]
            numbers = int(np.prod(model.encode(test[0][None, ..., None].astype("float32")).shape[1:]))
            ratio = side * test[0].shape[1] / numbers
            thumb = float(np.mean([psnr(t[None, ..., None], bicubic_thumbnail(t[None, ..., None], numbers)[0])
                                   for t in test]))
            row = {"model": name, "dataset": dataset, "ratio": round(ratio, 2), "thumbnail": thumb}
            for size in args.blocks:
                keep = max(1, round(size * size / ratio))
                row[f"KLT {size}x{size} ({keep})"] = klt_psnr(train, test, size, keep)
            row["model (its metrics)"] = _model_psnr(info, dataset)
            rows.append(row)
            results[f"{name}:{dataset}"] = row
            print(f"{name} on {dataset}: done", flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    text = format_table(keys, [[f"{r[k]:.2f}" if isinstance(r.get(k), float) else r.get(k) for k in keys] for r in rows],
                        title="PSNR (dB) of linear codes keeping as many numbers as the latent, test splits")
    print(text)
    _common.write(args.output, "linear_code", text, results)


if __name__ == "__main__":
    main()
