"""One switch between NumPy (CPU) and CuPy (GPU).

Every layer asks its input which array library it belongs to::

    xp = get_array_module(x)      # numpy for a NumPy array, cupy for a CuPy array
    y = xp.maximum(x, 0)

so the same code runs on both backends; nothing else in the package imports CuPy.
Modules and arrays move between devices with ``module.to(device="gpu")`` and
:func:`to_device`. Asking for the GPU where CuPy is not installed raises an error
that names the ``gpu`` extra (``pip install "npsenet[gpu]"``).
"""
from __future__ import annotations

import numpy as np

try:  # CuPy is optional: the `gpu` extra installs it.
    import cupy as _cupy
    _cupy.cuda.runtime.getDeviceCount()  # raises where there is no usable GPU
except Exception:  # ImportError, or CuPy present without a CUDA device/driver
    _cupy = None

DEVICES = ("cpu", "gpu")


def gpu_available() -> bool:
    """True when CuPy is installed and sees a CUDA device."""
    return _cupy is not None


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy`` (DeZero's switch)."""
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return np


def normalize_device(device: str) -> str:
    """Map the accepted spellings ("cpu", "gpu", "cuda") to "cpu" or "gpu"."""
    if device is None:
        return "cpu"
    name = str(device).lower()
    if name in ("cuda", "gpu") or name.startswith("cuda:"):
        name = "gpu"
    if name not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}.")
    if name == "gpu" and _cupy is None:
        raise RuntimeError(
            "device='gpu' needs CuPy and a CUDA GPU, and CuPy could not be used here. "
            "Install the gpu extra (pip install \"npsenet[gpu]\", or the cupy-cudaXXx wheel "
            "that matches your CUDA), or use device='cpu'.")
    return name


def device_of(x) -> str:
    """'gpu' for a CuPy array, 'cpu' otherwise."""
    return "gpu" if get_array_module(x) is not np else "cpu"


def array_module_for(device: str):
    """The array library (numpy or cupy) that holds arrays of ``device``."""
    return _cupy if normalize_device(device) == "gpu" else np


def to_device(x, device: str):
    """Copy ``x`` to ``device`` ('cpu' or 'gpu'); return it unchanged when already there."""
    device = normalize_device(device)
    if device == "gpu":
        return _cupy.asarray(x)
    return to_numpy(x)


def to_numpy(x):
    """A NumPy array from a NumPy array, a CuPy array, a scalar or a CPU tensor."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy.asnumpy(x)
    return np.asarray(x)


def synchronize(device: str = "gpu") -> None:
    """Wait for queued GPU work to finish (for timing); a no-op on the CPU."""
    if device == "gpu" and _cupy is not None:
        _cupy.cuda.get_current_stream().synchronize()
