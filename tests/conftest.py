"""Shared fixtures: the backend parametrisation (every layer test runs on NumPy and, where
CuPy sees a GPU, on CuPy), the two code paths (every layer and model test module runs on
the fast and the plain path: ``pytestmark = pytest.mark.usefixtures("code_path")``), and
the real CIFAR-10 subset when it is present."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import npsenet as ns
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


@pytest.fixture(params=["fast", "plain"])
def code_path(request):
    """'fast' or 'plain': the test runs once on each code path (docs/contract.md#api)."""
    with ns.nn.fast(request.param == "fast"):
        yield request.param


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


@pytest.fixture(scope="module")
def zoo():
    """name -> the registered model with its default options, each built once per test
    module (the large ImageNet models take seconds to initialise)."""
    built = {}

    def get(name):
        if name not in built:
            built[name] = ns.models.build_model(name)
        return built[name]
    return get
