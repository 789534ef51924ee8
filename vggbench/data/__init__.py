"""Datasets: what a run trains and tests on, decoded once into uint8 tensors.

  spec.py       DataSpec, ImageData, DataError and the split helpers every source shares
  registry.py   the table of datasets (DATASETS) and load_data
  sources.py    real datasets: hub ids, parquet, CIFAR pickles, Tiny ImageNet, image folders; the cache
  synthetic.py  the embedded default dataset
"""
from .registry import DATASETS, fingerprint, load_data, resident_bytes
from .spec import (DataError, DataSpec, ImageData, apply_subsets, channel_stats, pixel_pca, split_off,
                   stratified_subset)

__all__ = ["DATASETS", "DataError", "DataSpec", "ImageData", "apply_subsets", "channel_stats", "fingerprint", "load_data",
           "pixel_pca", "resident_bytes",
           "split_off", "stratified_subset"]
