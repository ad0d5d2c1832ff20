"""The VQ-VAE bitstream: exact round trips, a self-describing header, clear refusals, real bit counts."""

import json
import math
import struct
import zlib

import numpy as np
import pytest

import medzoo
from medzoo.data import PreprocessSpec
from medzoo.errors import ConfigError, DataError, MedzooError
from medzoo.evaluate import classical
from medzoo.codec.stream import (
    BitstreamError,
    decode_codes,
    decompress_codes,
    encode_codes,
    pack,
    read_header,
)
from medzoo.codec.entropy import KINDS, EntropyModel, fit_entropy_model, weights_fingerprint
from medzoo.models import VQVAE

TINY = dict(input_shape=(32, 32, 1), filters=4, depth=2, seed=3, normalization="none")
SPEC = PreprocessSpec(size=(32, 32), resize="stretch", normalize="minmax")
TRAINING = {"recipe": "test", "epochs": 1, "splits": {"train": "train", "metrics": "test"}, "classes": None,
            "dataset": {"name": "kermany_pediatric_cxr_64", "licence": "CC-BY-4.0", "citation": "Kermany 2018"}}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


def _train_vq(images, num_embeddings=16, seed=3):
    model = VQVAE(num_embeddings=num_embeddings, embedding_dim=4, **{**TINY, "seed": seed})
    model.fit(images, epochs=4, batch_size=16, verbose=0)
    model.preprocess_spec = SPEC
    return model


@pytest.fixture(scope="module")
def vq(tiny_cxr):
    return _train_vq(tiny_cxr)


@pytest.fixture(scope="module")
def em(vq, tiny_cxr):
    return fit_entropy_model(vq, tiny_cxr[:32], tiny_cxr[32:], cache=False)


@pytest.fixture(scope="module")
def preset(vq, tmp_path_factory):
    return medzoo.save_preset(vq, tmp_path_factory.mktemp("codec") / "tiny-vq", name="tiny-vq", spec=SPEC,
                              training=TRAINING, version="1.2.3")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_round_trip_gives_exactly_the_models_codes_and_decoding(vq, em, tiny_cxr, kind):
    x = tiny_cxr[:10]
    data = medzoo.compress(x, model=vq, kind=kind, entropy_model=em)
    header, codes, _ = decompress_codes(data, model=vq, entropy_model=em)
    assert header.kind == kind
    np.testing.assert_array_equal(codes, vq.encode(x))
    np.testing.assert_array_equal(medzoo.decompress(data, model=vq, entropy_model=em), vq.decode(vq.encode(x)))


def test_compression_is_deterministic_and_raw_images_get_the_models_preprocessing(vq, em, data_dir):
    with np.load(data_dir / "pediatric_cxr_kermany" / "kermany_pediatric_cxr_64.npz") as f:
        raw = f["val_images"][:6]  # uint8, 64 x 64: not model inputs
    data = medzoo.compress(raw, model=vq, entropy_model=em)
    assert data == medzoo.compress(raw, model=vq, entropy_model=em)
    assert data == medzoo.compress(np.asarray(SPEC.apply(raw)), model=vq, entropy_model=em)
    assert read_header(data).num_images == 6


def test_header_describes_the_stream_without_a_model(preset, em, tiny_cxr):
    model = medzoo.load_preset(preset, compile=False)
    data = medzoo.compress(tiny_cxr[:3], model=model, entropy_model=em)
    header = read_header(data)
    assert data[:4] == b"\x89MZC" and header.format_version == 1
    assert (header.model_name, header.model_version) == ("tiny-vq", "1.2.3")
    assert header.weights_id == weights_fingerprint(model)[:8] and header.entropy_model_id == em.digest[:8]
    assert (header.num_codes, header.code_shape, header.image_shape, header.num_images) == (16, (8, 8), (32, 32, 1), 3)
    assert header.total_bytes == len(data) == header.header_bytes + header.payload_bytes + 4
    assert header.bits_per_pixel == pytest.approx(8 * len(data) / (3 * 32 * 32))
    json.dumps(header.to_dict())


def test_decompress_finds_the_cached_entropy_model_of_a_preset(preset, tiny_cxr, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDZOO_CACHE", str(tmp_path / "cache"))
    model = medzoo.load_preset(preset, compile=False)
    with pytest.raises(MedzooError, match="fit_entropy_model|no entropy model|dataset"):
        medzoo.codec.stream.entropy_model_for(model, fit=False)
    fitted = fit_entropy_model(model, tiny_cxr[:32], tiny_cxr[32:])  # cached under the weights' fingerprint
    assert (tmp_path / "cache" / "codec" / f"{weights_fingerprint(model)}.npz").is_file()
    data = medzoo.compress(tiny_cxr[:4], model=str(preset))
    assert read_header(data).entropy_model_id == fitted.digest[:8]
    np.testing.assert_array_equal(medzoo.decompress(data, model=str(preset)), model.decode(model.encode(tiny_cxr[:4])))
    with pytest.raises(MedzooError, match="tiny-vq"):  # not a zoo name: loading by the stream's name fails clearly
        medzoo.decompress(data)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("damage, match", [
    (lambda d: d[:-1], "truncated|checksum"),
    (lambda d: d[:-7], "truncated"),
    (lambda d: d[:9], "truncated"),
    (lambda d: d + b"\x00", "unexpected bytes"),
    (lambda d: d[:-6] + bytes([d[-6] ^ 0x10]) + d[-5:], "CRC32"),
    (lambda d: d[:12] + bytes([d[12] ^ 0x01]) + d[13:], "CRC32|corrupted"),
    (lambda d: _with_crc(d[:4] + b"\x09" + d[5:-4]), "format version 9"),
    (lambda d: PNG, "not a medzoo stream"),
    (lambda d: b"", "not a medzoo stream"),
])
def test_damaged_or_foreign_streams_raise_a_clear_medzoo_error(vq, em, tiny_cxr, damage, match):
    data = medzoo.compress(tiny_cxr[:3], model=vq, entropy_model=em)
    with pytest.raises(BitstreamError, match=match) as info:
        medzoo.decompress(damage(data), model=vq, entropy_model=em)
    assert isinstance(info.value, DataError) and isinstance(info.value, MedzooError)


def test_other_weights_or_another_entropy_model_are_refused(vq, em, tiny_cxr):
    data = medzoo.compress(tiny_cxr[:3], model=vq, entropy_model=em)
    other = VQVAE(num_embeddings=16, embedding_dim=4, **{**TINY, "seed": 11})
    with pytest.raises(BitstreamError, match="weights id"):
        medzoo.decompress(data, model=other, entropy_model=em)
    refit = fit_entropy_model(vq, tiny_cxr[16:], tiny_cxr[:16], cache=False)
    with pytest.raises(BitstreamError, match="entropy model"):
        medzoo.decompress(data, model=vq, entropy_model=refit)
    with pytest.raises(ConfigError, match="unsaved model"):
        medzoo.decompress(data)  # no name in the stream, no model given


def _geometric_maps(rng, n, k=64, shape=(8, 8), ratio=0.7, copy_left=0.0):
    p = ratio ** np.arange(k)
    codes = rng.choice(k, size=(n, *shape), p=p / p.sum())
    if copy_left:
        for j in range(1, shape[1]):
            copy = rng.random((n, shape[0])) < copy_left
            codes[:, :, j] = np.where(copy, codes[:, :, j - 1], codes[:, :, j])
    return codes


def test_an_any_size_vq_vae_streams_its_images_at_their_own_size(vq, em, tiny_cxr):
    """A residual VQ-VAE (input (None, None, C)): the header holds the image's real size, an image that
    pads up to f decodes back to its size, and a size the entropy model was not fitted on is coded too."""
    import keras

    keras.utils.set_random_seed(0)  # fit's shuffling would otherwise follow whatever ran before in this worker
    model = VQVAE(input_shape=(None, None, 1), architecture="residual", filters=[8, 16], depth=2,
                  num_embeddings=16, embedding_dim=4, seed=3)
    model.fit(tiny_cxr, epochs=1, batch_size=16, verbose=0)
    fitted = EntropyModel.fit(model.encode(tiny_cxr), num_codes=16)  # 8 x 8 code maps of 32 px images
    x = tiny_cxr[:5]
    data = medzoo.compress(x, model=model, entropy_model=fitted)
    header = read_header(data)
    assert header.image_shape == (32, 32, 1) and header.code_shape == (8, 8) and header.num_images == 5
    np.testing.assert_array_equal(decompress_codes(data, model=model, entropy_model=fitted)[1], model.encode(x))
    np.testing.assert_allclose(medzoo.decompress(data, model=model, entropy_model=fitted), model.reconstruct(x),
                               atol=1e-5)

    padded = tiny_cxr[:3, :30, :29]  # ceil(30 / 4) x ceil(29 / 4): still 8 x 8 codes
    data = medzoo.compress(padded, model=model, entropy_model=fitted)
    assert read_header(data).image_shape == (30, 29, 1)
    out = medzoo.decompress(data, model=model, entropy_model=fitted)
    assert out.shape == (3, 30, 29, 1)
    np.testing.assert_allclose(out, model.reconstruct(padded), atol=1e-5)

    # a size the entropy model was not fitted on: coded without its per-position term, exactly
    other = np.ascontiguousarray(np.tile(tiny_cxr[:2], (1, 2, 2, 1))[:, :48, :40])
    data = medzoo.compress(other, model=model, entropy_model=fitted)
    header = read_header(data)
    assert header.image_shape == (48, 40, 1) and header.code_shape == (12, 10)
    np.testing.assert_array_equal(decompress_codes(data, model=model, entropy_model=fitted)[1], model.encode(other))
    assert header.payload_bytes * 8 < 0.95 * math.log2(16) * 12 * 10 * 2  # the neighbour terms still pay
    with pytest.warns(medzoo.ResizeWarning, match=r"images: 48x40 resized to 32x32, the size this model takes"):
        data = medzoo.compress(other, model=vq, entropy_model=em)  # a fixed-size VQ-VAE codes its own size
    assert read_header(data).image_shape == (32, 32, 1)
    spec, vq.preprocess_spec = vq.preprocess_spec, None
    try:
        with pytest.raises(DataError, match=r"shape \(N, 32, 32, 1\); got float32 \(2, 48, 40, 1\)"):
            medzoo.compress(other, model=vq, entropy_model=em)  # without a spec: refused, never resized
    finally:
        vq.preprocess_spec = spec

    # beside a fixed-size VQ-VAE in one rate-distortion comparison, on the images that one takes
    result = medzoo.evaluate.compression([vq, model], images=x, codecs=["jpeg"], anchor="jpeg", entropy_models=[em, fitted])
    point = result.models[1]
    assert point["code_shape"] == [8, 8] and point["rates"]["raw"] == 4 * 64 / (32 * 32)
    assert point["per_image"]["bpp"][0] == 8 * len(medzoo.compress(x[:1], model=model, entropy_model=fitted)) / 1024
    with pytest.raises(ConfigError, match="takes 32 x 32 images; those of this comparison are 30 x 29"):
        medzoo.evaluate.compression([model, vq], images=padded, codecs=["jpeg"], anchor="jpeg",
                                     entropy_models=[fitted, em])


def test_skewed_codes_cost_less_than_log2_k_counted_from_the_actual_bytes():
    rng = np.random.default_rng(0)
    train, val, test = (_geometric_maps(rng, n) for n in (300, 60, 40))
    model = EntropyModel.fit(train, val, num_codes=64)
    payload = encode_codes(test, model, "iid")
    bits = 8 * len(payload)
    raw = math.log2(64) * test.size
    ideal = model.cross_entropy(test, "iid") * test.size
    assert bits < 0.5 * raw  # entropy of the skewed source is about 2.4 bits of 6
    assert ideal <= bits <= ideal * 1.01 + 32  # a range coder is within a word of the ideal length
    np.testing.assert_array_equal(decode_codes(payload, model, len(test), "iid"), test)
    stream = pack(test, model, model_name="synthetic", model_version="1.0.0", weights_id="00" * 4,
                  image_shape=(64, 64, 1), kind="iid")
    assert read_header(stream).bits_per_pixel < raw / (len(test) * 64 * 64)


def test_the_context_model_pays_off_on_spatially_correlated_codes():
    rng = np.random.default_rng(1)
    train, val, test = (_geometric_maps(rng, n, ratio=0.9, copy_left=0.8) for n in (300, 60, 40))
    model = EntropyModel.fit(train, val, num_codes=64)
    rates = {kind: 8 * len(encode_codes(test, model, kind)) / test.size for kind in KINDS}
    assert rates["context"] < 0.7 * rates["iid"]
    assert model.weights["context"][KINDS["context"].index("left")] > 0.5  # EM found the left neighbour
    np.testing.assert_array_equal(decode_codes(encode_codes(test, model, "context"), model, len(test), "context"),
                                  test)


def test_entropy_model_files_round_trip_and_refuse_damage(em, tmp_path):
    path = em.save(tmp_path / "em.npz")
    loaded = EntropyModel.load(path)
    assert loaded.digest == em.digest and loaded.weights == em.weights
    np.testing.assert_array_equal(loaded.step_probabilities(5, np.array([1, 16]), np.array([16, 3]), "context"),
                                  em.step_probabilities(5, np.array([1, 16]), np.array([16, 3]), "context"))
    with np.load(path) as f:
        arrays = dict(f)
    arrays["marginal"] = arrays["marginal"] + 1
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match="digest"):
        EntropyModel.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("codec", classical.available_codecs())
def test_classical_sweeps_give_monotone_rates(codec, tiny_cxr):
    x = tiny_cxr[:4]
    out = classical.sweep(codec, np.rint(x[..., 0] * 255).astype(np.uint8), x)
    bpp = np.asarray(out["bpp"])
    assert np.all(np.diff(bpp) >= 0), f"{codec} rates are not monotone: {bpp}"
    assert bpp[-1] > 2 * bpp[0] and out["psnr"][-1] > out["psnr"][0] + 10
    assert out["per_image"]["bpp"].shape == (len(out["settings"]), 4) and out["example"].shape[1:] == (32, 32, 1)


def test_twelve_bit_images_are_swept_on_their_own_range_and_eight_bit_codecs_refuse_them(tiny_cxr):
    x = tiny_cxr[:3]
    stored = np.rint(x[..., 0] * 4095).astype(np.uint16)  # CT's 12 bits in a uint16
    for codec in ("jpeg2000", "htj2k", "jpegxl"):
        out = classical.sweep(codec, stored, x, bits=12)
        plain = classical.CODECS[codec].settings
        assert out["bits"] == 12 and out["settings"][:len(plain)] == list(plain) and len(out["settings"]) > len(plain)
        assert np.all(np.diff(out["bpp"]) >= 0), f"{codec} rates are not monotone: {out['bpp']}"
        # measured on the 12-bit range (not the uint16's): the finest settings come close to the stored pixels
        assert out["psnr"][-1] > 50 and out["psnr"][-1] > out["psnr"][0] + 15
    j2k = classical.sweep("jpeg2000", stored, x, bits=12, settings=(36,))
    assert abs(j2k["psnr"][0] - 36) < 3  # the target PSNR is of the 12-bit range, as it is for 8 bits
    with pytest.raises(ConfigError, match="8-bit"):
        classical.sweep("jpeg", stored, x, bits=12)
    assert "jpeg" not in classical.available_codecs(12) and "htj2k" in classical.available_codecs(12)


def test_ct_is_also_measured_in_a_soft_tissue_window():
    from medzoo.evaluate.compression import quality_metrics, stored_bits_of

    spec = PreprocessSpec(size=None, normalize="fixed", input_range=(-1024, 3071), units="HU")
    metrics = quality_metrics(spec)
    assert list(metrics) == ["psnr", "ssim", "ms_ssim", "psnr_soft_tissue"] and stored_bits_of(spec) == 12
    assert list(quality_metrics(PreprocessSpec(size=None))) == ["psnr", "ssim", "ms_ssim"]
    assert stored_bits_of(PreprocessSpec(size=None)) == 8
    hu = np.random.default_rng(0).uniform(-100, 200, (2, 64, 64, 1))  # soft tissue, inside level 40 / width 400
    reference, decoded = (hu + 1024) / 4095, (hu + 10 + 1024) / 4095  # 10 HU off everywhere
    full, window = metrics["psnr"](reference, decoded), metrics["psnr_soft_tissue"](reference, decoded)
    np.testing.assert_allclose(full, 20 * np.log10(4095 / 10), atol=0.05)
    np.testing.assert_allclose(window, 20 * np.log10(400 / 10), atol=0.05)  # the window's 400 HU are the range


def test_compression_result_counts_real_stream_bytes(vq, em, tiny_cxr, tmp_path):
    vq64 = _train_vq(tiny_cxr, num_embeddings=64, seed=5)
    em64 = fit_entropy_model(vq64, tiny_cxr[:32], tiny_cxr[32:], cache=False)
    x = tiny_cxr[:6]
    result = medzoo.evaluate.compression([vq, vq64], images=x, codecs=["jpeg", "jpeg2000"], entropy_models=[em, em64])
    point = result.models[0]
    assert point["per_image"]["bpp"][0] == 8 * len(medzoo.compress(x[:1], model=vq, entropy_model=em)) / (32 * 32)
    assert point["rates"]["context"] <= point["rates"]["raw"] + 1e-9
    assert point["bpp"] > point["payload_bpp"] and point["bpp"] > point["one_stream_bpp"]  # a header per image
    assert set(result.bd) == {"VQ-VAE", "JPEG"} and set(result.bd["JPEG"]) == {"psnr", "ssim", "ms_ssim"}
    assert set(result.points[0]["codecs"]) == {"jpeg", "jpeg2000"}
    d = result.to_dict()
    json.dumps(medzoo.evaluate.common.jsonable(d), allow_nan=False)
    assert "per_image" not in d["models"][0] and "example" not in d["codecs"]["jpeg"]
    png = result.plot(tmp_path / "rd.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    paths = result.save(tmp_path / "out")
    assert json.loads(paths["results"].read_text())["models"][1]["num_codes"] == 64
    assert paths["compression_examples"].stat().st_size > 1000
    assert "Bjontegaard" in result.table()
    # every codec at each VQ-VAE's rate; the BD-rates; quality at the guideline ratios
    rd, bd, guidelines = result.markdown().split("\n\n| curve |")
    rows = [line for line in rd.splitlines() if line.startswith("| vqvae-unsaved | ")]
    assert len(rows) == 2 * 3 and all(line.count("|") == 8 for line in rows)  # 2 VQ-VAEs x (itself, JPEG, JPEG 2000)
    point, jpeg = rows[0].split(" | "), rows[1].split(" | ")
    assert point[1] == "VQ-VAE (medzoo stream)" and jpeg[1] == "JPEG" and jpeg[2] == point[2]  # at the same bpp
    lowest = min(result.points, key=lambda p: p["bpp"])  # the rate points are listed from low to high
    at_psnr = lowest["codecs"]["jpeg"]["bpp_at_same_psnr"]
    assert point[2] == f"{lowest['bpp']:.3f}" and point[-1] == "- |"
    assert jpeg[-1] == ("- |" if not np.isfinite(at_psnr) else f"{100 * (lowest['bpp'] / at_psnr - 1):+.1f}% |")
    assert any(line.startswith("| JPEG | ") for line in bd.splitlines())
    jpeg = result.guidelines["10:1"]["curves"]["JPEG"]  # the first columns: PSNR and SSIM at 10:1
    cells = ["-" if jpeg[m] is None else f"{jpeg[m]:.{d}f}" for m, d in (("psnr", 2), ("ssim", 3))]
    assert f"| JPEG | {cells[0]} | {cells[1]} |" in guidelines


def test_a_learned_curve_is_the_points_no_other_point_beats():
    from medzoo.evaluate.compression import frontier

    # a v2 VQ-VAE at a v1 one's rate with more quality replaces it on the curve; the result is sorted by rate
    rates, psnr = frontier([0.29, 0.113, 0.05, 0.110], [28.1, 26.3, 24.3, 27.0])
    assert rates.tolist() == [0.05, 0.110, 0.29] and psnr.tolist() == [24.3, 27.0, 28.1]
    assert frontier([0.1, 0.2], [25.0, 26.0])[0].tolist() == [0.1, 0.2]  # more bits for more quality: both stay
    assert frontier([0.1, 0.1], [25.0, 25.0])[0].tolist() == [0.1, 0.1]  # neither is better


@pytest.mark.parametrize("codec", list(classical.LOSSLESS_CODECS))
def test_classical_lossless_codecs_give_back_the_exact_pixels(codec):
    if codec not in classical.available_lossless_codecs(8):
        pytest.fail(f"{codec} is not available in this installation: the lossless benchmark compares with it")
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(40), np.arange(56))
    for dtype in ("uint8", "uint16", "int16"):
        info = np.iinfo(dtype)
        pixels = (info.min + (ramp * (float(info.max) - info.min) / 200) + rng.integers(0, 9, ramp.shape)).astype(dtype)
        if info.bits > classical.LOSSLESS_CODECS[codec].bits:
            with pytest.raises(ConfigError, match="bit"):
                classical.lossless_round_trip(codec, pixels)
            continue
        data, back = classical.lossless_round_trip(codec, pixels)
        assert back.dtype == pixels.dtype and np.array_equal(back, pixels)
        assert 0 < len(data) < pixels.nbytes
    rgb = np.stack([ramp, ramp[::-1], ramp[:, ::-1]], axis=-1).astype(np.uint8) * 2  # colour goes in as one image
    data, back = classical.lossless_round_trip(codec, rgb)
    assert back.shape == rgb.shape and np.array_equal(back, rgb)
    with pytest.raises(DataError, match="colour"):
        classical.lossless_encode(codec, np.zeros((8, 8, 4), np.uint8))
