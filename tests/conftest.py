"""Shared test set-up: deterministic, CPU-friendly, GPU tests skipped without a GPU."""

import os

import pytest
import torch

os.environ.setdefault("NBP_OFFLINE", "1")  # nothing may download during tests
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none is available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
