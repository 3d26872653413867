"""Data: registry of named datasets, transforms, splits and fast batching."""

from vaekit.data.datasets import Dataset, Split
from vaekit.data.registry import DATASETS, DataError, load_dataset
from vaekit.data.transforms import Transform, transform_from_dict

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "Split",
    "Transform",
    "load_dataset",
    "transform_from_dict",
]
