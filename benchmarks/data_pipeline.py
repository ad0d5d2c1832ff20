"""DICOM input speed: a serial read_dicom + PreprocessSpec loop against medzoo.from_directory, in images/second.

    python benchmarks/data_pipeline.py                    # 512 DICOMs of 512 x 512 px, median of 3
    python benchmarks/data_pipeline.py --images 128 --size 256 --repeats 1
    python benchmarks/data_pipeline.py --workdir /tmp/medzoo-dicoms   # keep the files and reuse them

Builds a folder of real-image DICOM files (Kermany pediatric chest X-rays: the training split
of kermany_pediatric_cxr_128.npz, found like medzoo.load_npz does, e.g. in $MEDZOO_DATA_DIR;
upscaled to --size, one class folder per label) in a mix of encodings: uncompressed explicit
and implicit VR little endian, RLE Lossless (pydicom's own encoder), JPEG 2000 Lossless
(pydicom through pylibjpeg-openjpeg), JPEG baseline (Pillow-encoded, encapsulated), 8- and
12-bit, some MONOCHROME1 with inverted pixels, some with a VOI window. Then it reads the whole
folder with (a) a plain Python loop, read_dicom + PreprocessSpec.apply one file after the
other, and (b) medzoo.from_directory (header validation up front, parallel decode, batching,
prefetch), each once after a warm-up, --repeats times alternately, and reports the median
images/second and their ratio. Both produce the same arrays (checked, up to float tolerance),
so the comparison is of equal work. The preprocessing is that of the zoo's chest X-ray models
(128 x 128, stretch, min-max to [0, 1]). Timings depend on the machine and on what else runs on
it: the load average is recorded next to them.
"""

import argparse
import json
import logging
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import _common

import numpy as np

SPEC = {"size": (128, 128), "channels": 1, "resize": "stretch", "normalize": "minmax"}  # the zoo's chest X-ray spec
DATASET = "kermany_pediatric_cxr_128"
CLASS_NAMES = ("normal", "pneumonia")
TOLERANCE = 1e-5  # on [0, 1] outputs: float rounding only
# (name, transfer syntax, bits stored, MONOCHROME1, VOI window); files cycle through them in this order
VARIANTS = (
    ("explicit-le-8bit", "ExplicitVRLittleEndian", 8, False, False),
    ("implicit-le-12bit-mono1-window", "ImplicitVRLittleEndian", 12, True, True),
    ("rle-12bit", "RLELossless", 12, False, False),
    ("rle-8bit-mono1", "RLELossless", 8, True, False),
    ("j2k-lossless-12bit", "JPEG2000Lossless", 12, False, False),
    ("j2k-lossless-12bit-mono1", "JPEG2000Lossless", 12, True, False),
    ("jpeg-baseline-8bit", "JPEGBaseline8Bit", 8, False, False),
)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=512, help="DICOM files to write and read (default 512)")
    p.add_argument("--size", type=int, default=512, help="side of the written images in pixels (default 512)")
    p.add_argument("--batch-size", type=int, default=32, help="from_directory batch size (default 32)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes of each method; the median is reported")
    p.add_argument("--workdir", type=pathlib.Path,
                   help="folder for the DICOM files, kept and reused when it matches (default: a temp folder)")
    p.add_argument("--seed", type=int, default=0, help="which training images are used")
    p.add_argument("--output", type=pathlib.Path, default=_common.RESULTS / "data_pipeline",
                   help="folder for summary.txt / summary.json (default benchmarks/results/data_pipeline)")
    args = p.parse_args(argv)
    for name in ("images", "size", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.size < 128:
        p.error("--size must be at least 128 (the source images are 128 x 128)")
    return args


# ------------------------------------------------------------------ writing the folder


def _upscale(image: np.ndarray, size: int, bits: int) -> np.ndarray:
    """A uint8 128 x 128 image -> size x size, bicubic, as uint8 (8 bits) or uint16 in 0 .. 2**bits - 1."""
    from PIL import Image

    big = np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((size, size), Image.BICUBIC))
    top = 2**bits - 1
    stored = np.clip(np.rint(big * (top / 255.0)), 0, top)
    return stored.astype(np.uint8 if bits == 8 else np.uint16)


def _dataset(pixels: np.ndarray, bits: int, mono1: bool, window: bool, index: int):
    """A CR Image Storage dataset holding ``pixels`` (already inverted for MONOCHROME1)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    cr_storage = "1.2.840.10008.5.1.4.1.1.1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = cr_storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = cr_storage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.PatientID = f"BENCH{index:05d}"
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.2, 0.2]
    if window:  # a window covering 90 % of the range: the VOI step runs and clips a little
        top = 2**bits - 1
        ds.WindowCenter = round(top / 2)
        ds.WindowWidth = round(0.9 * top)
    ds.PixelData = pixels.tobytes()
    return ds


def _write_one(path: pathlib.Path, image: np.ndarray, size: int, variant, index: int) -> None:
    import io

    import pydicom.uid
    from PIL import Image
    from pydicom.encaps import encapsulate

    _, syntax, bits, mono1, window = variant
    pixels = _upscale(image, size, bits)
    if mono1:  # store inverted: read_dicom flips MONOCHROME1 back, so it looks like the original
        pixels = (2**bits - 1 - pixels).astype(pixels.dtype)
    ds = _dataset(pixels, bits, mono1, window, index)
    uid = getattr(pydicom.uid, syntax)
    if syntax == "JPEGBaseline8Bit":  # pydicom has no JPEG encoder: Pillow encodes, pydicom encapsulates
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=90)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.file_meta.TransferSyntaxUID = uid
    elif uid.is_compressed:
        ds.compress(uid, pixels, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = uid
    ds.save_as(path, enforce_file_format=True)


def build_folder(root: pathlib.Path, n: int, size: int, seed: int) -> dict:
    """Write ``n`` DICOM files below ``root/<class>/``; reuse them when ``root/manifest.json`` matches."""
    from medzoo.data import load_npz

    wanted = {"dataset": DATASET, "images": n, "size": size, "seed": seed, "variants": [v[0] for v in VARIANTS]}
    manifest_path = root / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("params") == wanted:
            print(f"reusing the {n} DICOM files in {root}", file=sys.stderr)
            return manifest
        shutil.rmtree(root)  # our own folder (it has our manifest), written with other settings
    elif root.exists() and any(root.iterdir()):
        sys.exit(f"--workdir {root} is not empty and was not written by this script; pass a new or empty folder")
    images, labels = load_npz(DATASET, "train")
    if n > len(images):
        sys.exit(f"--images {n} is more than the {len(images)} training images of {DATASET}")
    order = np.random.default_rng(seed).permutation(len(images))[:n]
    counts: dict[str, int] = {}
    start = time.time()
    for i, k in enumerate(order):
        variant = VARIANTS[i % len(VARIANTS)]
        folder = root / CLASS_NAMES[labels[k]]
        folder.mkdir(parents=True, exist_ok=True)
        _write_one(folder / f"img{i:05d}.dcm", images[k], size, variant, i)
        counts[variant[0]] = counts.get(variant[0], 0) + 1
    files = sorted(root.rglob("*.dcm"))
    manifest = {"params": wanted, "variants": counts, "bytes": sum(f.stat().st_size for f in files),
                "seconds_to_write": time.time() - start}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def codec_plugins() -> dict:
    """pydicom's available encoder and decoder plugins per compressed syntax (tried in this order)."""
    import pydicom.uid
    from pydicom.pixels import get_decoder, get_encoder

    plugins = {}
    for syntax in sorted({v[1] for v in VARIANTS}):
        uid = getattr(pydicom.uid, syntax)
        if not uid.is_compressed:
            continue
        try:
            encoders = list(get_encoder(uid).available_plugins)
        except NotImplementedError:
            encoders = ["(none in pydicom: Pillow encodes, pydicom encapsulates)"]
        plugins[syntax] = {"encode": encoders, "decode": list(get_decoder(uid).available_plugins)}
    return plugins


# ------------------------------------------------------------------ the two readers


def serial_loop(files, spec):
    """The naive way: one file after the other, read_dicom then spec.apply, in plain Python."""
    from medzoo.data import read_dicom

    images, labels = [], []
    for path, label in files:
        pixels, _ = read_dicom(path)
        images.append(spec.apply(pixels).numpy())
        labels.append(label)
    return np.stack(images), np.asarray(labels, np.int32)


def pipeline(root, spec, batch_size, limit=None):
    """medzoo.from_directory, iterated once (or for ``limit`` batches); returns (images, labels, build s)."""
    import medzoo

    start = time.perf_counter()
    data = medzoo.from_directory(root, spec, batch_size=batch_size)
    built = time.perf_counter() - start
    ds = data.dataset if limit is None else data.dataset.take(limit)
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels), built


def main(argv=None):
    args = parse_args(argv)
    _common.setup_logging()
    logging.getLogger("openjpeg").setLevel(logging.WARNING)  # one INFO line per encoded tile otherwise
    from medzoo.data import PreprocessSpec

    spec = PreprocessSpec(**SPEC)
    temp = None
    if args.workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="medzoo-dicoms-")
        root = pathlib.Path(temp.name)
    else:
        root = args.workdir
    try:
        manifest = build_folder(root, args.images, args.size, args.seed)
        files = [(path, CLASS_NAMES.index(path.parent.name))
                 for folder in CLASS_NAMES if (root / folder).is_dir()
                 for path in sorted((root / folder).iterdir()) if path.suffix == ".dcm"]
        n = len(files)

        # warm-up: pydicom plugins, TF kernels and graph tracing, page cache
        serial_loop(files[: 2 * len(VARIANTS)], spec)
        pipeline(root, spec, args.batch_size, limit=2)

        serial_s, pipeline_s, build_s = [], [], []
        for _ in range(args.repeats):  # alternate, so background load hits both alike
            start = time.perf_counter()
            serial_images, serial_labels = serial_loop(files, spec)
            serial_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            pipe_images, pipe_labels, built = pipeline(root, spec, args.batch_size)
            pipeline_s.append(time.perf_counter() - start)
            build_s.append(built)

        if pipe_images.shape != serial_images.shape or not np.array_equal(pipe_labels, serial_labels):
            sys.exit(f"the outputs differ: pipeline {pipe_images.shape} labels {np.bincount(pipe_labels)}, "
                     f"serial {serial_images.shape} labels {np.bincount(serial_labels)}")
        max_diff = float(np.max(np.abs(pipe_images - serial_images)))
        if max_diff > TOLERANCE:
            sys.exit(f"the outputs differ: max |pipeline - serial| = {max_diff:g} > {TOLERANCE:g}")
    finally:
        if temp is not None:
            temp.cleanup()

    plugins = codec_plugins()
    serial_t, pipeline_t, build_t = (statistics.median(v) for v in (serial_s, pipeline_s, build_s))
    from medzoo.evaluate.common import format_table

    rows = [
        ["serial loop (read_dicom + spec.apply)", serial_t, None, n / serial_t, 1.0],
        ["medzoo.from_directory (build + 1 epoch)", pipeline_t, build_t, n / pipeline_t, serial_t / pipeline_t],
    ]
    load = os.getloadavg()
    title = (f"{n} DICOM files of {args.size} x {args.size} px -> {spec.size[0]} x {spec.size[1]}, "
             f"batch {args.batch_size}, median of {args.repeats}; {os.cpu_count()} CPU(s), "
             f"load average {load[0]:.2f} (1 min)")
    text = format_table(["method", "seconds", "of which build", "images/s", "speed-up"], rows, title=title)
    text += (f"\nencodings: {', '.join(f'{k} {v}' for k, v in manifest['variants'].items())}"
             f"\npydicom plugins (first tried first): "
             + "; ".join(f"{k} encode {'/'.join(v['encode'])}, decode {'/'.join(v['decode'])}"
                         for k, v in plugins.items())
             + f"\noutputs agree: max |pipeline - serial| = {max_diff:.2e} over {n} images")
    summary = {
        "images": n, "size": args.size, "batch_size": args.batch_size, "repeats": args.repeats,
        "preprocess": spec.to_config(), "variants": manifest["variants"], "bytes_on_disk": manifest["bytes"],
        "serial": {"seconds": serial_s, "median_seconds": serial_t, "images_per_second": n / serial_t},
        "from_directory": {"seconds": pipeline_s, "median_seconds": pipeline_t, "build_seconds": build_s,
                           "median_build_seconds": build_t, "images_per_second": n / pipeline_t},
        "plugins": plugins, "speedup": serial_t / pipeline_t, "max_abs_difference": max_diff,
        "cpu_count": os.cpu_count(), "load_average": list(load),
    }
    _common.write(args.output, "summary", text, summary)
    print(text)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
