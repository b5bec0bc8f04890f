"""The fast path keeps freed host memory for the next step (npsenet/nn/fast/host_memory.py;
docs/fast_path.md, design choice 11): page faults, the plain path, the opt-outs."""
import os
import platform
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the allocator setting is glibc's")

STEPS = """
import resource, numpy as np, npsenet as ns
from npsenet.nn.fast import host_memory
model = ns.models.build_model("se_resnet20")
x = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
y = np.arange(16) % 10
loss_fn = ns.nn.SoftmaxCrossEntropy()
def step():
    model.zero_grad(); loss_fn(model(x), y); model.backward(loss_fn.backward())
for _ in range(3): step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3): step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
print(host_memory._done, faults)
"""


def _run(**env):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("NPSENET_KEEP_HOST_MEMORY",
                                                          "NPSENET_FAST")}
    out = subprocess.run([sys.executable, "-c", STEPS], env={**clean, **env},
                         capture_output=True, text=True, check=True)
    done, faults = out.stdout.split()
    return done, float(faults)


@glibc
def test_the_fast_path_keeps_freed_memory_and_a_step_takes_few_page_faults():
    done, kept = _run()
    assert done == "True"
    _, fresh = _run(NPSENET_KEEP_HOST_MEMORY="0")
    assert kept < 100 < fresh, (kept, fresh)   # measured here: 4 against about 1,000


@glibc
@pytest.mark.parametrize("env", [{"NPSENET_KEEP_HOST_MEMORY": "0"},
                                 {"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"NPSENET_FAST": "0"}],
                         ids=["switched-off", "trim-set", "mmap-set", "plain-path"])
def test_the_allocator_is_left_alone_when_asked_and_on_the_plain_path(env):
    done, _ = _run(**env)
    assert done == ("None" if env.get("NPSENET_FAST") == "0" else "False")


def test_only_the_first_call_acts(monkeypatch):
    from npsenet.nn.fast import host_memory
    monkeypatch.setattr(host_memory, "_done", None)
    calls = []
    monkeypatch.setattr(host_memory, "_apply", lambda: calls.append(1) or True)
    assert host_memory.keep_freed_memory() and host_memory.keep_freed_memory()
    assert calls == [1]
