"""Shared fixtures: the backend parametrisation (every layer test runs on NumPy and, where
CuPy sees a GPU, on CuPy), and the real CIFAR-10 subset when it is present."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from npsenet import backend

REPO = Path(__file__).resolve().parents[1]
CIFAR_SUBSET = Path(os.environ.get("NPSENET_CIFAR_SUBSET",
                                   REPO.parent / "shared" / "data" / "cifar10-subset"))

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.skipif(
    not backend.gpu_available(), reason="CuPy with a CUDA GPU is not available"))]


@pytest.fixture(params=DEVICES)
def device(request):
    """'cpu' or 'gpu': run the test once per available backend."""
    return request.param


@pytest.fixture
def xp(device):
    """The array module of the backend under test (numpy or cupy)."""
    return backend.array_module_for(device)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def cifar_subset_root():
    """The folder holding cifar-10-batches-py/ (4,660 train, 466 test images); skip if absent."""
    if not (CIFAR_SUBSET / "cifar-10-batches-py" / "data_batch_1").exists():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR_SUBSET}")
    return CIFAR_SUBSET
