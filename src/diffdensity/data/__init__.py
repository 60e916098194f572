"""Datasets in data units and the transforms to model space (see :func:`load_dataset`)."""
from .datasets import DATASETS, Dataset, load_dataset
from .images import PATCH_TEST_IMAGES, PATCH_TRAIN_IMAGES
from .toy2d import TOY2D, sample_toy2d
from .transforms import Transform, dequantize, to_model_space, unit_interval_transform

__all__ = [
    "Dataset",
    "DATASETS",
    "load_dataset",
    "Transform",
    "unit_interval_transform",
    "dequantize",
    "to_model_space",
    "sample_toy2d",
    "TOY2D",
    "PATCH_TRAIN_IMAGES",
    "PATCH_TEST_IMAGES",
]
