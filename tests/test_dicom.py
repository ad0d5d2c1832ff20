"""read_dicom on real DICOM files: modality LUT, VOI, MONOCHROME1, colour, frames, codecs and bad input."""

import pathlib
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import apply_color_lut, apply_windowing, convert_color_space, get_decoder, pixel_array
from pydicom.uid import JPEG2000Lossless

from medzoo.data import is_dicom, read_dicom, read_dicom_header
from medzoo.errors import ConfigError, DataError, DependencyError

CHEST = "rsna_pneumonia_cr_chest_pa_jpegbaseline.dcm"


def _raw(path):
    """Stored values as pydicom decodes them, before any LUT."""
    return pixel_array(str(path)).astype(np.float64)


@pytest.fixture(scope="session")
def rg3(dicom_dir):
    """RG3_J2KR (1760x1760 MONOCHROME1, Window 550/1024): read once, with pydicom's reference pipeline."""
    path = dicom_dir / "RG3_J2KR.dcm"
    ds = pydicom.dcmread(path)
    reference = apply_windowing(pixel_array(ds).astype(np.float64), ds)  # un-inverted VOI output
    return read_dicom(path), reference


@pytest.fixture(scope="session")
def mr2(dicom_dir):
    """MR2_J2KR (1024x1024, RescaleSlope 3.774114): read once without VOI, plus the stored values."""
    path = dicom_dir / "MR2_J2KR.dcm"
    return read_dicom(path, voi="none"), _raw(path)


@pytest.fixture(scope="session")
def chest(dicom_dir):
    """The JPEG-baseline chest CR (MONOCHROME2, no window), read once."""
    return read_dicom(dicom_dir / CHEST)


@pytest.fixture(scope="session")
def ct693_raw(dicom_dir):
    return _raw(dicom_dir / "693_J2KR.dcm")


def _copy_with(src, dst, **elements):
    ds = pydicom.dcmread(src)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.save_as(dst)
    return dst


def test_is_dicom_sniffs_the_preamble_not_the_extension(tmp_path):
    no_extension = tmp_path / "IM0001"
    shutil.copy(get_testdata_file("CT_small.dcm"), no_extension)
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"\0" * 128 + b"NOPE" + b"\0" * 100)
    assert is_dicom(no_extension)
    assert not is_dicom(fake)
    assert not is_dicom(get_testdata_file("no_meta.dcm"))  # a dataset without preamble / file meta
    assert not is_dicom(tmp_path / "missing.dcm")
    assert not is_dicom(tmp_path)


def test_ct_small_modality_lut_gives_hounsfield_units():
    path = get_testdata_file("CT_small.dcm")
    pixels, meta = read_dicom(path)
    assert pixels.dtype == np.float32 and pixels.shape == (128, 128)
    np.testing.assert_array_equal(pixels, _raw(path) - 1024.0)
    assert meta["rescale_intercept"] == -1024.0 and meta["rescale_slope"] == 1.0
    assert meta["modality"] == "CT" and meta["voi"] == "none" and meta["window"] is None
    assert pixels.min() < -800  # air/lung around the body is strongly negative in HU


def test_ct_693_intercept_and_metadata(dicom_dir, ct693_raw):
    pixels, meta = read_dicom(dicom_dir / "693_J2KR.dcm", voi="none")
    np.testing.assert_array_equal(pixels, ct693_raw - 1024.0)
    assert (pixels < -900).mean() > 0.2  # lots of air around a head
    assert meta["pixel_spacing"] == pytest.approx((0.478516, 0.478516))
    assert meta["transfer_syntax_uid"] == JPEG2000Lossless
    assert (meta["rows"], meta["columns"], meta["number_of_frames"], meta["channels"]) == (512, 512, 1, 1)


def test_mr2_rescale_slope_is_applied(mr2):
    (pixels, meta), raw = mr2
    assert meta["rescale_slope"] == pytest.approx(3.774114)
    np.testing.assert_allclose(pixels, raw * 3.774114 + 0.000061, rtol=1e-6)
    assert pixels.max() > 2000 > raw.max()  # the slope really scaled the stored values
    assert meta["voi"] == "none" and meta["window"] is None


def test_auto_voi_applies_the_file_window(dicom_dir, ct693_raw):
    pixels, meta = read_dicom(dicom_dir / "693_J2KR.dcm")
    assert meta["voi"] == "window" and meta["window"] == (40.0, 100.0)
    low, high = meta["value_range"]
    hu = ct693_raw - 1024.0
    assert np.all(pixels[hu <= -10.5] == low) and np.all(pixels[hu > 89.5] == high)


def test_explicit_window_maps_linearly_and_clips(dicom_dir, ct693_raw):
    center, width = 40.0, 80.0
    pixels, meta = read_dicom(dicom_dir / "693_J2KR.dcm", voi=(center, width))
    low, high = meta["value_range"]
    assert (low, high) == (-32768.0 - 1024.0, 32767.0 - 1024.0)  # 16-bit signed through the rescale
    assert meta["window"] == (center, width) and meta["voi"] == "window"
    hu = ct693_raw - 1024.0
    below, above = hu <= center - 0.5 - (width - 1) / 2, hu > center - 0.5 + (width - 1) / 2
    inside = ~below & ~above
    assert np.all(pixels[below] == low) and np.all(pixels[above] == high)
    assert below.any() and above.any() and inside.any()
    # DICOM PS3.3 C.11.2.1.2.1 LINEAR window, computed independently here
    expected = ((hu[inside] - (center - 0.5)) / (width - 1) + 0.5) * (high - low) + low
    np.testing.assert_allclose(pixels[inside], expected, rtol=1e-6)


def test_rg3_monochrome1_is_inverted_after_the_window(rg3):
    (pixels, meta), reference = rg3
    assert meta["photometric_interpretation"] == "MONOCHROME1"
    assert meta["window"] == (550.0, 1024.0) and meta["value_range"] == (0.0, 1023.0)
    np.testing.assert_allclose(pixels, 1023.0 - reference, atol=1e-3)
    corr = np.corrcoef(pixels[::8, ::8].ravel(), reference[::8, ::8].ravel())[0, 1]
    assert corr < -0.9999


def test_monochrome1_copy_of_the_chest_is_the_inverted_image(chest, dicom_dir, tmp_path):
    (original, meta), mono1_path = chest, tmp_path / "chest_mono1.dcm"
    _copy_with(dicom_dir / CHEST, mono1_path, PhotometricInterpretation="MONOCHROME1")
    inverted, mono1_meta = read_dicom(mono1_path)
    assert meta["photometric_interpretation"] == "MONOCHROME2" and meta["value_range"] == (0.0, 255.0)
    assert mono1_meta["photometric_interpretation"] == "MONOCHROME1"
    assert original.std() > 20  # a real image, not a constant
    np.testing.assert_array_equal(inverted, 255.0 - original)
    # With a window, the MONOCHROME1 output is still the mirror image within the output range.
    windowed, _ = read_dicom(dicom_dir / CHEST, voi=(100, 120))
    windowed_inverted, _ = read_dicom(mono1_path, voi=(100, 120))
    np.testing.assert_allclose(windowed + windowed_inverted, 255.0, atol=1e-3)
    assert windowed.min() == 0.0 and windowed.max() == 255.0


def test_compressed_transfer_syntaxes_decode_to_the_same_pixels():
    reference, _ = read_dicom(get_testdata_file("MR_small.dcm"), voi="none")
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        pixels, meta = read_dicom(get_testdata_file(name), voi="none")
        np.testing.assert_array_equal(pixels, reference, err_msg=name)
    assert meta["transfer_syntax_uid"] == JPEG2000Lossless


def test_multiframe_ybr_colour_is_rgb_and_frames_can_be_picked():
    path = get_testdata_file("examples_ybr_color.dcm")
    frames, meta = read_dicom(path)
    assert frames.shape == (30, 240, 320, 3) and frames.dtype == np.float32
    assert meta["number_of_frames"] == 30 and meta["channels"] == 3
    assert meta["photometric_interpretation"] == "YBR_FULL_422"
    one, one_meta = read_dicom(path, frame=7)
    assert one.shape == (240, 320, 3) and one_meta["frame"] == 7
    np.testing.assert_array_equal(one, frames[7])
    rgb = convert_color_space(pixel_array(path, index=7, raw=True), "YBR_FULL", "RGB")
    np.testing.assert_array_equal(one, rgb)


def test_rgb_and_palette_colour():
    rgb_path = get_testdata_file("examples_rgb_color.dcm")
    pixels, meta = read_dicom(rgb_path)
    np.testing.assert_array_equal(pixels, pixel_array(rgb_path))
    assert meta["voi"] == "none" and meta["value_range"] == (0.0, 255.0)
    palette_path = get_testdata_file("examples_palette.dcm")
    pixels, meta = read_dicom(palette_path)
    assert pixels.shape == (350, 800, 3) and meta["photometric_interpretation"] == "PALETTE COLOR"
    ds = pydicom.dcmread(palette_path)
    np.testing.assert_array_equal(pixels, apply_color_lut(ds.pixel_array, ds))


def test_window_on_a_colour_image_is_refused():
    path = get_testdata_file("examples_rgb_color.dcm")
    with pytest.raises(DataError, match="monochrome") as err:
        read_dicom(path, voi=(100, 50))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("frame", [1, -1])
def test_frame_out_of_range(frame):
    path = get_testdata_file("CT_small.dcm")
    with pytest.raises(DataError, match="out of range") as err:
        read_dicom(path, frame=frame)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("voi", ["window", (40, 0), (float("nan"), 10), ("a", 10), (1, 2, 3)])
def test_bad_voi_argument(voi):
    with pytest.raises(ConfigError, match="voi"):
        read_dicom(get_testdata_file("CT_small.dcm"), voi=voi)


def _write(path, data):
    path.write_bytes(data)
    return path


def _cut(tmp_path, size):
    """CT_small cut after ``size`` bytes (20000: inside the pixel data, 1000: inside the header)."""
    with open(get_testdata_file("CT_small.dcm"), "rb") as f:
        return _write(tmp_path / f"cut_{size}.dcm", f.read(size))


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda tmp: tmp / "missing.dcm", "no such file"),
        (lambda tmp: _write(tmp / "notes.txt", b"hello"), "not a DICOM file"),
        (lambda tmp: _write(tmp / "empty.dcm", b""), "not a DICOM file"),
        (lambda tmp: get_testdata_file("no_meta.dcm"), "not a DICOM file"),
        (lambda tmp: get_testdata_file("MR_truncated.dcm"), "truncated"),
        (lambda tmp: _cut(tmp, 20000), "truncated"),
        (lambda tmp: _cut(tmp, 1000), "no \\(7FE0,0010\\) Pixel Data"),
        (lambda tmp: get_testdata_file("rtplan.dcm"), "no \\(7FE0,0010\\) Pixel Data"),
        (
            lambda tmp: _copy_with(get_testdata_file("CT_small.dcm"), tmp / "hsv.dcm", PhotometricInterpretation="HSV"),
            "unsupported photometric interpretation 'HSV'",
        ),
    ],
    ids=["missing", "text", "empty", "no-preamble", "truncated-pixels", "cut-pixels", "cut-header", "no-pixels", "hsv"],
)
def test_bad_files_raise_data_error_naming_the_file(tmp_path, make, reason):
    path = make(tmp_path)
    for read in (read_dicom, read_dicom_header):
        with pytest.raises(DataError, match=reason) as err:
            read(path)
        assert str(path) in str(err.value)


def test_corrupt_compressed_pixel_data_is_a_data_error(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([codestream[:64]])  # a well-formed file whose J2K codestream is cut short
    path = tmp_path / "corrupt.dcm"
    ds.save_as(path)
    read_dicom_header(path)  # the header is fine
    with pytest.raises(DataError, match="cannot decode the pixel data") as err:
        read_dicom(path)
    assert str(path) in str(err.value)


def test_missing_decoder_plugin_raises_dependency_error_naming_the_packages(dicom_dir, monkeypatch):
    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("numpy", "pylibjpeg", "pylibjpeg-openjpeg")})
    path = dicom_dir / "693_J2KR.dcm"
    for read in (read_dicom, read_dicom_header):
        with pytest.raises(DependencyError) as err:
            read(path)
        message = str(err.value)
        assert isinstance(err.value, ImportError)
        assert 'pip install "medzoo[dicom]"' in message and "pylibjpeg-openjpeg" in message
        assert str(path) in message and "JPEG 2000" in message


def test_header_matches_the_full_read(chest, dicom_dir):
    header = read_dicom_header(dicom_dir / CHEST)
    _, meta = chest
    assert header == {key: meta[key] for key in header}
    assert header["sop_instance_uid"] == "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819"
    assert header["pixel_spacing"] == (0.168, 0.168) and header["modality"] == "CR"


@pytest.mark.parametrize("seed", range(8))
def test_randomly_corrupted_real_files_raise_only_data_error(dicom_dir, tmp_path, seed):
    """Truncate or flip bytes of real files at random (seeded): a read succeeds or raises DataError, nothing else."""
    rng = np.random.default_rng(seed)
    sources = [*sorted(dicom_dir.glob("*.dcm")), get_testdata_file("CT_small.dcm"),
               get_testdata_file("MR_small_RLE.dcm")]
    outcomes = {"read": 0, "DataError": 0}
    for i in range(12):
        data = bytearray(pathlib.Path(sources[rng.integers(len(sources))]).read_bytes())
        if rng.random() < 0.5:
            data = data[: int(rng.integers(1, len(data)))]
        else:  # flip bytes, mostly inside the header where the structure lives
            header_end = min(len(data), 4096)
            for pos in rng.integers(0, header_end, size=int(rng.integers(1, 8))):
                data[pos] ^= int(rng.integers(1, 256))
        path = tmp_path / f"mutant-{i}.dcm"
        path.write_bytes(bytes(data))
        try:
            pixels, _ = read_dicom(path)
        except DataError as err:
            assert str(path) in str(err)
            outcomes["DataError"] += 1
        else:
            assert pixels.dtype == np.float32 and pixels.size > 0
            outcomes["read"] += 1
    assert outcomes["DataError"] > 0, outcomes  # the mutations did break files


def test_a_spec_in_hounsfield_units_reads_dicom_without_the_display_window(dicom_dir):
    from medzoo.data import PreprocessSpec, read_images
    from medzoo.data.images import spec_voi
    from medzoo.recipes.recipe import CT_SPEC

    path = dicom_dir / "693_J2KR.dcm"
    ct, grey = PreprocessSpec.from_config(CT_SPEC), PreprocessSpec(size=None, channels=1, normalize="minmax")
    assert spec_voi(ct) == "none" and spec_voi(grey) == "auto"
    images, _ = read_images([path], ct)  # what the CLI and evaluate read for a CT model
    np.testing.assert_array_equal(images[0], ct.apply(read_dicom(path, voi="none")[0]))
    windowed = ct.apply(read_dicom(path, voi="auto")[0])  # the file's brain window: skull and fat clipped
    assert np.abs(images[0] - windowed).mean() > 0.01
    assert images[0].max() > 0.5  # bone above +1000 HU survives, as the model was trained on it
    chest, _ = read_images([path], grey)  # a display-space model still gets the window the file asks for
    np.testing.assert_array_equal(chest[0], grey.apply(read_dicom(path, voi="auto")[0]))
