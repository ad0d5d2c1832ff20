"""Lossless compression: medzoo's lossless streams against PNG, JPEG-LS, JPEG 2000, JPEG XL and WebP lossless.

    python benchmarks/lossless.py                          # 64 test images per modality + the DICOMs
    python benchmarks/lossless.py --max-images 0           # every test image
    python benchmarks/lossless.py --models runs/codec-chestxray/preset   # also on a codec's prediction

Every image is coded on its own, as an archive receives it, and decoded back; a row
counts only if every image comes back bit for bit. Rates are whole files/streams
(headers included) in bits per pixel. 8-bit: the test split of each modality's dataset
as stored. 12-16-bit: the real DICOM files in ``$MEDZOO_DATA_DIR/dicom`` (CT in int16
with negative values, a 12-bit MR, a 10-bit CR), their stored pixel arrays; their own
JPEG 2000 lossless codestreams are listed for reference. PNG is the baseline of the
"vs PNG" column. Speed: megapixels per second on this machine, one image per call.
"""

import os
import pathlib
import time

import _common
import numpy as np

import medzoo
from medzoo.data import load_npz
from medzoo.evaluate import classical
from medzoo.evaluate.common import format_table
from medzoo.recipes.catalog import MODALITIES

DICOM_FILES = ("693_J2KR.dcm", "MR2_J2KR.dcm", "RG3_J2KR.dcm")


def build_parser():
    p = _common.parser("lossless", __doc__.splitlines()[0])
    p.set_defaults(max_images=64)
    p.add_argument("--codecs", nargs="+", help="classical codecs (default: all available)")
    p.add_argument("--no-dicom", action="store_true", help="leave out the 12-16-bit DICOM files")
    return p


def image_sets(max_images, dicom=True) -> dict:
    """``{name: (list of (H, W) integer images, note)}``: each modality's test split, then the DICOMs."""
    sets = {}
    for modality, (dataset, *_) in MODALITIES.items():
        raw = load_npz(dataset, "test")
        images = np.asarray(raw[0] if isinstance(raw, tuple) else raw)
        images = images[..., 0] if images.ndim == 4 else images
        images = images[:max_images] if max_images else images
        sets[modality] = ([np.ascontiguousarray(a) for a in images], f"{len(images)} x {images.shape[1]}x"
                                                                      f"{images.shape[2]} {images.dtype}")
    if dicom:
        import pydicom

        folder = pathlib.Path(os.environ.get("MEDZOO_DATA_DIR", "../shared/data")) / "dicom"
        for name in DICOM_FILES:
            path = folder / name
            if not path.is_file():
                print(f"(no {path}: left out)")
                continue
            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array
            sets[name.split("_")[0] + f" ({ds.Modality})"] = (
                [pixels], f"{pixels.shape[0]}x{pixels.shape[1]} {pixels.dtype}, {ds.BitsStored} bits stored; its "
                          f"JPEG 2000 lossless: {8 * len(ds.PixelData) / pixels.size:.3f} bpp")
    return sets


def measure(encode, decode, images) -> dict:
    """Total bits per pixel, exactness and MP/s of encode/decode, one image per call."""
    bits = pixels = 0
    t_enc = t_dec = 0.0
    exact = True
    for image in images:
        t = time.perf_counter()
        data = encode(image)
        t_enc += time.perf_counter() - t
        t = time.perf_counter()
        back = decode(data)
        t_dec += time.perf_counter() - t
        exact &= bool(back.dtype == image.dtype and np.array_equal(back, image))
        bits += 8 * len(data)
        pixels += image.size
    return {"bpp": bits / pixels, "exact": exact, "encode_mp_s": pixels / 1e6 / t_enc,
            "decode_mp_s": pixels / 1e6 / t_dec}


def medzoo_coders(models) -> dict:
    """``{label: (encode, decode)}``: the causal coder alone, then on each codec's prediction."""
    out = {"medzoo lossless (causal)": (lambda a: medzoo.compress(a, lossless=True), medzoo.decompress)}
    for name in models or []:
        model = medzoo.codec.stream._resolve_coder(name)
        out[f"medzoo lossless on {pathlib.Path(name).name}"] = (
            lambda a, m=model: medzoo.compress(a, m, lossless=True), lambda d, m=model: medzoo.decompress(d, m))
    return out


def run(args) -> tuple[dict, str]:
    sets = image_sets(args.max_images, dicom=not args.no_dicom)
    results, texts = {}, []
    for set_name, (images, note) in sets.items():
        bits = np.iinfo(images[0].dtype).bits
        per_codec = {label: measure(encode, decode, images)
                     for label, (encode, decode) in medzoo_coders(args.models).items()}
        for name in args.codecs or classical.available_lossless_codecs(bits):
            codec = classical.LOSSLESS_CODECS[name]
            if codec.bits >= bits:
                dtype = images[0].dtype
                per_codec[codec.label] = measure(lambda a, c=codec: classical.lossless_encode(c, a),
                                                 lambda d, c=codec: classical.lossless_decode(c, d, dtype), images)
        png = per_codec.get("PNG", {}).get("bpp")
        rows = [[label, f"{m['bpp']:.3f}", f"{100 * (m['bpp'] / png - 1):+.1f}%" if png else "-",
                 "yes" if m["exact"] else "NO", f"{m['encode_mp_s']:.2f}", f"{m['decode_mp_s']:.2f}"]
                for label, m in per_codec.items()]
        texts.append(format_table(["coder", "bpp", "vs PNG", "exact", "encode MP/s", "decode MP/s"], rows,
                                  title=f"{set_name}: {note}"))
        results[set_name] = {"note": note, "coders": per_codec}
        print(texts[-1] + "\n", flush=True)
    return results, "\n\n".join(texts)


def main(argv=None):
    args = build_parser().parse_args(argv)
    _common.setup_logging()
    with _common.Timer() as t:
        results, text = run(args)
    text += f"\n\n({t.seconds:.0f} s)"
    _common.write(args.output, "summary", text, results)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
