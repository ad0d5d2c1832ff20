"""DICOM in, DICOM out (medzoo.codec.dicom_io): the header kept, every pixel back, series folders, bad input."""

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

import medzoo
from medzoo.cli import main
from medzoo.codec import dicom_io
from medzoo.codec.bitio import BitstreamError
from medzoo.errors import DataError
from medzoo.evaluate import compress_files, decompress_file

#: retired group-length elements (gggg,0000): pydicom recomputes or drops them on writing
_GROUP_LENGTH = 0x0000


def _write(path, pixels, *, bits=12, signed=False, frames=None, photometric="MONOCHROME2", pixel_data=True,
           planar=0):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality, ds.PatientID, ds.SeriesDescription = "MR", "anon-7", "a test series"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.ImageType = generate_uid(), generate_uid(), ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = pixels.shape[-2:] if photometric != "RGB" else pixels.shape[-3:-1]
    ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.PlanarConfiguration = planar
        pixels = np.moveaxis(pixels, -1, -3) if planar else pixels  # by plane: all red, then green, then blue
    if frames:
        ds.NumberOfFrames = frames
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    if pixel_data:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _same_header(a, b):
    """Every element of ``a`` but Pixel Data and group lengths is in ``b`` with the same value."""
    differ = [str(e.tag) for e in a if e.keyword != "PixelData" and e.tag.element != _GROUP_LENGTH
              and (e.tag not in b or b[e.tag].value != e.value)]
    assert not differ, f"header elements changed: {differ}"


@pytest.mark.parametrize("flags", [["--lossless"], []])  # as a PACS user types it: no model named is lossless
def test_a_ct_dicom_round_trips_through_the_cli_with_its_header_and_every_pixel(dicom_dir, tmp_path, capsys, flags):
    source = dicom_dir / "693_J2KR.dcm"  # CT, int16 with negative values, JPEG 2000 lossless on disk
    assert main(["compress", *flags, str(source), "-o", str(tmp_path / "ct.mzc")]) == 0
    said = capsys.readouterr().out
    assert "lossless (the causal coder alone)" in said and ("no model named, so lossless" in said) == (not flags)
    assert main(["decompress", str(tmp_path / "ct.mzc"), "-o", str(tmp_path / "ct.dcm")]) == 0
    assert "wrote 1 DICOM file(s) with their original headers (every stored pixel exactly)" in capsys.readouterr().out
    original, back = pydicom.dcmread(source), pydicom.dcmread(tmp_path / "ct.dcm")
    assert back.pixel_array.dtype == np.int16 and np.array_equal(back.pixel_array, original.pixel_array)
    _same_header(original, back)  # the SOP Instance UID included: lossless pixels are the same image
    assert "LossyImageCompression" not in back or back.LossyImageCompression == original.LossyImageCompression
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    header = medzoo.evaluate.read_header((tmp_path / "ct.mzc").read_bytes())  # bits count the carried header
    assert header.total_bytes == (tmp_path / "ct.mzc").stat().st_size and header.kind == "lossless"


def _read_independently(path):
    """Pixels (rescaled, as a viewer shows them) and the header of ``path`` as SimpleITK reads them through GDCM."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    image = reader.Execute()
    return sitk.GetArrayFromImage(image)[0], {key: reader.GetMetaData(key).strip() for key in reader.GetMetaDataKeys()}


def test_an_independent_reader_opens_both_outputs_and_sees_the_lossy_one_as_a_derived_image(dicom_dir, tmp_path):
    """SimpleITK (ITK over GDCM, not the pydicom that wrote them) reads the lossless output of a WG04 CT with
    the original's values and UIDs, and the lossy one as a new derived instance of the same study, its pixels
    those pydicom decodes."""
    source = dicom_dir / "693_J2KR.dcm"  # CT, JPEG 2000 lossless on disk, rescaled to Hounsfield units
    compress_files([source], tmp_path / "exact.mzc", model=None, lossless=True)
    compress_files([source], tmp_path / "lossy.mzc", model="ae-ct-f4c3", lossless=False, quality=4)
    decompress_file(tmp_path / "exact.mzc", tmp_path / "exact.dcm")
    decompress_file(tmp_path / "lossy.mzc", tmp_path / "lossy.dcm")
    original, original_header = _read_independently(source)
    exact, exact_header = _read_independently(tmp_path / "exact.dcm")
    lossy, lossy_header = _read_independently(tmp_path / "lossy.dcm")
    assert np.array_equal(exact, original)
    for key in ("0008|0008", "0008|0018", "0020|000e", "0020|000d", "0028|1052", "0028|1053"):  # type, UIDs, rescale
        assert exact_header[key] == original_header[key], key
    assert lossy.shape == original.shape and not np.array_equal(lossy, original)
    span = float(original.max() - original.min())
    psnr = 10 * np.log10(span**2 / np.mean((lossy.astype(float) - original) ** 2))
    assert psnr > 25, psnr  # the same slice (28.7 dB at quality 4: WG04's CT is unlike the model's training slices)
    written = pydicom.dcmread(tmp_path / "lossy.dcm")
    shown = written.pixel_array * float(written.get("RescaleSlope", 1)) + float(written.get("RescaleIntercept", 0))
    assert np.array_equal(lossy, shown.astype(lossy.dtype))  # GDCM and pydicom decode the same values
    assert lossy_header["0008|0008"].startswith("DERIVED\\") and lossy_header["0028|2110"] == "01"
    assert "ae-ct-f4c3" in lossy_header["0008|2111"]  # Derivation Description names the codec
    assert lossy_header["0008|0018"] != original_header["0008|0018"]  # a new SOP instance ...
    assert lossy_header["0020|000e"] != original_header["0020|000e"]  # ... in a new series ...
    assert lossy_header["0020|000d"] == original_header["0020|000d"]  # ... of the same study


@pytest.mark.parametrize("bits, signed", [(8, False), (12, False), (15, False), (16, False), (16, True)])
def test_a_series_folder_goes_in_and_comes_out_as_a_folder_exactly(tmp_path, bits, signed):
    rng = np.random.default_rng(bits)
    low, high = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    dtype = {(8, False): np.uint8}.get((bits, signed), np.int16 if signed else np.uint16)
    series = tmp_path / "series"
    smooth = np.add.outer(np.arange(40), np.arange(36)) * ((high - low) // 200)
    slices = [np.clip(low + smooth + rng.integers(0, 50, (40, 36)) + 7 * i, low, high - 1).astype(dtype)
              for i in range(3)]
    slices[1][0, 0], slices[2][5, 5] = low, high - 1  # the ends of the declared range
    files = [_write(series / sub / f"im{i}.dcm", s, bits=bits, signed=signed)
             for i, (sub, s) in enumerate(zip(["a", "a", "b"], slices))]
    written = compress_files([series], tmp_path / "s.mzc", model=None, lossless=True)
    assert written.header.num_images == 3
    _, _, paths = decompress_file(tmp_path / "s.mzc", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in paths) == ["a/im0.dcm", "a/im1.dcm", "b/im2.dcm"]
    for source, expected in zip(files, slices):
        back = pydicom.dcmread(tmp_path / "out" / source.relative_to(series))
        assert back.pixel_array.dtype == expected.dtype and np.array_equal(back.pixel_array, expected)
        _same_header(pydicom.dcmread(source), back)


@pytest.mark.parametrize("problem, match", [
    ("no pixels", "Pixel Data"),
    ("palette", "PALETTE COLOR: the DICOM path of the codec takes grey or RGB images"),
    ("bit depth", "pixel values 0..4095 lie outside the declared 10-bit unsigned range 0..1023"),
    ("sizes", "these DICOMs differ"),
])
def test_dicoms_the_codec_does_not_handle_are_refused_naming_the_file_and_nothing_is_written(tmp_path, problem,
                                                                                             match):
    image = (np.arange(32 * 30, dtype=np.uint16).reshape(32, 30) * 5) % 4096  # 12-bit values, up to 4095
    makers = {
        "no pixels": lambda: [_write(tmp_path / "in" / "x.dcm", image, pixel_data=False)],
        "palette": lambda: [_write(tmp_path / "in" / "x.dcm", (image % 256).astype(np.uint8), bits=8,
                                   photometric="PALETTE COLOR")],
        "bit depth": lambda: [_write(tmp_path / "in" / "x.dcm", image, bits=10)],
        "sizes": lambda: [_write(tmp_path / "in" / "x.dcm", image), _write(tmp_path / "in" / "y.dcm", image[:16])],
    }
    files = makers[problem]()
    with pytest.raises(DataError, match=match) as caught:
        dicom_io.read_for_coding(files)
    assert problem == "sizes" or "x.dcm" in str(caught.value)
    if problem == "palette":  # lossless still codes it, as stored pixel arrays, and says so
        with pytest.warns(UserWarning, match="coded as stored pixel arrays.*not as DICOM files"):
            compress_files(files, tmp_path / "x.mzc", model=None, lossless=True)
        _, pixels, paths = decompress_file(tmp_path / "x.mzc", tmp_path / "back")
        assert [p.suffix for p in paths] == [".png"] * len(paths)  # 8-bit indices: PNG holds them
        back = np.stack([medzoo.data.read_stored_pixels(p) for p in paths])
        assert back.dtype == pixels.dtype and np.array_equal(back.reshape(-1),
                                                             pydicom.dcmread(files[0]).pixel_array.reshape(-1))
    else:
        with pytest.raises(DataError, match=match):
            compress_files(files, tmp_path / "x.mzc", model=None, lossless=True)
        assert not (tmp_path / "x.mzc").exists()
    assert not list(tmp_path.glob(".*partial"))


def test_multi_frame_dicoms_keep_their_frames_together_beside_single_frame_ones(tmp_path, capsys):
    """A cine loop or an enhanced CT/MR holds several frames in one file: they go in as consecutive images of
    the stream and come out as one file with its header and every frame, beside single-frame files of the same
    size in the same series (container version 2: a reader of version 1 says to upgrade)."""
    rng = np.random.default_rng(9)
    i, j = np.mgrid[:36, :44]
    cine = np.stack([(i * 40 + j * 30 + 200 * f + rng.integers(0, 60, i.shape)) % 4096 for f in range(5)])
    files = [_write(tmp_path / "in" / "cine.dcm", cine.astype(np.uint16), frames=5),
             _write(tmp_path / "in" / "still.dcm", cine[2].astype(np.uint16)),
             _write(tmp_path / "in" / "pair.dcm", cine[:2].astype(np.uint16), frames=2)]
    assert main(["compress", "--lossless", str(tmp_path / "in"), "-o", str(tmp_path / "s.mzc")]) == 0
    data = (tmp_path / "s.mzc").read_bytes()
    assert data[len(dicom_io.MAGIC)] == 2 and medzoo.evaluate.read_header(data).num_images == 8
    assert main(["decompress", str(tmp_path / "s.mzc"), "-o", str(tmp_path / "out")]) == 0
    assert "wrote 3 DICOM file(s)" in capsys.readouterr().out
    for source in files:
        original, back = pydicom.dcmread(source), pydicom.dcmread(tmp_path / "out" / source.name)
        assert back.PixelData == original.PixelData and np.array_equal(back.pixel_array, original.pixel_array)
        _same_header(original, back)
    # one single-frame file keeps the first container version, byte for byte what earlier medzoo wrote
    single = compress_files([files[1]], tmp_path / "one.mzc", model=None, lossless=True)
    assert single.header.num_images == 1 and (tmp_path / "one.mzc").read_bytes()[len(dicom_io.MAGIC)] == 1
    # a header whose frames disagree with the stream is a BitstreamError, and nothing is written
    names, headers, stream = dicom_io.unpack(data)
    lying = pydicom.dcmread(io.BytesIO(headers[0]))
    lying.NumberOfFrames = 4
    buffer = io.BytesIO()
    lying.save_as(buffer, enforce_file_format=True)
    (tmp_path / "bad.mzc").write_bytes(dicom_io.pack(names, [buffer.getvalue(), *headers[1:]], stream))
    with pytest.raises(BitstreamError, match="hold 7 frame\\(s\\) but its stream holds 8 image\\(s\\)"):
        decompress_file(tmp_path / "bad.mzc", tmp_path / "bad")
    assert not list(tmp_path.glob("bad/**/*.dcm"))


def test_a_two_frame_rgb_file_from_pydicom_round_trips_and_a_multi_frame_file_codes_lossily(tmp_path):
    """pydicom's RLE-compressed 2-frame RGB secondary capture comes back as two frames, every pixel; a
    multi-frame grey file coded by a zoo autoencoder comes back as a multi-frame DICOM marked lossy."""
    from pydicom.data import get_testdata_file

    source = get_testdata_file("SC_rgb_rle_2frame.dcm")
    compress_files([source], tmp_path / "rgb.mzc", model=None, lossless=True)
    _, _, paths = decompress_file(tmp_path / "rgb.mzc", tmp_path / "rgb.dcm")
    original, back = pydicom.dcmread(source), pydicom.dcmread(paths[0])
    assert back.NumberOfFrames == 2 and np.array_equal(back.pixel_array, original.pixel_array)
    i, j = np.mgrid[:64, :64]
    frames = np.stack([((i - 32) ** 2 + (j - 30 + 4 * f) ** 2) * 2 % 4096 for f in range(3)]).astype(np.uint16)
    grey = _write(tmp_path / "grey.dcm", frames, frames=3)
    compress_files([grey], tmp_path / "lossy.mzc", model="ae-chestxray-f4c3", lossless=False, quality=3)
    _, _, paths = decompress_file(tmp_path / "lossy.mzc", tmp_path / "lossy.dcm")
    back, original = pydicom.dcmread(paths[0]), pydicom.dcmread(grey)
    assert back.NumberOfFrames == 3 and back.pixel_array.shape == (3, 64, 64) and back.LossyImageCompression == "01"
    assert back.SOPInstanceUID != original.SOPInstanceUID and back.SeriesInstanceUID != original.SeriesInstanceUID
    assert back.StudyInstanceUID == original.StudyInstanceUID
    # a derived object that says what it is and where it came from
    assert back.ImageType[0] == "DERIVED" and "ae-chestxray-f4c3" in back.DerivationDescription
    assert "Lossy compression" in back.DerivationDescription
    assert back.DerivationCodeSequence[0].CodeValue == "113040"
    source = back.SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert source.ReferencedSOPClassUID == original.SOPClassUID
    assert source.PurposeOfReferenceCodeSequence[0].CodeValue == "121320"


@pytest.mark.parametrize("planar", [0, 1])
def test_a_colour_ultrasound_dicom_round_trips_as_a_dicom_with_every_pixel(tmp_path, capsys, planar):
    """RGB DICOMs (an ultrasound's colour Doppler, stored pixel by pixel or plane by plane) keep their header
    and every stored value through the CLI, coded as luma and chroma; lossy coding says the zoo's codecs are
    grey instead of writing anything."""
    i, j = np.mgrid[:40, :48]
    grey = (i * 3 + j * 2 + (i * j) % 7).astype(np.uint8)
    rgb = np.stack([grey, grey, grey], axis=-1)
    rgb[10:20, 12:30] = np.stack([200 + i[10:20, 12:30] % 50, 40 + j[10:20, 12:30], np.zeros((10, 18))], -1)
    source = _write(tmp_path / "us.dcm", rgb.astype(np.uint8), bits=8, photometric="RGB", planar=planar)
    assert dicom_io.unsupported(source) is None
    assert main(["compress", "--lossless", str(source), "-o", str(tmp_path / "us.mzc")]) == 0
    assert "lossless (the causal coder alone, on luma and chroma)" in capsys.readouterr().out
    assert main(["decompress", str(tmp_path / "us.mzc"), "-o", str(tmp_path / "us_back.dcm")]) == 0
    original, back = pydicom.dcmread(source), pydicom.dcmread(tmp_path / "us_back.dcm")
    assert back.PlanarConfiguration == planar and back.PixelData == original.PixelData
    assert np.array_equal(back.pixel_array, rgb)
    _same_header(original, back)
    with pytest.raises(DataError, match="takes 1 channel\\(s\\), the pixels have 3"):
        compress_files([source], tmp_path / "lossy.mzc", model="ae-chestxray-f4c3", lossless=False, quality=3)
    assert not (tmp_path / "lossy.mzc").exists()


def test_a_big_endian_dicom_is_kept_as_pixels_not_as_a_dicom_whose_header_could_not_be_written(tmp_path):
    """Explicit VR Big Endian (retired) headers cannot be re-encoded little-endian, which is what decompress
    writes: lossless coding keeps the stored pixels, says so, and decodes them exactly to .npy; lossy coding
    refuses, naming the file."""
    from pydicom.data import get_testdata_file

    source = get_testdata_file("MR_small_bigendian.dcm")
    assert "Big Endian" in dicom_io.unsupported(source) and "MR_small_bigendian.dcm" in dicom_io.unsupported(source)
    with pytest.warns(UserWarning, match="coded as stored pixel arrays"):
        compress_files([source], tmp_path / "mr.mzc", model=None, lossless=True)
    _, pixels, paths = decompress_file(tmp_path / "mr.mzc", tmp_path / "back")
    assert [p.suffix for p in paths] == [".npy"]  # signed 16-bit: no PNG holds it
    back = np.load(paths[0])
    assert back.dtype == np.int16 and np.array_equal(back.squeeze(), pydicom.dcmread(source).pixel_array)
    with pytest.raises(DataError, match="Big Endian"):
        compress_files([source], tmp_path / "lossy.mzc", model="ae-chestxray-f4c3", lossless=False, quality=3)
    assert not (tmp_path / "lossy.mzc").exists()


def test_a_container_cannot_write_outside_the_output_folder_and_an_earlier_lossy_record_is_kept(tmp_path):
    image = (np.arange(24 * 20).reshape(24, 20) * 7 % 4096).astype(np.uint16)
    compress_files([_write(tmp_path / "x.dcm", image)], tmp_path / "x.mzc", model=None, lossless=True)
    names, headers, stream = dicom_io.unpack((tmp_path / "x.mzc").read_bytes())
    for name in ("../escape.dcm", "/tmp/abs.dcm", "a/../../b.dcm"):
        evil = dicom_io.pack([name], headers, stream)
        with pytest.raises(BitstreamError, match="outside the output folder"):
            dicom_io.write_dicoms(evil, tmp_path / "out", image[None], lossy=False)
    assert not (tmp_path / "escape.dcm").exists()

    ds = pydicom.dcmread(tmp_path / "x.dcm")
    ds.LossyImageCompression, ds.LossyImageCompressionRatio, ds.LossyImageCompressionMethod = "01", 8.5, "ISO_10918_1"
    dicom_io._mark_lossy(ds, 20.0, generate_uid())  # one earlier value of each: pydicom gives it bare
    assert list(ds.LossyImageCompressionRatio) == [8.5, 20.0]
    assert list(ds.LossyImageCompressionMethod) == ["ISO_10918_1", dicom_io.LOSSY_METHOD]


def test_a_truncated_or_corrupted_container_is_a_bitstream_error_and_writes_nothing(tmp_path):
    image = (np.arange(24 * 20).reshape(24, 20) * 7 % 4096).astype(np.uint16)
    compress_files([_write(tmp_path / "x.dcm", image)], tmp_path / "x.mzc", model=None, lossless=True)
    data = (tmp_path / "x.mzc").read_bytes()
    assert dicom_io.is_container(data) and np.array_equal(medzoo.decompress(data)[0], image)
    for name, bad in {"truncated": data[:-9], "flipped": data[:40] + bytes([data[40] ^ 1]) + data[41:],
                      "version": data[:4] + b"\x09" + data[5:]}.items():
        (tmp_path / f"{name}.mzc").write_bytes(bad)
        with pytest.raises(BitstreamError, match="CRC32|version 9"):
            decompress_file(tmp_path / f"{name}.mzc", tmp_path / name)
        assert not (tmp_path / name).exists() or not list((tmp_path / name).rglob("*.dcm"))
    names, headers, stream = dicom_io.unpack(data)
    assert names == ["x.dcm"] and dicom_io.inner_stream(data) == stream and dicom_io.inner_stream(stream) == stream
    with pytest.raises(DataError, match="holds 1 DICOM files|give a folder"):
        dicom_io.write_dicoms(dicom_io.pack(["a.dcm", "b.dcm"], headers * 2, stream), tmp_path / "one.dcm",
                              np.stack([image, image]), lossy=False)
