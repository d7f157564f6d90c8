"""Video data: clip reader (decord), datasets (UCF-101, Kinetics-600, folders), the synthetic dataset."""

from nbp.data.config import DatasetConfig, build_dataset

__all__ = ["DatasetConfig", "build_dataset"]
