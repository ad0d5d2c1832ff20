"""The ``medzoo`` command line, end to end: each command as a subprocess on a few real images.

Every subprocess imports TensorFlow (seconds), so the commands that only format the
manifest (list, info, download of a bundled model) run in-process through ``main()``;
so do the error paths; the commands that run models run as real subprocesses (six of
them, through ``python -m medzoo`` and through the console script). The subprocesses are
offline (``HF_HUB_OFFLINE=1``) and use an empty temporary medzoo cache; compress and
decompress run without the data folder too, on the entropy model shipped in the bundled
vqvae-chestxray preset.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pydicom import data as pydicom_data

import medzoo
from medzoo.cli import main
from medzoo.data import sample_files, to_uint8
from medzoo.data.folder_sets import read_splits

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CONSOLE_SCRIPT = pathlib.Path(sys.executable).parent / "medzoo"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty medzoo cache: nothing is downloaded or fitted into it."""
    return tmp_path_factory.mktemp("medzoo-cache")


def run(args, cache_dir, *, env=None, script=False, timeout=900):
    """Run ``medzoo ARGS`` (the console script, or ``python -m medzoo``) offline; returns the CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": "2", "HF_HUB_OFFLINE": "1",
                "MEDZOO_CACHE": str(cache_dir), **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    command = [str(CONSOLE_SCRIPT)] if script and CONSOLE_SCRIPT.is_file() else [sys.executable, "-m", "medzoo"]
    return subprocess.run([*command, "--log-level", "WARNING", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    return np.asarray(Image.open(path))


# ------------------------------------------------------------ in-process
def test_list_info_and_download_of_a_bundled_model(tmp_path, capsys):
    assert main(["list"]) == 0
    table = capsys.readouterr().out
    for name in ("ae-chestxray", "vae-chestxray", "vqvae-chestxray"):
        assert re.search(rf"^{name}\s+\w+\s+128x128x1", table, re.M), name
    assert re.search(r"^dae-chestxray-f4c3\s+autoencoder\s+any x 1", table, re.M)
    assert ("retired names (each gives its replacement): ae-chestxray-f4c1 -> ae-chestxray-f4c3, "
            "dae-chestxray -> dae-chestxray-f4c3") in table

    assert main(["info", "vae-chestxray"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("vae-chestxray 1.0.1  (vae,") and "doi:10.17632/rscbjbr9sj.2" in text
    entry = medzoo.info("vae-chestxray")
    lines = text.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("metrics (test)"))
    header, values = lines[row].split()[2:], lines[row + 1].split()  # the metrics table: names, then figures
    assert dict(zip(header, values))["psnr"] == f"{entry['metrics']['psnr']:.4g}"
    assert all(f["sha256"] in text for f in entry["files"])
    assert main(["info", "vae-chestxray", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == entry

    cache_dir = tmp_path / "cache"
    assert main(["download", "vae-chestxray-f8c4", "--cache-dir", str(cache_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    bundled = pathlib.Path(medzoo.__file__).parent / "presets" / "vae-chestxray-f8c4"
    assert "sha256 verified" in out[0] and pathlib.Path(out[-1]).parent.name == "presets"
    assert not cache_dir.exists()  # on disk already (the checkout's presets, or the copy bundled in the package)
    assert bundled.is_dir() and not (bundled.parent / "vae-chestxray").exists()  # the wheel bundles the default only

    assert main(["download", "vae-chestxray", "--force"]) == 1  # nothing to download it from
    assert "medzoo: error: force_download=True, but model 'vae-chestxray' has no hub source" in capsys.readouterr().err


def test_download_to_writes_an_offline_mirror_that_loads_alone_and_refuses_a_tampered_file(tmp_path, capsys,
                                                                                            monkeypatch):
    mirror = tmp_path / "mirror"
    assert main(["download", "vqvae-chestxray", "ae-chestxray-f4c3", "--to", str(mirror), "--offline"]) == 0
    out = capsys.readouterr().out
    assert f"set MEDZOO_MIRROR={mirror}" in out and sorted(p.name for p in mirror.iterdir()) == [
        "ae-chestxray-f4c3", "vqvae-chestxray"]
    entry = medzoo.info("vqvae-chestxray")
    assert sorted(p.name for p in (mirror / "vqvae-chestxray").iterdir()) == sorted(f["filename"] for f in entry["files"])

    monkeypatch.setenv("MEDZOO_MIRROR", str(mirror))
    model = medzoo.load("vqvae-chestxray", compile=False)
    assert model.zoo_metadata["source"] == "mirror" and model.zoo_metadata["path"] == str(mirror / "vqvae-chestxray")
    with pytest.raises(medzoo.zoo.FilesUnavailableError, match="not in the offline mirror.*medzoo download vae-chestxray"):
        medzoo.load("vae-chestxray")  # the mirror is the only source when set: no fallback, no network
    weights = mirror / "ae-chestxray-f4c3" / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(medzoo.IntegrityError, match="offline mirror|mirror's copy"):
        medzoo.load("ae-chestxray-f4c3")
    assert main(["download", "--all", "--to", str(tmp_path / "m2"), "--offline"]) == 1  # vae-chestxray is absent
    assert "not in the offline mirror" in capsys.readouterr().err


def test_user_errors_are_one_line_and_exit_1(tmp_path, capsys):
    """main() returns 1 with ``medzoo: error: ...`` instead of raising (so no traceback) for user mistakes."""
    assert main(["info", "vae-chestxra"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("medzoo: error: unknown model 'vae-chestxra'; did you mean 'vae-chestxray'")
    assert main(["reconstruct", "vae-chestxray", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o")]) == 1
    missing = tmp_path / "missing.png"
    assert capsys.readouterr().err.strip().endswith(f"medzoo: error: {missing}: no such file or folder")
    (tmp_path / "not-a-stream.mzc").write_bytes(b"hello")
    assert main(["decompress", str(tmp_path / "not-a-stream.mzc"), "-o", str(tmp_path / "o")]) == 1
    assert f"medzoo: error: {tmp_path / 'not-a-stream.mzc'}: not a medzoo stream" in capsys.readouterr().err
    (tmp_path / "empty.mzc").write_bytes(b"")
    assert main(["decompress", str(tmp_path / "empty.mzc"), "-o", str(tmp_path / "o")]) == 1
    assert f"medzoo: error: {tmp_path / 'empty.mzc'}: empty file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_inputs_after_an_option_join_the_inputs_and_an_unknown_option_is_still_refused(tmp_path, capsys):
    """``compress MODEL --quality 3 a.dcm b.dcm`` reads both files as inputs (argparse alone stopped at the
    option and called them unrecognized); a misspelt option still ends the command before anything runs."""
    from medzoo.cli import _parse, build_parser

    args = _parse(build_parser(), ["compress", "ae-chestxray-f4c3", "--quality", "3", "a.dcm", "b.dcm", "-o", "x.mzc"])
    assert args.items == ["ae-chestxray-f4c3", "a.dcm", "b.dcm"] and args.quality == 3
    args = _parse(build_parser(), ["reconstruct", "ae-chestxray", "a.png", "--batch-size", "4", "b.png", "-o", "o"])
    assert args.model == "ae-chestxray" and args.inputs == ["a.png", "b.png"] and args.batch_size == 4
    with pytest.raises(SystemExit) as stopped:
        main(["compress", "ae-chestxray-f4c3", "--qualty", "3", "a.dcm", "-o", str(tmp_path / "x.mzc")])
    assert stopped.value.code == 2 and "unrecognized arguments: --qualty" in capsys.readouterr().err
    assert not (tmp_path / "x.mzc").exists()


def test_info_labels_a_mean_of_datasets_as_such(capsys):
    assert main(["info", "vae-chestxray-f8c4"]) == 0
    out = capsys.readouterr().out
    assert "equal-share mean of 2 datasets" in out and "kermany_pediatric_cxr_128" in out and "cxr_hannover_1024" in out


def test_model_names_ignore_case_and_an_unknown_one_points_at_medzoo_list(capsys):
    assert main(["info", "VAE-ChestXray-F8C4"]) == 0
    assert "vae-chestxray-f8c4" in capsys.readouterr().out
    assert main(["info", "resnet50"]) == 1
    assert "medzoo list" in capsys.readouterr().err


# ---------------------------------------------------------- subprocesses
def test_reconstruct_pngs_and_a_dicom_without_extension(cache, dicom_dir, tmp_path):
    dicom = tmp_path / "chest_pa"  # no extension: recognised as DICOM by content
    shutil.copyfile(dicom_dir / "rsna_pneumonia_cr_chest_pa_jpegbaseline.dcm", dicom)
    inputs = [str(p) for p in sample_files()[3:5]] + [str(dicom)]
    out = ok(run(["reconstruct", "vae-chestxray", *inputs, "-o", str(tmp_path / "rec")], cache, script=True))
    scores = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line.startswith(("/", "mean"))}
    assert list(scores)[:3] == inputs and len(scores) == 4
    assert all(15 < v < 40 for v in scores.values()), scores
    for name in ("test169_normal", "test170_pneumonia", "chest_pa"):
        assert png(tmp_path / "rec" / f"{name}_reconstruction.png").shape == (128, 128)  # the model's size
        pixels = png(tmp_path / "rec" / f"{name}_comparison.png")
        assert pixels.shape == (128 + 4, 3 * 130 + 2)  # input | reconstruction | |error|, 2 px borders
        panels = [pixels[2:130, 2 + 130 * i:130 + 130 * i].astype(float) for i in range(3)]
        assert np.abs(panels[0] - panels[1]).mean() > 2 and panels[2].mean() < panels[0].mean()
    assert np.corrcoef(panels[0].ravel(), panels[1].ravel())[0, 1] > 0.8  # the reconstruction resembles the input


def test_reconstruct_a_ct_dicom_in_hounsfield_units_at_full_size(cache, dicom_dir, tmp_path):
    # a head CT (RescaleIntercept -1024, air padding at -3024 HU): the CT model reads HU, not the display window
    proc = run(["reconstruct", "ae-ct-f4c3", str(dicom_dir / "693_J2KR.dcm"), "-o", str(tmp_path / "ct")], cache)
    out = ok(proc)
    header, row = [line.split() for line in out.splitlines() if line.startswith("input") or "693_J2KR" in line][:2]
    assert header[-2:] == ["MAE", "HU"]
    psnr_db, mae_hu = float(row[1]), float(row[-1])
    assert psnr_db > 45 and 0 < mae_hu < 10, out  # a window would have clipped skull and air: about 29 dB
    assert png(tmp_path / "ct" / "693_J2KR_reconstruction.png").shape == (512, 512)
    assert "trained on images with sides" not in proc.stderr  # its native size: no resolution warning (warnings
    assert "medzoo: warning:" in proc.stderr  # go to stderr, one line each: this head CT is not the chest and abdomen
    # slices it was trained on, and says so)


def test_the_native_chest_autoencoder_beats_the_thumbnail_on_1024_px_radiographs_without_a_warning(
        cache, data_dir, tmp_path):
    # issue 38's front door: adult radiographs at the size they are stored, which the 1.2.0 weights warned on
    folder = data_dir / "native" / "cxr_hannover_1024"
    files = [folder / row["file"] for row in read_splits(folder) if row["split"] == "test"][:2]
    proc = run(["reconstruct", "ae-chestxray-f4c3", *map(str, files), "-o", str(tmp_path / "rec")], cache)
    out = ok(proc)
    assert "medzoo: warning:" not in proc.stderr, proc.stderr  # neither the size nor the domain warns
    spec = medzoo.PreprocessSpec.from_config(medzoo.info("ae-chestxray-f4c3")["input"]["preprocess"])
    for path in files:
        assert png(tmp_path / "rec" / f"{path.stem}_reconstruction.png").shape == (1024, 1024)
        x = spec.apply(png(path)[None])  # what the CLI measured on: the model's input
        thumbnail, size = medzoo.metrics.bicubic_thumbnail(x, 3 * 256 * 256)  # as many numbers as the latent
        assert size == (443, 443)  # 3 channels at a quarter of each side
        reported = float(next(line for line in out.splitlines() if path.name in line).split()[1])
        assert reported > float(medzoo.metrics.psnr(x, thumbnail)[0]) + 0.5, out


def test_encode_compress_decompress_round_trip(cache, tmp_path):
    files = [str(p) for p in sample_files()]
    (tmp_path / "no-data").mkdir()
    no_data = {"MEDZOO_DATA_DIR": str(tmp_path / "no-data")}  # the codec's entropy model ships in the preset
    ok(run(["encode", "vqvae-chestxray", *files, "-o", str(tmp_path / "codes.npz")], cache))
    with np.load(tmp_path / "codes.npz") as f:
        codes, listed = f["latents"], list(f["files"])
    assert codes.shape == (8, 16, 16) and np.issubdtype(codes.dtype, np.integer) and listed == files
    assert 0 <= codes.min() and codes.max() < 512 and len(np.unique(codes)) > 50

    stream = tmp_path / "xrays.mzc"
    out = ok(run(["compress", "vqvae-chestxray", *files, "-o", str(stream)], cache, env=no_data))
    header = medzoo.evaluate.read_header(stream.read_bytes())
    assert header.num_images == 8 and header.code_shape == (16, 16) and header.total_bytes == stream.stat().st_size
    assert f"{header.total_bytes} bytes" in out and f"{header.bits_per_pixel:.4f} bits per pixel" in out
    assert header.bits_per_pixel < 9 * 16 * 16 / (128 * 128)  # below the raw 9-bit codes

    out = ok(run(["decompress", str(stream), "-o", str(tmp_path / "decoded")], cache, env=no_data))
    decoded = sorted((tmp_path / "decoded").glob("*.png"))
    assert [p.name for p in decoded] == [f"xrays_{i:03d}.png" for i in range(8)] and "wrote 8 PNG(s)" in out
    model = medzoo.load("vqvae-chestxray", compile=False)
    expected = to_uint8(model.decode(codes))[..., 0]  # the stream holds exactly the codes encode wrote
    got = np.stack([png(p) for p in decoded])
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert not (cache / "codec").exists()  # no entropy model was fitted and cached

    # a 200 x 176 image: the fixed-size VQ-VAE says it resizes, and the rate is per pixel the user gave
    big = tmp_path / "big.png"
    Image.fromarray(np.asarray(Image.open(files[0]).convert("L").resize((176, 200)))).save(big)
    proc = run(["compress", "vqvae-chestxray", str(big), "-o", str(tmp_path / "big.mzc")], cache, env=no_data)
    out = ok(proc)
    size = (tmp_path / "big.mzc").stat().st_size
    assert re.search(r"medzoo: warning: .*big\.png: 200x176 resized to 128x128, the size this model takes", proc.stderr)
    assert f"{8 * size / (200 * 176):.4f} bits per pixel of the 35200 pixels given" in out
    assert f"{8 * size / (128 * 128):.4f} bits per pixel of the 16384 pixels at 128x128x1 the model coded" in out
    # an any-size VQ-VAE codes it at its own size, though its entropy model was fitted on 16 x 16 code maps
    proc = run(["compress", "vqvae-chestxray-f8k512", str(big), "-o", str(tmp_path / "any.mzc")], cache, env=no_data)
    assert "resized" not in proc.stderr and "of the 35200 pixels given" in ok(proc)
    ok(run(["decompress", str(tmp_path / "any.mzc"), "-o", str(tmp_path / "any")], cache, env=no_data))
    assert png(tmp_path / "any" / "any_000.png").shape == (200, 176)


def test_lossless_compress_decompress_gives_back_the_stored_pixels(cache, dicom_dir, tmp_path):
    """A CT DICOM (int16, negative values) and two 16-bit PNGs, without any model: the DICOM and exact 16-bit
    PNGs back."""
    from PIL import Image

    stream = tmp_path / "ct.mzc"
    out = ok(run(["compress", "--lossless", str(dicom_dir / "693_J2KR.dcm"), "-o", str(stream)], cache))
    assert "lossless (the causal coder alone)" in out
    out = ok(run(["decompress", str(stream), "-o", str(tmp_path / "ct")], cache))
    assert "wrote 1 DICOM file(s) with their original headers (every stored pixel exactly)" in out
    stored = medzoo.data.read_stored_pixels(dicom_dir / "693_J2KR.dcm")
    back = medzoo.data.read_stored_pixels(tmp_path / "ct" / "693_J2KR.dcm")  # DICOM in, DICOM out
    assert stored.dtype == np.int16 and stored.min() < 0 and back.dtype == stored.dtype
    assert np.array_equal(back, stored)
    assert stream.stat().st_size < stored.nbytes / 3  # under a third of the stored 16 bits

    rng = np.random.default_rng(0)
    pngs = []
    for i in range(2):
        pixels = (np.add.outer(np.arange(48), np.arange(40)) * 600 + rng.integers(0, 99, (48, 40))).astype(np.uint16)
        pngs.append(tmp_path / f"slice{i}.png")
        Image.fromarray(pixels).save(pngs[-1])
    ok(run(["compress", "--lossless", *map(str, pngs), "-o", str(tmp_path / "s.mzc")], cache))
    out = ok(run(["decompress", str(tmp_path / "s.mzc"), "-o", str(tmp_path / "s")], cache))
    assert "wrote 2 PNG(s) of 48x40x1, every stored pixel exactly (uint16)" in out  # 16-bit PNGs in, out
    for i, path in enumerate(pngs):
        back = medzoo.data.read_stored_pixels(tmp_path / "s" / f"s_{i:03d}.png")
        assert back.dtype == np.uint16 and np.array_equal(back, np.asarray(Image.open(path)))


def test_evaluate_report_on_a_few_test_images(cache, tmp_path):
    report = tmp_path / "report"
    out = ok(run(["evaluate", "vae-chestxray", "--report", str(report), "--max-images", "6"], cache))
    assert "reconstruction: vae-chestxray on kermany_pediatric_cxr_128:test (6 images)" in out
    metrics = json.loads((report / "metrics.json").read_text())
    result = metrics["results"]["reconstruction"]
    assert result["images"] == 6 and len(result["per_image"]["psnr"]) == 6
    assert 15 < result["metrics"]["psnr"]["mean"] < 40
    text = (report / "report.md").read_text()
    for figure in ("reconstruction.png", "reconstruction_histograms.png"):
        assert f"]({figure})" in text and png(report / figure).shape[0] > 100
    assert "| psnr |" in text and "evaluate vae-chestxray --report" in text


def test_demo_on_a_fresh_install_needs_no_data_and_no_network(cache, tmp_path):
    env = {"MEDZOO_DATA_DIR": None, "HF_HUB_OFFLINE": "1"}
    proc = run(["demo", "--output", str(tmp_path / "demo")], cache, env=env, script=True)
    out = ok(proc)
    assert not re.search(r"cuInit|cudart|oneDNN|absl", proc.stderr), proc.stderr  # TensorFlow's start-up is quiet
    report = tmp_path / "demo"
    assert f"report: {report / 'report.md'}" in out
    metrics = json.loads((report / "metrics.json").read_text())
    # a wheel loads the bundled copy; a source checkout its presets/ folder (the offline mirror): never the Hub
    assert metrics["model"] == "vae-chestxray-f8c4" and metrics["source"] in ("bundled", "mirror")
    # the model beats the bicubic thumbnail that keeps as many numbers (32 x 32 for a 128 px image)
    assert metrics["thumbnail"] == {"numbers": 1024, "size": [32, 32]}
    assert all(im["psnr"] > im["thumbnail_psnr"] + 1 for im in metrics["images"])
    assert [im["file"] for im in metrics["images"]] == [p.name for p in sample_files()]
    assert all(15 < im["psnr"] < 40 and 0.2 < im["ssim"] <= 1 for im in metrics["images"])
    assert metrics["mean"]["psnr"] == pytest.approx(np.mean([im["psnr"] for im in metrics["images"]]))
    assert 15 < metrics["mean"]["psnr"] and metrics["generation"]["samples"] == 16
    assert f"{metrics['mean']['psnr']:.4g}" in out  # the printed table
    text = (report / "report.md").read_text()
    # generated images: one row per label of the zoo's latent prior for this VAE, above the VAE's N(0, I) row
    assert metrics["prior"]["name"] == "prior-chestxray-f8c4" and metrics["prior"]["labels"] == ["normal", "pneumonia"]
    assert "`prior-chestxray-f8c4`" in text and "N(0, I)" in text
    for name, rows in (("reconstructions", 4), ("samples", 3), ("interpolation", 2)):
        assert f"]({name}.png)" in text
        assert png(report / f"{name}.png").shape == (rows * 130 + 2, 8 * 130 + 2)
    assert "CC-BY-4.0" in text and "IM-0009-0001.jpeg" in text
    # like with like: its 8 Kermany images against the Kermany test split's figure, not a mean of datasets' means
    assert "published figures on the Kermany test split (513 images): PSNR 32.28 dB" in text


def _write_cr(path, pixels: np.ndarray) -> None:
    """A 12-bit MONOCHROME2 CR Image Storage file holding ``pixels`` (uint16)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CR", "TEST"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_any_size_model_keeps_a_1955_x_1841_dicom_at_its_size(cache, dicom_dir, tmp_path):
    """The any-size zoo model reconstructs and encodes a 12-bit CR at native resolution (tiled), full-size PNG out."""
    chest, _ = medzoo.read_dicom(dicom_dir / "rsna_pneumonia_cr_chest_pa_jpegbaseline.dcm")
    big = Image.fromarray(chest.astype(np.float32)).resize((1955, 1841), Image.BILINEAR)
    pixels = np.clip(np.asarray(big) * 16, 0, 4095)  # 8 -> 12 bits
    _write_cr(tmp_path / "cr_1841x1955.dcm", pixels)
    out = ok(run(["reconstruct", "ae-chestxray-f4c3", str(tmp_path / "cr_1841x1955.dcm"), "-o",
                  str(tmp_path / "rec")], cache, timeout=1800))
    assert "reconstruction(s) at 1841x1955" in out
    rec = png(tmp_path / "rec" / "cr_1841x1955_reconstruction.png")
    assert rec.shape == (1841, 1955)
    reference = to_uint8(pixels / 4095.0).astype(float)
    assert np.corrcoef(rec.ravel().astype(float), reference.ravel())[0, 1] > 0.95
    comparison = png(tmp_path / "rec" / "cr_1841x1955_comparison.png")
    assert comparison.shape == (1841 + 4, 3 * (1955 + 2) + 2)
    error_panel = comparison[2:-2, 2 + 2 * 1957:-2]
    assert (error_panel == 255).mean() > 0.003  # scaled to the image's own errors: its largest 1% show white
    ok(run(["encode", "ae-chestxray-f4c3", str(tmp_path / "cr_1841x1955.dcm"), "-o", str(tmp_path / "z.npz")],
           cache, timeout=1800))
    with np.load(tmp_path / "z.npz") as z:
        assert z["latent_0"].shape == (461, 489, 3) and z["sizes"].tolist() == [[1841, 1955]]


# ------------------------------------------------- answers without a backend
_NO_BACKEND = """
import sys
from medzoo.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'torch', 'jax'})
print('EXIT', code, 'IMPORTED', ','.join(heavy) or '-')
"""


@pytest.mark.parametrize("args, exit_code, says", [
    (["list"], 0, "vae-chestxray-f8c4"),
    (["info", "ae-chestxray-f4c3"], 0, "ae-chestxray-f4c3"),
    (["download", "ae-chestxray-f4c3", "--offline"], 0, "sha256 verified"),
    (["info", "ae-chestxray-f4c4"], 1, "did you mean 'ae-chestxray-f4c3'"),
    (["reconstruct", "no-such-model", "README.md", "-o", "out"], 1, "unknown model 'no-such-model'"),
    (["reconstruct", "ae-chestxray-f4c3", "missing.dcm", "-o", "out"], 1, "missing.dcm: no such file"),
    (["compress", "missing.dcm", "-o", "x.mzc"], 1, "missing.dcm: no such file"),
    (["decompress", "missing.mzc", "-o", "out"], 1, "missing.mzc: no such file"),
    (["decompress", "STREAM_OF_A_PRESET_FOLDER", "-o", "out"], 1, "made with codec-elsewhere 1.0.0, which the zoo "
                                                                "does not hold"),
    (["decompress", "STREAM_OF_AN_OLD_VERSION", "-o", "out"], 1, "made with ae-chestxray-f4c3 0.9.0, and the zoo "
                                                               "now holds version"),
    (["compress", "A_DICOM", "-o", "TMP/mr.mzc"], 0, "lossless (the causal coder alone)"),  # lossless: no model
    (["decompress", "A_LOSSLESS_STREAM", "-o", "TMP/mr.dcm"], 0, "every stored pixel exactly"),
])
def test_what_needs_no_model_never_imports_a_backend(args, exit_code, says, cache, tmp_path):
    """list, info, download, lossless compress and decompress, and the errors found before a model is built
    answer without TensorFlow, Keras, PyTorch or JAX (a second instead of tens of seconds on a busy machine)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MEDZOO_CACHE": str(cache)}
    made_by = {"STREAM_OF_A_PRESET_FOLDER": ("codec-elsewhere", "1.0.0"),  # a model outside the zoo
               "STREAM_OF_AN_OLD_VERSION": ("ae-chestxray-f4c3", "0.9.0")}  # a version the zoo no longer holds
    for i, arg in enumerate(args):
        if arg in made_by:  # a real stream's header, naming that model
            from medzoo.codec.stream import pack_hyperprior

            stream = tmp_path / f"{arg}.mzc"
            stream.write_bytes(pack_hyperprior(b"\0" * 16, model_name=made_by[arg][0], model_version=made_by[arg][1],
                                               weights_id="0" * 16, tables_id="0" * 64, quality=0,
                                               image_shape=(8, 8, 1), num_images=1))
            args = [*args[:i], str(stream), *args[i + 1:]]
    source = pydicom_data.get_testdata_file("MR_small.dcm")  # 64x64, 16-bit MR
    if "A_LOSSLESS_STREAM" in args:
        from medzoo.evaluate import compress_files

        compress_files([source], tmp_path / "given.mzc", model=None, lossless=True)
    places = {"A_DICOM": source, "A_LOSSLESS_STREAM": str(tmp_path / "given.mzc")}
    args = [places.get(a, a.replace("TMP/", f"{tmp_path}/")) for a in args]
    proc = subprocess.run([sys.executable, "-c", _NO_BACKEND, *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=pathlib.Path(__file__).parent.parent)
    assert f"EXIT {exit_code} IMPORTED -" in proc.stdout, proc.stdout + proc.stderr
    assert says in proc.stdout + proc.stderr
    if exit_code:
        assert proc.stderr.strip().startswith("medzoo: error:") and "Traceback" not in proc.stderr


def test_decompress_writes_pngs_where_they_are_exact_one_file_for_one_image_and_nothing_it_cannot_hold(
        tmp_path, capsys):
    """Lossless streams without a model, in-process: 16-bit grey comes back as 16-bit PNGs (or .npy when
    asked), a .png/.npy path takes a stream of one image, and signed pixels, a path for several images or a
    .dcm path for a stream that is not DICOM are refused before anything is written."""
    rng = np.random.default_rng(1)
    grey = [rng.integers(0, 65535, (20, 18)).astype(np.uint16) for _ in range(3)]
    for i, image in enumerate(grey):
        Image.fromarray(image).save(tmp_path / f"g{i}.png")
    assert main(["compress", "--lossless", *(str(tmp_path / f"g{i}.png") for i in range(3)),
                 "-o", str(tmp_path / "g.mzc")]) == 0
    assert main(["decompress", str(tmp_path / "g.mzc"), "-o", str(tmp_path / "out")]) == 0
    assert "wrote 3 PNG(s) of 20x18x1, every stored pixel exactly (uint16)" in capsys.readouterr().out
    for i, image in enumerate(grey):
        assert np.array_equal(medzoo.data.read_stored_pixels(tmp_path / "out" / f"g_{i:03d}.png"), image)
    assert main(["decompress", str(tmp_path / "g.mzc"), "-o", str(tmp_path / "arrays"), "--format", "npy"]) == 0
    assert [np.array_equal(np.load(tmp_path / "arrays" / f"g_{i:03d}.npy"), image) for i, image in enumerate(grey)] \
        == [True] * 3

    signed = (rng.integers(-1024, 3071, (24, 22))).astype(np.int16)
    np.save(tmp_path / "ct.npy", signed)
    assert main(["compress", "--lossless", str(tmp_path / "ct.npy"), "-o", str(tmp_path / "ct.mzc")]) == 0
    assert main(["decompress", str(tmp_path / "ct.mzc"), "-o", str(tmp_path / "one.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "one.npy"), signed)
    assert main(["decompress", str(tmp_path / "ct.mzc"), "-o", str(tmp_path / "ct")]) == 0  # auto: .npy
    assert np.array_equal(np.load(tmp_path / "ct" / "ct_000.npy"), signed)
    capsys.readouterr()
    refused = [
        (["ct.mzc", "-o", "ct.png"], "a PNG cannot hold int16 pixels of 1 channel\\(s\\) exactly; give a .npy path"),
        (["ct.mzc", "-o", "ct-png", "--format", "png"], "a PNG cannot hold int16"),
        (["g.mzc", "-o", "g.png"], "the stream holds 3 images; give a folder"),
        (["ct.mzc", "-o", "ct.dcm"], "not DICOM files .* give a folder, a .png or a .npy path"),
        (["ct.mzc", "-o", "x.npy", "--format", "png"], "a .npy path, but the format asked for is png"),
    ]
    for args, says in refused:
        assert main(["decompress", str(tmp_path / args[0]), "-o", str(tmp_path / args[2]), *args[3:]]) == 1
        assert re.search(says, capsys.readouterr().err), args
        assert not (tmp_path / args[2]).exists()
    assert not list(tmp_path.rglob(".*partial"))

    # no model named is lossless: the same exact int16 stream, and floats are refused with the way to lossy coding
    assert main(["compress", str(tmp_path / "ct.npy"), "-o", str(tmp_path / "ct2.mzc")]) == 0
    assert (tmp_path / "ct2.mzc").read_bytes() == (tmp_path / "ct.mzc").read_bytes()
    np.save(tmp_path / "floats.npy", rng.random((16, 16)).astype(np.float32))
    capsys.readouterr()
    assert main(["compress", str(tmp_path / "floats.npy"), "-o", str(tmp_path / "f.mzc")]) == 1
    assert re.search("got float32 .* no model was named, .* name one, e.g. medzoo compress ae-chestxray-f4c3",
                     capsys.readouterr().err)
    assert main(["compress", str(tmp_path / "ct.npy"), "-o", str(tmp_path / "f.mzc"), "--quality", "2"]) == 1
    assert re.search("--quality is a model's setting, and no model was named", capsys.readouterr().err)
    assert not (tmp_path / "f.mzc").exists()


def test_warnings_on_the_command_line_are_one_line_each_and_once(capsys):
    """A warning raised while a command runs prints as ``medzoo: warning: ...``, once however often it is raised."""
    import warnings

    from medzoo import cli

    def noisy(args):
        for _ in range(3):
            warnings.warn("this model was trained\n on other images", medzoo.DomainShiftWarning)
        warnings.warn("something else", UserWarning)

    parser = cli.build_parser
    try:
        cli.build_parser = lambda: _parser_running(noisy)
        assert main(["list"]) == 0
    finally:
        cli.build_parser = parser
    err = capsys.readouterr().err.splitlines()
    assert err == ["medzoo: warning: this model was trained on other images", "medzoo: warning: something else"]


def _parser_running(func):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(func=func)
    return parser
