"""Shared test set-up: deterministic, CPU-friendly, GPU tests skipped without a GPU."""

import os

import pytest
import torch

os.environ.setdefault("NBP_OFFLINE", "1")  # nothing may download during tests
# The tests use tiny tensors: a second thread only adds synchronisation, which is
# many times slower on a busy machine. Benchmarks, not tests, measure speed.
torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic dataset on disk (UCF-101 layout): 4 videos per class, 17 frames, 32 px, fps 8."""
    from nbp.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(
        tmp_path_factory.mktemp("synthetic"), videos_per_class=4, frames=17, size=32, fps=8, seed=0
    )
