"""One switch between NumPy (CPU) and CuPy (GPU).

Every layer asks its input which array library it belongs to::

    xp = get_array_module(x)      # numpy for a NumPy array, cupy for a CuPy array
    y = xp.maximum(x, 0)

so the same code runs on both backends; nothing else in the package imports CuPy.
Modules and arrays move between devices with ``module.to(device="gpu")`` and
:func:`to_device`. Asking for the GPU where CuPy cannot be used raises an error that
says why: CuPy is not installed (then it names the extra for the CUDA version of the
installed driver, ``gpu-cuda12`` or ``gpu-cuda13``), or CuPy sees no GPU.
"""
from __future__ import annotations

import ctypes

import numpy as np

_CUPY_PROBLEM = None  # why CuPy cannot be used: "missing", or CuPy's own error
try:  # CuPy is optional: the gpu-cuda12 / gpu-cuda13 extras install it.
    import cupy as _cupy
    _cupy.cuda.runtime.getDeviceCount()  # raises where there is no usable GPU
except ImportError:
    _cupy, _CUPY_PROBLEM = None, "missing"
except Exception as error:  # CuPy present, but no CUDA device or driver
    _cupy, _CUPY_PROBLEM = None, f"{type(error).__name__}: {error}"

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
        raise RuntimeError(gpu_unavailable_message())
    return name


def cuda_driver_version():
    """The CUDA version the installed NVIDIA driver supports, as (major, minor), or None
    when there is no driver (asked from ``libcuda`` directly, so CuPy is not needed; the
    same figure ``nvidia-smi`` prints top right)."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return version.value // 1000, version.value % 1000 // 10


def gpu_unavailable_message():
    """One line saying why ``device='gpu'`` cannot be used here and what to try."""
    if _CUPY_PROBLEM not in (None, "missing"):
        return (f"device='gpu' needs a CUDA GPU, and CuPy is installed but cannot use one "
                f"({_CUPY_PROBLEM}). Check that nvidia-smi lists the GPU and that the "
                "cupy-cuda12x or cupy-cuda13x wheel matches the CUDA version it shows, or "
                "use device='cpu'.")
    driver = cuda_driver_version()
    if driver is None:
        return ("device='gpu' needs CuPy and an NVIDIA GPU: CuPy is not installed and no "
                "NVIDIA driver was found. On a GPU machine, from a clone of the repository "
                "(npsenet is not on PyPI yet), run pip install -e \".[gpu-cuda12]\" or "
                "\".[gpu-cuda13]\", the one for the CUDA version nvidia-smi shows top right "
                "(or pip install cupy-cuda12x / cupy-cuda13x directly); or use device='cpu'.")
    extra = "gpu-cuda13" if driver[0] >= 13 else "gpu-cuda12"
    return (f"device='gpu' needs CuPy, which is not installed. The driver supports CUDA "
            f"{driver[0]}.{driver[1]}, so from a clone of the repository (npsenet is not on "
            f"PyPI yet) run pip install -e \".[{extra}]\" (or pip install "
            f"{extra.replace('gpu-', 'cupy-')}x directly); or use device='cpu'.")

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
