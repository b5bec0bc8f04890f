"""Helpers shared by the test files."""
import numpy as np
import pytest

from npsenet.backend import to_numpy


def normwise_error(actual, expected):
    """max |a - b| / max |b|: the error relative to the size of the expected array (an
    exact match gives 0; NaN fails every comparison). ``expected`` may be a torch tensor."""
    a = to_numpy(actual).astype(np.float64)
    b = expected.detach().cpu().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    return float(np.max(np.abs(a - b), initial=0.0) / max(1e-300, np.max(np.abs(b), initial=0.0)))


def count(model):
    """The number of learned values of a model (buffers not counted)."""
    return sum(p.size for p in model.parameters())


def once(code_path):
    """Checks that do not depend on the code path run on the fast one only."""
    if code_path == "plain":
        pytest.skip("independent of the code path: checked on the fast path")
