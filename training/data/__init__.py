"""Review data: readers for every supported format, cleaning, splitting, leakage control."""

from training.data.dataset import DataSplits, build_splits, clean_text, load_examples
from training.data.readers import FORMATS, DataError, LabelSpec, ReadResult, read_file

__all__ = [
    "FORMATS",
    "DataError",
    "DataSplits",
    "LabelSpec",
    "ReadResult",
    "build_splits",
    "clean_text",
    "load_examples",
    "read_file",
]
