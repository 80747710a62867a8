"""Reading private/public media safely; writing Hugging Face imagefolder outputs; demo data."""

from penumbra.data.demo import DemoPrivateSet, demo_holdout_set, demo_private_set
from penumbra.data.imagefolder import read_imagefolder_metadata, write_imagefolder
from penumbra.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    ImageListing,
    ImageRecord,
    ReadReport,
    find_identical_copies,
    iter_images,
    list_image_files,
    read_image,
    scan_image_files,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "DemoPrivateSet",
    "ImageListing",
    "ImageRecord",
    "ReadReport",
    "demo_holdout_set",
    "demo_private_set",
    "find_identical_copies",
    "iter_images",
    "list_image_files",
    "read_image",
    "read_imagefolder_metadata",
    "scan_image_files",
    "write_imagefolder",
]
