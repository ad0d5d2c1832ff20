"""An any-size autoencoder as a codec (medzoo.codec.latent): its rounded latent, coded by the causal coder.

A tiny residual autoencoder trained for a few seconds on crops of real X-rays stands in for the
zoo's; the checks are about the stream (levels, shapes, integer pixels, refusals), and that
rate and quality move the way the levels say.
"""

import dataclasses
import struct
import zlib

import keras
import numpy as np
import pytest

import medzoo
from medzoo.codec import latent
from medzoo.codec.bitio import BitstreamError
from medzoo.codec.stream import read_header
from medzoo.data import PreprocessSpec, from_arrays
from medzoo.errors import ConfigError, DataError
from medzoo.metrics import psnr, resize_bicubic
from medzoo.models import ConvAutoencoder

RESIDUAL = dict(input_shape=(None, None, 1), architecture="residual", filters=[8, 16], depth=2, seed=1)


@pytest.fixture(scope="module")
def model(tiny_cxr):
    keras.utils.set_random_seed(0)
    ae = ConvAutoencoder(**RESIDUAL, latent_channels=2, normalization="layer")
    ae.compile(optimizer=keras.optimizers.Adam(3e-3))
    ds = from_arrays(tiny_cxr, PreprocessSpec(size=None), batch_size=16, shuffle=True, seed=0, crop_size=16,
                     repeat=True)
    ae.fit(ds, epochs=1, steps_per_epoch=60, verbose=0)
    ae.zoo_metadata = {"name": "tiny-latent", "version": "0.1.0",
                       "codec": {"levels": [[2, 0.5], [1, 1.0], [1, 0.25], [1, 0.0625]]}}
    return ae


@pytest.fixture(scope="module")
def images(tiny_cxr):
    """Real X-rays enlarged to 64 x 48 (not a multiple of the tiles or the factor: padding is cropped)."""
    return np.clip(resize_bicubic(tiny_cxr[:3], 64, 48), 0.0, 1.0)


def test_levels_come_from_the_preset_else_the_defaults(model):
    assert latent.levels_of(model) == ((2, 0.5), (1, 1.0), (1, 0.25), (1, 0.0625))
    assert latent.levels_of(ConvAutoencoder(**RESIDUAL, latent_channels=2)) == latent.DEFAULT_LEVELS
    assert latent.is_latent_coder(model)
    assert not latent.is_latent_coder(ConvAutoencoder(input_shape=(32, 32, 1), filters=4, depth=2))


def test_finer_steps_cost_more_bits_and_give_more_quality(model, images):
    sizes, quality = [], []
    for q in (1, 2, 3):
        data = medzoo.compress(images, model, quality=q)
        header = read_header(data)
        assert header.kind == "autoencoder" and header.quality == q
        assert header.code_shape == (16, 12)  # 64 x 48 at f = 4
        out = medzoo.decompress(data, model)
        assert out.shape == images.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
        sizes.append(len(data))
        quality.append(float(np.mean(psnr(images, out))))
    assert sizes[0] < sizes[1] < sizes[2]
    assert quality[0] < quality[1] < quality[2]
    # the finest step is close to the unquantised reconstruction
    assert abs(quality[2] - float(np.mean(psnr(images, model.reconstruct(images))))) < 1.0


def test_a_reduced_level_codes_a_smaller_latent_and_fewer_bits(model, images):
    reduced, full = medzoo.compress(images, model, quality=0), medzoo.compress(images, model, quality=1)
    assert read_header(reduced).code_shape == (8, 6)  # 32 x 24 at f = 4
    assert len(reduced) < len(full)
    assert medzoo.decompress(reduced, model).shape == images.shape


def test_the_integers_travel_exactly(model, images):
    data = medzoo.compress(images, model, quality=2)
    header = read_header(data)
    block = data[header.header_bytes:header.header_bytes + header.payload_bytes]
    factor, step, q, corrections = latent.read_block(block, len(images))
    assert (factor, step) == (1, 0.25) and corrections is None  # 64 x 48 is one tile: no offsets, no field
    expected = np.round(model.encode(images) / np.float32(0.25))
    np.testing.assert_array_equal(q, expected)


def test_each_latent_channel_is_coded_on_its_own(model, images):
    data = medzoo.compress(images, model, quality=2)
    header = read_header(data)
    block = data[header.header_bytes:header.header_bytes + header.payload_bytes]
    _, _, q, _ = latent.read_block(block, len(images))
    # after factor, step and the shape, one length-prefixed causal signal per channel, then the tile side (0) and
    # the correction field's cell (0)
    from medzoo.codec import lossless
    from medzoo.codec.bitio import Reader
    r = Reader(block)
    r.varint("factor")
    r.take(4, "step")
    assert [r.varint("shape") for _ in range(3)] == list(q.shape[1:])
    for c in range(q.shape[-1]):
        payload = r.take(r.varint("size"), "channel")
        np.testing.assert_array_equal(lossless.decode_signal(payload, (len(images), *q.shape[1:3])), q[..., c])
    assert r.varint("tile") == 0 and r.varint("field") == 0 and r.pos == len(block)
    with pytest.raises(BitstreamError, match="after the latent channels"):
        latent.read_block(block + b"\0", len(images))


def test_tiles_coded_apart_get_their_mean_error_back(model, images, monkeypatch):
    """An image coded in tiles (normalised apart) carries each tile's mean error, and the decoder adds it
    back: the error's mean per tile shrinks to the offsets' rounding. A stream of latent coder 2 (no
    offsets) still decodes, with its per-tile offsets left in."""
    monkeypatch.setattr(model, "default_tile", (16, 4))
    monkeypatch.setattr(model, "auto_tile_pixels", 16 * 16)  # 64 x 48 is now 4 x 3 tiles of 16 px
    monkeypatch.setattr(latent, "FIELD_GRID", 64)  # one node per image: the tiles' means are the offsets' alone
    data = medzoo.compress(images, model, quality=3)
    header = read_header(data)
    _, _, _, corrections = latent.read_block(data[header.header_bytes:header.header_bytes + header.payload_bytes],
                                             len(images))
    assert corrections.tile == 16 and corrections.offsets.shape == (3, 4, 3, 1)
    rows, cols = latent.tile_partition(64, 16, 4), latent.tile_partition(48, 16, 4)
    assert rows.tolist() == np.repeat(np.arange(4), 16).tolist() and cols.max() == 2
    with monkeypatch.context() as patch:
        patch.setattr(latent, "_corrections_block", lambda *args: b"")
        patch.setattr(latent, "TABLES_ID", latent.TABLES_ID_V2)
        old = medzoo.compress(images, model, quality=3)
    after = np.abs(latent._tile_means(images - medzoo.decompress(data, model), rows, cols))
    before = np.abs(latent._tile_means(images - medzoo.decompress(old, model), rows, cols))
    assert after.max() <= 3 * latent.OFFSET_STEP < before.max()
    assert after.mean() < 0.2 * before.mean()


def test_the_correction_field_takes_out_the_error_that_drifts_inside_tiles(model, images, monkeypatch):
    """Latent coder 4 sends a smooth field fitted to the error the tile offsets leave: the error's means over
    8 px blocks shrink against latent coder 3's, the field has no steps of its own, a coder-3 stream still
    decodes, and a field whose grid does not fit the image is refused."""
    monkeypatch.setattr(model, "default_tile", (16, 4))
    monkeypatch.setattr(model, "auto_tile_pixels", 16 * 16)
    monkeypatch.setattr(latent, "FIELD_GRID", 8)
    data = medzoo.compress(images, model, quality=3)
    header = read_header(data)
    block = data[header.header_bytes:header.header_bytes + header.payload_bytes]
    _, _, _, corrections = latent.read_block(block, len(images))
    assert corrections.grid == 8 and corrections.nodes.shape == (3, 8, 6, 1) and corrections.nodes.any()
    with monkeypatch.context() as patch:  # what latent coder 3 wrote: the offsets, and no field's byte after them
        corrections_block = latent._corrections_block
        patch.setattr(latent, "fit_field", lambda error, grid: np.zeros((1, 1, 1, 1), np.int64))
        patch.setattr(latent, "_corrections_block", lambda *args: corrections_block(*args)[:-1])
        patch.setattr(latent, "TABLES_ID", latent.TABLES_ID_V3)
        v3 = medzoo.compress(images, model, quality=3)
    header3 = read_header(v3)
    v3_block = v3[header3.header_bytes:header3.header_bytes + header3.payload_bytes]
    assert latent.read_block(v3_block, 3, field=False)[3].nodes is None
    assert len(v3_block) < len(block)  # the field's bytes are what coder 4 adds
    eight = latent.tile_partition(64, 8, 4), latent.tile_partition(48, 8, 4)
    after = np.abs(latent._tile_means(images - medzoo.decompress(data, model), *eight)).mean()
    before = np.abs(latent._tile_means(images - medzoo.decompress(v3, model), *eight)).mean()
    assert after < 0.7 * before
    field = latent.smooth_field(corrections.nodes, 64, 48, 8)
    steps = np.abs(np.diff(field, axis=1)).max()
    assert steps < 0.5 * np.abs(np.diff(corrections.nodes * latent.OFFSET_STEP, axis=1)).max()
    corrections.grid = 16  # 8 x 6 nodes do not fit 64 x 48 in 16 px cells
    with pytest.raises(BitstreamError, match="correction field"):
        corrections.apply(np.zeros((3, 64, 48, 1)), 4)
    latent.read_block(block, 3, image_size=(64, 48), minimum=4)  # the grid fits the coded size
    with pytest.raises(BitstreamError, match="correction field's grid is invalid"):  # read before it is decoded
        latent.read_block(block, 3, image_size=(32, 48), minimum=4)
    monkeypatch.setattr(latent, "FIELD_GRID", latent.MAX_FIELD_GRID + 1)  # one node, in a cell no stream may name
    monkeypatch.setattr(latent, "fit_field", lambda error, grid: np.ones((3, 1, 1, 1), np.int64))
    huge = medzoo.compress(images, model, quality=3)
    header = read_header(huge)
    with pytest.raises(BitstreamError, match="correction field's grid is invalid"):
        latent.read_block(huge[header.header_bytes:header.header_bytes + header.payload_bytes], 3)


def test_the_field_fit_recovers_a_smooth_error():
    """fit_field inverts smooth_field: nodes drawn at random come back after enlarging, up to rounding."""
    nodes = np.random.default_rng(0).integers(-40, 40, size=(2, 5, 4, 1))
    field = latent.smooth_field(nodes, 70, 57, 16)  # the last cells cut where the image ends
    np.testing.assert_array_equal(latent.fit_field(field, 16), nodes)


def test_a_stream_of_latent_coder_1_still_decodes(model, images, monkeypatch):
    """Streams written before per-channel coding (one causal signal of every channel's planes) decode to
    the same images as today's stream of the same level."""
    from medzoo.codec import lossless
    from medzoo.codec.bitio import varint

    def version_1_block(model, x, factor, step, batch_size=64):
        q = np.round(np.asarray(model.encode(x), np.float32) / np.float32(step)).astype(np.int64)
        n, lh, lw, lc = q.shape
        planes = np.ascontiguousarray(q.transpose(0, 3, 1, 2).reshape(n * lc, lh, lw))
        return b"".join([varint(factor), struct.pack(">f", step), varint(lh), varint(lw), varint(lc),
                         lossless.encode_signal(planes, "int16")])

    today = medzoo.compress(images, model, quality=2)
    with monkeypatch.context() as patch:
        patch.setattr(latent, "encode_block", version_1_block)
        patch.setattr(latent, "TABLES_ID", latent.TABLES_ID_V1)
        old = medzoo.compress(images, model, quality=2)
    assert old != today
    np.testing.assert_array_equal(medzoo.decompress(old, model), medzoo.decompress(today, model))
    unknown = bytearray(old)
    start = unknown.find(bytes.fromhex(latent.TABLES_ID_V1[:8]))
    assert start > 0
    unknown[start] ^= 0xFF  # another coder's id, under a checksum that holds
    body = bytes(unknown[:-4])
    with pytest.raises(BitstreamError, match="latent coder"):
        medzoo.decompress(body + struct.pack(">I", zlib.crc32(body)), model)


@pytest.mark.parametrize("dtype, low, high", [("uint16", 0, 4095), ("int16", -1024, 2000), ("uint8", 0, 255)])
def test_integer_pixels_come_back_in_their_type_and_range(model, images, dtype, low, high):
    pixels = np.round(low + images[..., 0] * (high - low)).astype(dtype)  # (N, H, W): rank 3
    data = medzoo.compress(pixels, model, quality=3)
    assert read_header(data).kind == "autoencoder-pixels"
    out = medzoo.decompress(data, model)
    assert out.dtype == pixels.dtype and out.shape == pixels.shape
    assert out.min() >= pixels.min() and out.max() <= pixels.max()
    # the same as coding each image min-max scaled to [0, 1] and mapping the result back
    lo = pixels.min(axis=(1, 2), keepdims=True).astype(np.float64)
    hi = pixels.max(axis=(1, 2), keepdims=True).astype(np.float64)
    unit = ((pixels - lo) / (hi - lo)).astype(np.float32)[..., None]
    expected = lo + medzoo.decompress(medzoo.compress(unit, model, quality=3), model)[..., 0] * (hi - lo)
    assert np.abs(out - expected).max() <= 1.0


def test_refusals(model, images):
    data = medzoo.compress(images, model)
    other = ConvAutoencoder(**{**RESIDUAL, "seed": 2}, latent_channels=2)
    with pytest.raises(BitstreamError, match="weights id"):
        medzoo.decompress(data, other)
    # a stream of a model the zoo does not hold, decoded without naming it: what to pass (the CLI: before Keras)
    with pytest.raises(ConfigError, match="made with tiny-latent 0.1.0, which the zoo does not hold.*--model"):
        medzoo.decompress(data)
    # a stream of a retired zoo name: its alias is another network, so it is refused, not decoded wrong
    from medzoo.codec.stream import check_named_model

    header = dataclasses.replace(read_header(data), model_name="ae-chestxray-f4c1", model_version="1.4.0")
    with pytest.raises(ConfigError, match="ae-chestxray-f4c1 1.4.0, which the zoo has retired .*ae-chestxray-f4c3"):
        check_named_model(header)
    with pytest.raises(BitstreamError):
        medzoo.decompress(data[:-9] + data[-4:], model)  # truncated payload
    with pytest.raises(ConfigError, match="quality"):
        medzoo.compress(images, model, quality=4)
    with pytest.raises(ConfigError, match="lossless"):
        medzoo.compress((images * 255).astype(np.uint8), model, lossless=True)
    with pytest.raises(DataError):
        medzoo.compress(images * 2.0, model)  # floats outside [0, 1]
    with pytest.raises(ConfigError, match="step"):
        latent.encode_block(model, images, 1, 0.0)


def test_a_ct_model_is_compared_on_twelve_bits_at_the_ct_guideline_ratios(model, images):
    spec = PreprocessSpec(size=None, normalize="fixed", input_range=(-1024, 3071), units="HU")
    saved, model.preprocess_spec = model.preprocess_spec, spec
    try:
        result = medzoo.evaluate.compression(model, images=images * 4095 - 1024)  # images in HU
    finally:
        model.preprocess_spec = saved
    assert set(result.codecs) == {"jpeg2000", "htj2k", "jpegxl"}  # JPEG and WebP code 8 bits only
    assert all(c["bits"] == 12 for c in result.codecs.values())
    assert list(result.guidelines) == ["8:1", "15:1"] and result.guidelines["8:1"]["bpp"] == 1.5
    assert list(result.metrics) == ["psnr", "ssim", "ms_ssim", "psnr_soft_tissue"]
    assert set(result.bd["tiny-latent"]) == set(result.metrics)
    point = result.models[0]
    assert point["psnr_soft_tissue"] < point["psnr"]  # the window is a tenth of the range: errors weigh more
    assert "BD-rate PSNR soft tissue %" in result.table() and "PSNR soft tissue dB at 8:1" in result.markdown()


def test_a_ct_dicom_goes_through_the_autoencoder_and_comes_back_marked_lossy(model, dicom_dir, tmp_path):
    """DICOM in, DICOM out: the header, int16 HU pixels in the stored range, the Lossy Image Compression
    attributes and a new SOP Instance UID."""
    import pydicom

    from medzoo.codec.dicom_io import LOSSY_METHOD
    from medzoo.data import read_stored_pixels
    from medzoo.evaluate import compress_files, decompress_file

    source = dicom_dir / "693_J2KR.dcm"
    stored = read_stored_pixels(source)
    header = compress_files([source], tmp_path / "ct.mzc", model=model, quality=3).header
    assert header.kind == "autoencoder-pixels" and header.image_shape[:2] == stored.shape
    _, _, paths = decompress_file(tmp_path / "ct.mzc", tmp_path / "out", model=model)
    original, back = pydicom.dcmread(source), pydicom.dcmread(paths[0])
    assert back.pixel_array.dtype == stored.dtype and back.pixel_array.shape == stored.shape
    assert stored.min() <= back.pixel_array.min() and back.pixel_array.max() <= stored.max()
    np.testing.assert_array_equal(back.pixel_array, medzoo.decompress(medzoo.compress(stored, model, quality=3),
                                                                      model))
    assert back.LossyImageCompression == "01" and LOSSY_METHOD in str(back.LossyImageCompressionMethod)
    assert back.SOPInstanceUID != original.SOPInstanceUID
    assert (back.PatientID, back.Modality, back.Rows) == (original.PatientID, original.Modality, original.Rows)


def test_a_stream_of_model_inputs_decompresses_to_pngs_or_float_arrays_in_a_folder_or_one_file(model, images,
                                                                                               tmp_path):
    from PIL import Image

    from medzoo.evaluate import decompress_file

    (tmp_path / "s0.mzc").write_bytes(medzoo.compress(images[:2], model, quality=2))  # two images
    (tmp_path / "s1.mzc").write_bytes(medzoo.compress(images[1:2], model, quality=2))  # one
    expected = medzoo.decompress((tmp_path / "s1.mzc").read_bytes(), model)[0]
    _, _, paths = decompress_file(tmp_path / "s1.mzc", tmp_path / "one.npy", model=model)
    assert paths == [tmp_path / "one.npy"] and np.load(paths[0]).dtype == np.float32
    np.testing.assert_allclose(np.load(paths[0]), expected, atol=1e-6)
    _, _, paths = decompress_file(tmp_path / "s1.mzc", tmp_path / "one.png", model=model)
    back = np.asarray(Image.open(paths[0]))
    assert paths == [tmp_path / "one.png"] and back.dtype == np.uint8 and back.shape == expected.shape[:2]
    assert np.abs(back.astype(int) - np.round(expected[..., 0] * 255)).max() <= 1
    _, _, paths = decompress_file(tmp_path / "s0.mzc", tmp_path / "two", model=model, output_format="npy")
    assert [p.name for p in paths] == ["s0_000.npy", "s0_001.npy"]
    with pytest.raises(DataError, match="the stream holds 2 images; give a folder"):
        decompress_file(tmp_path / "s0.mzc", tmp_path / "two.png", model=model)
    assert not (tmp_path / "two.png").exists()


def test_a_reduced_level_checks_the_image_given_not_its_reduction():
    """Quality 0 codes a 512 px CT slice reduced 4 times: the zoo model warns about neither that 128 px copy's
    size nor its statistics, but still about a slice unlike its training data."""
    import warnings

    from medzoo.errors import DomainShiftWarning

    model = medzoo.load("ae-ct-f4c3")
    assert latent.levels_of(model)[0][0] == 4
    slices, _ = medzoo.load_dataset("ct_tcia_512", "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DomainShiftWarning)
        stream = medzoo.compress(slices[0], model, quality=0)
    assert np.squeeze(medzoo.decompress(stream, model)).shape == (512, 512)
    noise = np.random.default_rng(0).integers(-1024, 3072, (512, 512)).astype(np.int16)  # HU, but no anatomy
    with pytest.warns(DomainShiftWarning):
        medzoo.compress(noise, model, quality=0)
