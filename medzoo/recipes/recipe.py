"""A declarative training recipe: everything needed to reproduce one zoo entry."""

from __future__ import annotations

import dataclasses
from typing import Any

from medzoo.errors import ConfigError
from medzoo.models import FAMILIES

#: Where each training dataset comes from, copied into every preset it trains.
DATASETS: dict[str, dict[str, Any]] = {
    "kermany_pediatric_cxr_128": {
        "description": "5,856 pediatric chest X-rays (anterior-posterior, ages 1-5, Guangzhou Women and "
                       "Children's Medical Center), grey, 128x128, split by patient (train 4,757 / val 586 / "
                       "test 513); labels 0 = normal, 1 = pneumonia",
        "licence": "CC-BY-4.0",
        "citation": "Kermany D.S. et al., Identifying Medical Diagnoses and Treatable Diseases by Image-Based "
                    "Deep Learning, Cell 172(5):1122-1131 (2018), doi:10.1016/j.cell.2018.02.010; data: "
                    "Mendeley Data v2, doi:10.17632/rscbjbr9sj.2",
        "sha256": "a2832bde3f9a0e5929796c539b8c4e85578470e21832ff846ac0fc53ea4873f5",
    },
    "busbra_256": {
        "description": "BUS-BRA breast ultrasound: 1,875 images of 1,064 patients from 4 scanners with lesion masks, "
                       "grey, padded to square and resized to 256x256, patient-disjoint split (train 1,492 / val 196 "
                       "/ test 187); labels 0 = benign, 1 = malignant (biopsy-proven); keys also masks, case, "
                       "birads, device",
        "licence": "BUS-BRA dataset licence (MIT-style; every use must cite the article)",
        "citation": "Gomez-Flores W., Gregorio-Calas M.J., de Albuquerque Pereira W.C., BUS-BRA: A Breast Ultrasound "
                    "Dataset for Assessing Computer-aided Diagnosis Systems, Medical Physics (2024), "
                    "doi:10.1002/mp.16812; data: Zenodo doi:10.5281/zenodo.8231412",
        "sha256": "7f16640cd0d615baa633e30edfbda20c0e311f91324d8d59a007a701ac876216",
        "pixel_spacing_mm": None,
    },
    "brain_tumor_figshare_128": {
        "description": "Figshare brain tumour MRI: 3,064 T1-weighted contrast-enhanced slices of 233 patients with "
                       "tumour masks, 128x128, each slice min-max scaled by the source; split in contiguous "
                       "per-class blocks (train 2,451 / val 306 / test 307); labels 0 = meningioma, 1 = glioma, "
                       "2 = pituitary tumour",
        "licence": "CC-BY-4.0",
        "citation": "Cheng J., brain tumor dataset, figshare (2017), doi:10.6084/m9.figshare.1512427.v5; Cheng J. et "
                    "al., PLoS ONE 10(10):e0140381 (2015)",
        "sha256": "c9fe81a68ead189a85ae6dd34465188a86fc8f15831e1636602a768e5b733dc3",
        "pixel_spacing_mm": None,
    },
    "hc18_256": {
        "description": "HC18 fetal head ultrasound: 999 images with head masks split by subject (train 796 / val 100 "
                       "/ test 103) plus 335 unlabelled, padded to square and resized to 256x256; per image the "
                       "source pixel size and the reference head circumference in mm "
                       "(*_pixel_size_mm_and_hc_mm; on the 256 px grid the spacing is "
                       "pixel_size_mm * max(original_hw) / 256)",
        "licence": "CC-BY-4.0",
        "citation": "van den Heuvel T.L.A., de Bruijn D., de Korte C.L., van Ginneken B., Automated measurement of "
                    "fetal head circumference using 2D ultrasound images, PLoS ONE 13(8):e0200412 (2018); data: "
                    "Zenodo doi:10.5281/zenodo.1322001",
        "sha256": "e88cf2ed1c3a2d0fd52b6282f15cc022ae1b64ee1c3e1f138c02a2a4adf97587",
        "pixel_spacing_mm": "per image (see description)",
    },
    "cxr_hannover_1024": {
        "description": "82 adult frontal chest radiographs (CR 56, DX 26; AP 45, PA 37) of the Hannover Medical "
                       "School COVID-19 image repository, 8-bit grey, area-averaged from 2000 to 1024x1024 px, split "
                       "by patient (train 46 / val 26 / test 10); a folder with splits.csv (native/)",
        "licence": "CC-BY-3.0",
        "citation": "COVID-19 Image Repository, Hannover Medical School, doi:10.6084/m9.figshare.12275009 (Winther "
                    "H.B. et al.); Cohen J.P. et al., COVID-19 Image Data Collection: Prospective Predictions Are the "
                    "Future, arXiv:2006.11988 (2020)",
        "pixel_spacing_mm": None,
    },
    "ct_tcia_512": {
        "description": "133 axial CT slices (chest and upper abdomen) of TCIA's TCGA collections and LIDC-IDRI, "
                       "512x512, Hounsfield units (stored as uint16 HU + 32768), split by patient (train 99 / val 12 "
                       "/ test 22); a folder with splits.csv (native/)",
        "licence": "CC-BY-3.0",
        "citation": "Clark K. et al., The Cancer Imaging Archive (TCIA), J Digit Imaging 26(6):1045-1057 (2013); "
                    "Armato S.G. III et al., Med Phys 38(2):915-931 (2011), doi:10.7937/K9/TCIA.2015.LO9QL9SX "
                    "(LIDC-IDRI)",
        "pixel_spacing_mm": "0.64-0.98 per slice (slice_meta.csv)",
    },
    "kermany_pediatric_cxr_64": {
        "description": "the same 5,856 pediatric chest X-rays at 64x64",
        "licence": "CC-BY-4.0",
        "citation": "Kermany D.S. et al., Cell 172(5):1122-1131 (2018), doi:10.1016/j.cell.2018.02.010",
        "sha256": "b4c2b65d2bf2caa0d73f66ae53d02ca9104ce9666f0416032291cac9bb111071",
    },
}

#: The input contract of the chest X-ray models: any grey or RGB image, squashed to
#: 128x128 like the training data (whose source JPEGs were resized without keeping
#: the aspect ratio) and min-max normalised per image to [0, 1].
CXR_SPEC = {"size": [128, 128], "channels": 1, "resize": "stretch", "normalize": "minmax"}

#: The input contract of the any-size models: native resolution, grey, min-max
#: normalised per image to [0, 1] like the fixed-size models.
NATIVE_SPEC = {"size": None, "channels": 1, "normalize": "minmax"}
NATIVE_CXR_SPEC = NATIVE_SPEC

#: CT in Hounsfield units: the full range a 12-bit scanner stores (-1024 to 3071 HU) mapped
#: linearly to [0, 1], the same for every slice, so any window can be applied afterwards and
#: an error in [0, 1] is an error of 4095 HU times as much. Air padding below -1024 is clipped.
HU_RANGE = (-1024.0, 3071.0)
CT_SPEC = {"size": None, "channels": 1, "normalize": "fixed", "input_range": list(HU_RANGE), "units": "HU"}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one zoo model is trained.

    Args:
        name: the zoo name the recipe produces.
        family: a key of ``medzoo.models.FAMILIES`` (``"autoencoder"``, ``"vae"``, ``"segmenter"``, ...).
        model: keyword arguments of the family's class (``input_shape`` comes from ``spec``).
        description: one line for the zoo listing.
        dataset: an npz or folder dataset understood by :func:`medzoo.data.load_dataset`, or a
            list of them: a mixture, sampled in equal shares per epoch (a generalist model)
            unless ``dataset_weights`` says otherwise.
        dataset_weights: a mixture's share of each dataset per epoch (None: equal shares),
            e.g. to oversample a small native-resolution set.
        spec: a :class:`~medzoo.data.PreprocessSpec` config; the model's input contract.
        classes: keep only images with these labels (e.g. ``[0]``: normal images only).
        max_images: use at most this many images per split (quick runs and tests).
        max_train_images: use at most this many training images per dataset, a random subset fixed by
            ``seed`` (validation and test splits whole): a run on a machine that the whole training set
            cannot travel to (an accelerator lent with a transfer limit) records the subset it saw.
        augment: ``{"translate": fraction}`` random shifts of the training images.
        crop_size: train on one random ``crop_size`` square crop per image and epoch
            (any-size models); validation and test use whole images.
        crops_per_image: crops of every training image per epoch (so an epoch on a fast
            accelerator is long enough to amortise its validation pass).
        min_side: crops at random scales: each is area-averaged by a factor drawn between 1
            (native resolution) and the one that shrinks its image to ``min_side`` px, the
            smallest image size the model is meant for (None: native scale only).
        learning_rate: peak learning rate of Adam, cosine-decayed to zero over the run.
        warmup_steps: optimizer steps of linear warm-up to ``learning_rate`` (0: none).
        batch_size: images per replica per step (the global batch scales with replicas).
        epochs: epochs to train.
        early_stopping_patience: epochs without a better ``val_loss`` before stopping (0: off).
        kl_warmup_epochs: VAE only: epochs over which beta rises from 0 (0: off).
        seed: seeds weights, shuffling, noise and sampling.
        weights_dtype: ``"float32"`` or ``"float16"`` storage of the preset's weights.
        encoder: segmenter only: the zoo model (name or preset path) whose encoder starts
            the network; None trains the same architecture from random weights.
        label_fraction: segmenter only: the share of training masks used (label efficiency).
        inference_tile: ``[tile, overlap]`` in pixels: reconstruct and encode images of more than
            four tiles' pixels in overlapping tiles of this size (any-size models). A model trained on
            small crops of large images normalises (GroupNorm) over what a crop holds; tiles of about
            the crop's size keep those statistics at inference (None: 512 px tiles above 1024 x 1024).
        init_from: a zoo model (name or preset path) of the same architecture whose weights
            start the run: fine-tuning, e.g. with another loss or on other data; or a finished
            run directory, continued as a further stage. Its training record is kept in the
            new preset's metadata.
    """

    name: str
    family: str
    model: dict
    description: str = ""
    dataset: str | list = "kermany_pediatric_cxr_128"
    dataset_weights: list | None = None
    spec: dict = dataclasses.field(default_factory=lambda: dict(CXR_SPEC))
    classes: list | None = None
    max_images: int | None = None
    max_train_images: int | None = None
    augment: dict = dataclasses.field(default_factory=dict)
    crop_size: int | None = None
    crops_per_image: int = 1
    min_side: int | None = None
    learning_rate: float = 2e-3
    warmup_steps: int = 0
    batch_size: int = 32
    epochs: int = 25
    early_stopping_patience: int = 6
    kl_warmup_epochs: int = 0
    seed: int = 0
    weights_dtype: str = "float32"
    encoder: str | None = None
    label_fraction: float = 1.0
    init_from: str | None = None
    inference_tile: list | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ConfigError(f"recipe {self.name!r}: family must be one of {sorted(FAMILIES)}, got {self.family!r}")
        if self.max_train_images is not None and (isinstance(self.max_train_images, bool) or
                                                  not isinstance(self.max_train_images, int) or
                                                  self.max_train_images < 1):
            raise ConfigError(f"recipe {self.name!r}: max_train_images must be a positive integer, got "
                              f"{self.max_train_images!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError(f"recipe {self.name!r}: batch_size and epochs must be >= 1")
        if self.crops_per_image < 1 or self.warmup_steps < 0:
            raise ConfigError(f"recipe {self.name!r}: crops_per_image must be >= 1 and warmup_steps >= 0")
        if isinstance(self.dataset, (list, tuple)):
            if not self.dataset or self.crop_size is None:
                raise ConfigError(f"recipe {self.name!r}: a mixture of datasets needs at least one dataset and "
                                  "crop_size (its images differ in size)")
            object.__setattr__(self, "dataset", list(self.dataset))
        if self.dataset_weights is not None and (not isinstance(self.dataset, list) or
                                                 len(self.dataset_weights) != len(self.dataset) or
                                                 min(self.dataset_weights) < 0 or sum(self.dataset_weights) <= 0):
            raise ConfigError(f"recipe {self.name!r}: dataset_weights must be one non-negative share per dataset of "
                              f"a mixture, got {self.dataset_weights!r}")
        if self.min_side is not None and (self.crop_size is None or self.min_side < self.crop_size):
            raise ConfigError(f"recipe {self.name!r}: min_side ({self.min_side}) scales crops: it needs crop_size "
                              "and must be at least crop_size")
        if self.family != "segmenter" and (self.encoder is not None or self.label_fraction != 1.0):
            raise ConfigError(f"recipe {self.name!r}: encoder and label_fraction belong to segmenter recipes")
        if self.init_from is not None and self.encoder is not None:
            raise ConfigError(f"recipe {self.name!r}: init_from and encoder both choose the starting weights; "
                              "give one")
        if self.inference_tile is not None:
            tile = self.inference_tile
            if not isinstance(tile, (list, tuple)) or len(tile) != 2 or \
                    not all(isinstance(v, int) and not isinstance(v, bool) for v in tile) or not 0 <= tile[1] < tile[0]:
                raise ConfigError(f"recipe {self.name!r}: inference_tile is [tile, overlap] in pixels with 0 <= "
                                  f"overlap < tile, got {tile!r}")
            object.__setattr__(self, "inference_tile", [int(v) for v in tile])
        if not 0.0 < float(self.label_fraction) <= 1.0:
            raise ConfigError(f"recipe {self.name!r}: label_fraction must be in (0, 1], got {self.label_fraction}")
        unknown = set(self.augment) - {"translate"}
        if unknown:
            raise ConfigError(f"recipe {self.name!r}: unknown augmentation {sorted(unknown)}; known: ['translate']")

    def with_overrides(self, **overrides) -> "Recipe":
        """A copy with fields replaced; ``model`` and ``spec`` dicts are merged key by key."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - fields
        if unknown:
            raise ConfigError(f"unknown recipe fields {sorted(unknown)}; known: {sorted(fields)}")
        for key in ("model", "spec"):
            if key in overrides:
                overrides[key] = {**getattr(self, key), **overrides[key]}
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def datasets(self) -> list[str]:
        """The dataset names: one, or the members of a mixture."""
        return list(self.dataset) if isinstance(self.dataset, list) else [self.dataset]

    @property
    def provenance(self) -> dict:
        """The dataset's licence and citation (empty fields for a dataset medzoo does not know).

        A mixture lists its members under ``components`` and joins their licences and citations.
        """
        parts = [dataset_provenance(name) for name in self.datasets]
        if len(parts) == 1:
            return parts[0]
        return {"name": " + ".join(p["name"] for p in parts),
                "description": f"a mixture of {len(parts)} datasets, sampled "
                               + ("in equal shares per epoch" if self.dataset_weights is None else
                                  "in shares " + " / ".join(f"{w / sum(self.dataset_weights):.2f}"
                                                            for w in self.dataset_weights) + " per epoch"),
                "licence": "; ".join(dict.fromkeys(p["licence"] for p in parts)),
                "citation": "; ".join(p["citation"] for p in parts),
                "components": parts}


def dataset_provenance(name: str) -> dict:
    """One dataset's entry in :data:`DATASETS` with its name (placeholders for an unknown dataset)."""
    info = DATASETS.get(name, {"description": name, "licence": "unknown", "citation": ""})
    return {"name": name, **info}
