"""Data: registry of named datasets and user files, transforms, splits and fast batching."""

from vaekit.data.datasets import Dataset, DatasetEntry
from vaekit.data.registry import DATASETS, DataError, dataset_table, load_dataset
from vaekit.data.splits import MemmapSplit, Split
from vaekit.data.transforms import Transform, transform_from_dict

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "DatasetEntry",
    "MemmapSplit",
    "Split",
    "Transform",
    "dataset_table",
    "load_dataset",
    "transform_from_dict",
]
