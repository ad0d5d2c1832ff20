"""Data input: DICOM and image readers, preprocessing to model inputs, and tf.data datasets.

This package only depends on :mod:`medzoo.errors`; models, the zoo and recipes
build on it, never the other way round.
"""

from medzoo.data.datasets import (
    DATA_DIR_ENV,
    KNOWN_FILES,
    DirectoryDataset,
    RemoteFile,
    SkippedFile,
    from_arrays,
    from_directory,
    load_masks,
    load_npz,
    load_pixel_spacing,
    resolve_npz,
)
from medzoo.data.folder_sets import NATIVE_SETS, load_dataset
from medzoo.data.dicom import is_dicom, read_dicom, read_dicom_header
from medzoo.data.images import (
    ImageInfo,
    ImageRef,
    image_files,
    iter_images,
    probe_image,
    read_image,
    read_images,
    read_stored_pixels,
)
from medzoo.data.preprocess import MIN_IMAGE_SIZE, PreprocessSpec, to_display, to_uint8
from medzoo.data.samples import SAMPLE_SETS, SAMPLES_DIR, fetal_head_samples, sample_files, sample_images, sample_manifest

__all__ = [
    "DATA_DIR_ENV",
    "KNOWN_FILES",
    "NATIVE_SETS",
    "MIN_IMAGE_SIZE",
    "SAMPLES_DIR",
    "SAMPLE_SETS",
    "DirectoryDataset",
    "ImageInfo",
    "ImageRef",
    "PreprocessSpec",
    "RemoteFile",
    "SkippedFile",
    "fetal_head_samples",
    "from_arrays",
    "from_directory",
    "image_files",
    "iter_images",
    "is_dicom",
    "load_dataset",
    "load_masks",
    "load_npz",
    "load_pixel_spacing",
    "probe_image",
    "read_dicom",
    "read_dicom_header",
    "read_image",
    "read_stored_pixels",
    "read_images",
    "resolve_npz",
    "sample_files",
    "sample_images",
    "sample_manifest",
    "to_display",
    "to_uint8",
]
