"""npsenet: Squeeze-and-Excitation Networks from scratch in NumPy (and CuPy on a GPU).

    import npsenet as ns
    model = ns.models.se_resnet20()
    logits = model(x)                      # forward, caching what backward needs
    loss_fn = ns.nn.SoftmaxCrossEntropy()
    loss = loss_fn(logits, labels)
    model.backward(loss_fn.backward())     # hand-written backward through every layer
"""
from . import backend, nn
from . import optim
from . import models, io
from . import data
from .init import manual_seed

__version__ = "0.1.0"

__all__ = ["backend", "nn", "models", "io", "manual_seed", "__version__"]
