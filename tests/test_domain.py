"""The domain check: images of another modality than a model's get a warning, its own images do not."""

import warnings

import numpy as np
import pytest

import medzoo
from medzoo.data import load_npz
from medzoo.errors import ConfigError
from medzoo.models.domain import STATISTICS, DomainProfile, image_statistics


def _smooth(n, rng, size=64):
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 6, size=(n, 1, 1))
    return 0.5 + 0.3 * np.sin(4 * xx[None] + phase) * np.cos(3 * yy[None]) + 0.01 * rng.normal(size=(n, size, size))


def test_a_profile_flags_speckled_images_against_smooth_ones_and_round_trips():
    rng = np.random.default_rng(0)
    train, val = _smooth(200, rng), _smooth(60, rng)
    speckled = _smooth(20, rng) * rng.exponential(1.0, size=(20, 64, 64))  # ultrasound-like multiplicative speckle
    assert image_statistics(train[..., None]).shape == (200, len(STATISTICS))
    profile = DomainProfile.fit(train, val, fitted_on="smooth:train")
    assert profile.unfamiliar(speckled).all()
    assert profile.unfamiliar(_smooth(40, rng)).mean() < 0.1
    again = DomainProfile.from_dict(profile.to_dict())
    np.testing.assert_allclose(again.distances(speckled), profile.distances(speckled), rtol=1e-5)
    assert DomainProfile.from_dict({**profile.to_dict(), "statistics": ["mean"]}) is None  # made by another medzoo
    with pytest.raises(ConfigError, match="more than"):
        DomainProfile.fit(train[:10], val)


def _domain_warnings(caught):
    return [w for w in caught if "look unlike this model's training data" in str(w.message)]


def test_a_zoo_model_warns_on_another_modality_not_on_its_own(data_dir):
    model = medzoo.load("vae-chestxray-f8c4", compile=False)
    assert model.domain_profile is not None and "kermany" in model.domain_profile.fitted_on
    chest = load_npz("kermany_pediatric_cxr_128", "test")[0][:6]
    brain = load_npz("brain_tumor_figshare_128", "test")[0][:6]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.reconstruct(chest, preprocess=True)
    assert not _domain_warnings(caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.encode(brain, preprocess=True)
    found = _domain_warnings(caught)
    assert len(found) == 1 and "6 of 6 image(s)" in str(found[0].message)
    assert found[0].category is medzoo.DomainShiftWarning and issubclass(medzoo.DomainShiftWarning, UserWarning)


def test_the_denoising_evaluation_does_not_flag_the_noise_it_adds(data_dir):
    model = medzoo.load("ae-chestxray-f4c3", compile=False)
    chest = model.preprocess(load_npz("kermany_pediatric_cxr_128", "test")[0][:8])
    noisy = np.clip(chest + np.random.default_rng(0).normal(0, 0.2, chest.shape), 0, 1).astype("float32")
    with pytest.warns(medzoo.DomainShiftWarning, match="look unlike"):  # noisy images do look unlike the data
        model.reconstruct(noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = medzoo.evaluate.denoise(model, images=chest, sigmas=(0.2,), classical=())
    assert not _domain_warnings(caught)
    assert result.rows[-1]["method"] == "ae-chestxray-f4c3" and result.rows[-1]["psnr"] > result.rows[0]["psnr"]


def test_reconstructing_files_counts_every_input_and_names_the_unlike_ones(data_dir, tmp_path):
    """Files go through an any-size model one by one; the warning counts them all and names the flagged ones."""
    from PIL import Image

    model = medzoo.load("vae-chestxray-f8c4", compile=False)
    chest = load_npz("kermany_pediatric_cxr_128", "test")[0][:2]
    brain = load_npz("brain_tumor_figshare_128", "test")[0][:1]
    files = []
    for name, image in (("chest_a.png", chest[0]), ("brain.png", brain[0]), ("chest_b.png", chest[1])):
        Image.fromarray(image).save(tmp_path / name)
        files.append(tmp_path / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        medzoo.evaluate.reconstruct_files(model, files, tmp_path / "out")
    found = _domain_warnings(caught)
    assert len(found) == 1, [str(w.message) for w in found]
    message = str(found[0].message)
    assert message.startswith("1 of 3 input(s)") and "brain.png" in message and "chest_a" not in message
