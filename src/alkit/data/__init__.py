"""Data sources: real dataset loaders, the dataset registry and imbalance protocols."""
from alkit.data.dataset import Dataset
from alkit.data.imbalance import Imbalance, apply_imbalance
from alkit.data.registry import DatasetEntry, dataset_names, describe, load_dataset, register_dataset

__all__ = ["Dataset", "DatasetEntry", "Imbalance", "apply_imbalance", "dataset_names", "describe",
           "load_dataset", "register_dataset"]
