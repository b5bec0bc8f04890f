"""Helpers shared by the test files."""
import time
import tracemalloc

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


def raises_with_peak_memory(error_type, function):
    """(pytest's ExceptionInfo of the ``error_type`` that ``function()`` raised, the peak of
    memory traced while it ran): a hostile file must be refused before it is allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(error_type) as info:
            function()
        return info, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def wait_for_file(proc, path, timeout):
    """Wait until ``path`` exists while ``proc`` (a Popen) runs; fail if it ends first or
    ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path.name} did not appear in {timeout} s"
        time.sleep(0.02)
