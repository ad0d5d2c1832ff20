"""Lossless compression: medzoo's lossless streams against PNG, JPEG-LS, JPEG 2000, JPEG XL and WebP lossless.

    python benchmarks/lossless.py                          # 64 test images per modality + the DICOMs
    python benchmarks/lossless.py --max-images 0           # every test image
    python benchmarks/lossless.py --models runs/hyperprior-chestxray/preset   # also on a codec's prediction
    python benchmarks/lossless.py --max-images 0 --sets native wg04 --medzoo-versions 1 2   # the archive table

Every image is coded on its own, as an archive receives it, and decoded back; a row
counts only if every image comes back bit for bit. Rates are whole files/streams
(headers included) in bits per pixel. 8-bit: the test split of each modality's dataset
as stored. 12-16-bit: the real DICOM files in ``$MEDZOO_DATA_DIR/dicom`` (CT in int16
with negative values, a 12-bit MR, a 10-bit CR), their stored pixel arrays; their own
JPEG 2000 lossless codestreams are listed for reference. ``--sets native`` adds the
native-resolution test splits (``cxr_hannover_1024`` 8-bit, ``ct_tcia_512`` in int16 HU, as a
CT DICOM stores them); ``--sets wg04`` the NEMA WG04 compression test images that
``pip install pydicom-data`` ships, uncompressed (``*_UNCR.dcm``: CR chest 1955x1841 15-bit,
CR extremity 10-bit, MR 12-bit, CT int16, ultrasound 8-bit RGB: one colour image for every coder,
each with its own colour transform; its rate is bits per sample, a third of a pixel's).
``--medzoo-versions 1 2`` lists two rows of the causal coder (1: its first payload version, the
median edge detector; 2, the default: what ``medzoo.compress`` writes, classified linear prediction,
with the edge of a CT's padding coded apart where ``medzoo.codec.lossless.is_padded``). PNG is the baseline of the
"vs PNG" column; the last column compares with JPEG-LS. Speed: megapixels per second on this
machine, one image per call. ``--against REV`` adds a row for ``medzoo/codec/lossless.py`` and the compiled
steps it calls (``wavefront.py``) as of git revision REV (this checkout's other modules around them), the
baseline for a change of the coder:

    python benchmarks/lossless.py --max-images 0 --sets native wg04 --codecs jpegls --against HEAD~1
"""

import functools
import os
import pathlib
import subprocess
import time
import types
from unittest import mock

import _common
import numpy as np

import medzoo
from medzoo.data import load_dataset, load_npz
from medzoo.evaluate import classical
from medzoo.evaluate.common import format_table
from medzoo.recipes.catalog import MODALITIES

DICOM_FILES = ("693_J2KR.dcm", "MR2_J2KR.dcm", "RG3_J2KR.dcm")
#: the NEMA WG04 native images in pydicom-data (uncompressed), by what they are
WG04_FILES = {"RG1 CR chest": "RG1_UNCR.dcm", "RG3 CR extremity": "RG3_UNCR.dcm", "MR2": "MR2_UNCR.dcm",
              "CT (693)": "693_UNCR.dcm", "US1 ultrasound": "US1_UNCR.dcm"}
NATIVE_TEST = ("cxr_hannover_1024", "ct_tcia_512")


def build_parser():
    p = _common.parser("lossless", __doc__.splitlines()[0])
    p.set_defaults(max_images=64)
    p.add_argument("--codecs", nargs="+", help="classical codecs (default: all available)")
    p.add_argument("--no-dicom", action="store_true", help="leave out the 12-16-bit DICOM files")
    p.add_argument("--sets", nargs="+", default=["stored"], choices=["stored", "native", "wg04"],
                   help="image sets: stored (each modality's test split and the DICOMs; default), native "
                        "(the native-resolution test splits), wg04 (the NEMA WG04 images of pydicom-data)")
    p.add_argument("--medzoo-versions", nargs="+", type=int, default=[2], choices=[1, 2],
                   help="rows of the causal coder to list: 1, its first payload version (the median edge "
                        "detector); 2, what compress writes (the default)")
    p.add_argument("--against", metavar="REV", help="also time the causal coder (medzoo/codec/lossless.py) as of "
                                                    "this git revision, beside this checkout's")
    return p


def image_sets(max_images, dicom=True, which=("stored",)) -> dict:
    """``{name: (list of (H, W) integer images, note)}``: each modality's test split, then the DICOMs."""
    sets = {}
    if "native" in which:
        sets.update(native_sets(max_images))
    if "wg04" in which:
        sets.update(wg04_sets())
    if "stored" not in which:
        return sets
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


def native_sets(max_images) -> dict:
    """The native-resolution test splits as stored (CT in int16 Hounsfield units)."""
    sets = {}
    for name in NATIVE_TEST:
        images, _ = load_dataset(name, "test")
        images = images[:max_images] if max_images else images
        sets[name] = (images, f"{len(images)} x {images[0].shape[0]}x{images[0].shape[1]} {images[0].dtype}")
    return sets


def wg04_sets() -> dict:
    """The NEMA WG04 native images (pydicom-data), stored pixels; colour as (H, W, 3)."""
    import pydicom
    from pydicom.data import get_testdata_file

    sets = {}
    for label, name in WG04_FILES.items():
        path = get_testdata_file(name)
        if path is None:
            print(f"(no {name}: pip install pydicom-data; left out)")
            continue
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        sets[label] = ([pixels], f"{pixels.shape[0]}x{pixels.shape[1]}{' RGB' if pixels.ndim == 3 else ''} "
                                 f"{pixels.dtype}, {ds.BitsStored} bits stored")
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


def _compress(image, **kwargs) -> bytes:
    """``medzoo.compress`` of one grey (H, W) or colour (H, W, 3) image (colour as a batch of one)."""
    return medzoo.compress(image[None] if image.ndim == 3 else image, **kwargs)


def _decompress(data, model=None) -> np.ndarray:
    back = medzoo.decompress(data, model)
    return back[0] if back.ndim == 4 else back


def coder_at(revision: str) -> types.ModuleType:
    """``medzoo/codec/lossless.py`` as of a git revision, as a module of its own, with the compiled steps it
    calls (``wavefront.py``) and, where the revision has it, its range coder (``ans.py``) as of the same
    revision; it imports this checkout's other modules."""
    root = pathlib.Path(__file__).resolve().parent.parent

    def module_at(path: str) -> types.ModuleType:
        source = subprocess.run(["git", "show", f"{revision}:{path}"], capture_output=True, text=True, check=True,
                                cwd=root).stdout
        module = types.ModuleType(f"medzoo.codec.{pathlib.Path(path).stem}_at_revision")
        exec(compile(source, f"{revision}:{path}", "exec"), module.__dict__)
        return module

    coder = module_at("medzoo/codec/lossless.py")
    coder.wavefront = module_at("medzoo/codec/wavefront.py")
    if hasattr(coder, "ans"):  # the compiled range coder, since issue 63
        coder.ans = module_at("medzoo/codec/ans.py")
    return coder


def _through(module, fn):
    """``fn`` with ``medzoo.compress``/``decompress`` coding through ``module``'s causal coder."""
    from medzoo.codec import lossless

    def run(arg):
        with mock.patch.object(lossless, "encode_signal", module.encode_signal), \
                mock.patch.object(lossless, "decode_signal", module.decode_signal):
            return fn(arg)

    return run


def _causal_v1(image):
    """A stream whose residual payload is version 1 (the median edge detector), as medzoo 0.x wrote it."""
    from unittest import mock

    from medzoo.codec import lossless

    with mock.patch.object(lossless, "encode_signal", lossless.encode_signal_med):
        return _compress(image, lossless=True)


def medzoo_coders(models, versions=(2,), against=None) -> dict:
    """``{label: (encode, decode)}``: the causal coder alone (each payload version; as of git revision
    ``against`` too), then on each codec's prediction."""
    out = {}
    if 1 in versions:
        out["medzoo lossless v1 (median edge)"] = (_causal_v1, _decompress)
    if 2 in versions:
        out["medzoo lossless (causal, linear)"] = (lambda a: _compress(a, lossless=True), _decompress)
    if against:
        old = coder_at(against)
        out[f"medzoo lossless at {against}"] = (_through(old, lambda a: _compress(a, lossless=True)),
                                                _through(old, _decompress))
    for name in models or []:
        model = medzoo.codec.stream._resolve_coder(name)
        out[f"medzoo lossless on {pathlib.Path(name).name}"] = (
            lambda a, m=model: _compress(a, model=m, lossless=True), lambda d, m=model: _decompress(d, m))
    return out


def warm_up():
    """Code a small signal with every payload version once: the decoder's compiled loops load (or compile, on
    the first run after an install) here, not inside the first set's timing."""
    from medzoo.codec import lossless

    signal = np.add.outer(np.arange(32), 3 * np.arange(32))[None] % 251
    for encode in (lossless.encode_signal_med, lossless.encode_signal_linear,
                   functools.partial(lossless.encode_signal_linear, floor=True)):
        lossless.decode_signal(encode(signal, np.dtype("uint8")), signal.shape)


def run(args) -> tuple[dict, str]:
    sets = image_sets(args.max_images, dicom=not args.no_dicom, which=args.sets)
    results, texts = {}, []
    warm_up()
    coders = medzoo_coders(args.models, args.medzoo_versions, args.against)
    for set_name, (images, note) in sets.items():
        bits = np.iinfo(images[0].dtype).bits
        for encode, decode in coders.values():  # each coder's compiled loops for this pixel type, before timing
            decode(encode(np.ascontiguousarray(images[0][:32, :32])))
        per_codec = {label: measure(encode, decode, images) for label, (encode, decode) in coders.items()}
        for name in args.codecs or classical.available_lossless_codecs(bits):
            codec = classical.LOSSLESS_CODECS[name]
            if codec.bits >= bits:
                dtype, colour = images[0].dtype, images[0].ndim == 3
                per_codec[codec.label] = measure(lambda a, c=codec: classical.lossless_encode(c, a),
                                                 lambda d, c=codec: classical.lossless_decode(c, d, dtype, colour),
                                                 images)
        png = per_codec.get("PNG", {}).get("bpp")
        jls = per_codec.get("JPEG-LS", {}).get("bpp")
        rows = [[label, f"{m['bpp']:.3f}", f"{100 * (m['bpp'] / png - 1):+.1f}%" if png else "-",
                 f"{100 * (m['bpp'] / jls - 1):+.1f}%" if jls else "-",
                 "yes" if m["exact"] else "NO", f"{m['encode_mp_s']:.2f}", f"{m['decode_mp_s']:.2f}"]
                for label, m in per_codec.items()]
        texts.append(format_table(["coder", "bpp", "vs PNG", "vs JPEG-LS", "exact", "encode MP/s", "decode MP/s"],
                                  rows,
                                  title=f"{set_name}: {note}"))
        results[set_name] = {"note": note, "coders": per_codec}
        print(texts[-1] + "\n", flush=True)
    return results, "\n\n".join(texts)


def main(argv=None):
    _common.run_and_write(build_parser(), run, argv)


if __name__ == "__main__":
    main()
