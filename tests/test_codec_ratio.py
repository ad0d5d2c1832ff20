"""The zoo's learned codec: the levels it offers are measured against JPEG 2000, and ``--ratio`` picks among them.

Radiology states lossy compression as a ratio of the stored bits; ``medzoo compress --ratio N``
takes the offered level nearest N:1 (``medzoo.codec.qualities.quality_for_ratio``) and refuses a
ratio the codec cannot honour with one line that says what it can.
"""

import re

import numpy as np
import pytest
from PIL import Image

import medzoo
from medzoo.cli import main
from medzoo.zoo.presets import read_metadata
from medzoo.codec.qualities import RATIO_SLACK, offered_qualities, quality_for_ratio
from medzoo.errors import ConfigError

from conftest import REPO_ROOT

#: the rate-trained codec's stage preset (not in the zoo: image by image, JPEG 2000 is ahead of it on PSNR)
CODEC = str(REPO_ROOT / "stages" / "codec-chestxray-s3" / "preset")
LEVELS = {"0": {"bpp": 0.08, "psnr": 34.0}, "1": {"bpp": 0.27, "psnr": 37.0}, "2": {"bpp": 0.8, "psnr": 40.0}}
META = {"name": "toy-codec", "metrics": {"qualities": LEVELS}}


def test_the_level_nearest_the_ratio_on_a_log_scale_is_picked():
    # 8 bits: levels at 100:1, 29.6:1 and 10:1
    assert quality_for_ratio(META, 30)["quality"] == 1
    assert quality_for_ratio(META, 10)["quality"] == 2
    assert quality_for_ratio(META, 45)["quality"] == 1  # log-nearer 29.6:1 than 100:1
    assert quality_for_ratio(META, 60)["quality"] == 0  # log-nearer 100:1 than 29.6:1
    row = quality_for_ratio(META, 30)
    assert row["ratio"] == pytest.approx(8 / 0.27)
    # the same bits per pixel are a larger ratio of 16 stored bits: 30:1 of 16 bits is 0.53 bpp
    assert quality_for_ratio(META, 30, stored_bits=16)["quality"] == 2


def test_a_ratio_the_codec_cannot_honour_is_refused_with_what_it_can():
    with pytest.raises(ConfigError, match=r"asks for more quality than toy-codec's finest level, 10:1 .*"
                                          r"levels span 10:1 to 100:1 of 8 stored bits; .*compress losslessly"):
        quality_for_ratio(META, 10 / RATIO_SLACK - 0.5)
    assert quality_for_ratio(META, 10 / RATIO_SLACK + 0.1)["quality"] == 2  # within the slack: the finest
    with pytest.raises(ConfigError, match="past toy-codec's coarsest level, 100:1"):
        quality_for_ratio(META, 100 * RATIO_SLACK + 1)
    for bad in (1, 0.5, -3, float("nan")):
        with pytest.raises(ConfigError, match="a compression ratio is a number above 1"):
            quality_for_ratio(META, bad)
    with pytest.raises(ConfigError, match="ae-x has no measured quality levels.*metrics.qualities"):
        quality_for_ratio({"name": "ae-x", "metrics": {"psnr": 30.0}}, 30)


def test_a_codec_is_offered_only_where_it_is_ahead_of_jpeg2000_image_by_image():
    import importlib.util

    spec = importlib.util.spec_from_file_location("record", REPO_ROOT / "tools" / "record_codec_qualities.py")
    record = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(record)
    sweep = {"bpp": [0.1, 0.3, 1.0], "psnr": [33.0, 37.0, 41.0], "ms_ssim": [0.95, 0.98, 0.99]}

    def point(q, bpp, psnr, each=None):
        p = {"model": f"c q{q}", "quality": q, "factor": 1, "step": 1.0 / (q + 1), "bpp": bpp, "psnr": psnr,
             "ssim": 0.9, "ms_ssim": 0.97}
        return p, {"model": f"c q{q}", "codecs": {"jpeg2000": {"per_image": {"psnr": each}}}} if each else None

    # by the mean curves level 0 is ahead and level 1 behind; image by image, level 0 is behind
    (p0, s0), (p1, _) = point(0, 0.3, 38.0, {"mean_difference": -0.4, "ahead": 1, "images": 10}), point(1, 1.0, 40.0)
    result = {"codecs": {"jpeg2000": sweep}, "models": [p0, p1], "single_points": [s0]}
    offered, below = record.offered_rows(result)
    assert offered == {} and set(below) == {"0", "1"}
    assert below["0"]["jpeg2000_psnr"] == pytest.approx(37.0) and below["0"]["jpeg2000_same_bytes_psnr_difference"] == -0.4
    s0["codecs"]["jpeg2000"]["per_image"]["psnr"]["mean_difference"] = 0.2
    offered, below = record.offered_rows(result)
    assert set(offered) == {"0"} and set(below) == {"1"} and offered["0"]["factor"] == 1


def test_bits_stored_are_what_a_ratio_of_a_dicom_is_of(dicom_dir):
    from medzoo.codec.dicom_io import read_for_coding

    assert read_for_coding([dicom_dir / "RG3_J2KR.dcm"]).bits_stored == 10  # NEMA WG04 CR, 10 bits in 16-bit words
    assert read_for_coding([dicom_dir / "MR2_J2KR.dcm"]).bits_stored == 12


@pytest.fixture(scope="module")
def chest_png(tmp_path_factory, data_dir):
    from medzoo.data.folder_sets import read_splits

    folder = data_dir / "native" / "cxr_hannover_1024"
    first = next(row["file"] for row in read_splits(folder) if row["split"] == "test")
    path = tmp_path_factory.mktemp("ratio") / "chest.png"  # a 256 px crop of a 1024 px test radiograph
    Image.fromarray(np.asarray(Image.open(folder / first).convert("L"))[256:512, 384:640]).save(path)
    return path


def test_compress_by_ratio_on_the_command_line(chest_png, tmp_path, capsys):
    out = tmp_path / "chest.mzc"
    # as a user types it, the option between the model and the input (argparse alone would refuse the input)
    assert main(["compress", CODEC, "--ratio", "30", str(chest_png), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    expected = quality_for_ratio(read_metadata(CODEC), 30)["quality"]
    got = re.search(r"quality (\d+), ([\d.]+):1 of the 8 stored bits \(asked 30:1\)", said)
    assert got, said
    assert int(got.group(1)) == expected
    assert float(got.group(2)) == pytest.approx(8 * 256 * 256 / (8 * out.stat().st_size), rel=0.01)
    assert main(["decompress", str(out), "-o", str(tmp_path / "back.png"), "--model", CODEC]) == 0
    back = np.asarray(Image.open(tmp_path / "back.png"))
    original = np.asarray(Image.open(chest_png)).astype(np.float64)
    assert back.shape == original.shape and back.dtype == np.uint8
    assert 10 * np.log10(255 ** 2 / np.mean((back - original) ** 2)) > 30


@pytest.mark.parametrize("args, says", [
    (["--ratio", "2"], r"2:1 asks for more quality than codec-chestxray's finest level, [\d.]+:1 .* compress losslessly"),
    (["--ratio", "5000"], "5000:1 is past codec-chestxray's coarsest level"),
    (["--ratio", "0.5"], r"a compression ratio is a number above 1 \(30 means 30:1\), got 0.5"),
    (["--ratio", "30", "--lossless"], "--ratio picks a lossy level: give it without --lossless"),
    (["--ratio", "30", "--quality", "3"], "--ratio picks a lossy level: give it without --quality"),
    (["--ratio", "30", "--model", None], "--ratio is a model's setting, and no model was named"),
    (["--ratio", "30", "--model", "ae-chestxray-f4c3"], "ae-chestxray-f4c3 has no measured quality levels"),
])
def test_a_ratio_it_cannot_honour_is_one_line_and_writes_nothing(chest_png, tmp_path, capsys, args, says):
    model = [CODEC]
    if "--model" in args:
        given = args[args.index("--model") + 1]
        args = args[:args.index("--model")]
        model = [] if given is None else [given]
    out = tmp_path / "x.mzc"
    assert main(["compress", *model, str(chest_png), "-o", str(out), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if not line.startswith("INFO")]) == 1, err
    assert re.search(says, err[-1]), err
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_more_stored_bits_than_it_was_trained_on_warn_with_the_measured_figures():
    from types import SimpleNamespace

    from medzoo.evaluate.files import _warn_if_jpeg2000_wins

    rows = {"RG1 CR chest": {"bits": 15, "bpp": 0.15, "psnr": 42.0, "jpeg2000_psnr": 44.0},
            "MR2": {"bits": 12, "bpp": 0.2, "psnr": 39.0, "jpeg2000_psnr": 41.5},
            "RG3 CR extremity": {"bits": 10, "bpp": 0.2, "psnr": 45.0, "jpeg2000_psnr": 44.0}}
    model = SimpleNamespace(zoo_metadata={"name": "toy-codec", "metrics": {"high_bit_depth": rows}})
    with pytest.warns(medzoo.DomainShiftWarning,
                      match=r"toy-codec was trained on 8-bit images and these store 12 bits: on MR2 \(12 bits\) it "
                            r"gave 39.00 dB .* JPEG 2000 gives 41.50 dB .*ahead on 2 of 3 .* compress losslessly"):
        _warn_if_jpeg2000_wins(model, 12)
    with pytest.warns(medzoo.DomainShiftWarning, match="on RG1 CR chest \\(15 bits\\)"):
        _warn_if_jpeg2000_wins(model, 16)  # the nearest bit depth measured where JPEG 2000 won
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_jpeg2000_wins(model, 8)  # what it was trained on
        won = {"RG3 CR extremity": rows["RG3 CR extremity"]}
        _warn_if_jpeg2000_wins(SimpleNamespace(zoo_metadata={"metrics": {"high_bit_depth": won}}), 10)
