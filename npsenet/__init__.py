"""npsenet: Squeeze-and-Excitation Networks from scratch in NumPy (and CuPy on a GPU).

    import npsenet as ns
    model = ns.models.se_resnet20()
    logits = model(x)                      # forward, caching what backward needs
    loss_fn = ns.nn.SoftmaxCrossEntropy()
    loss = loss_fn(logits, labels)
    model.backward(loss_fn.backward())     # hand-written backward through every layer
"""
from . import backend, data, gradcheck, io, models, nn, optim
from .init import manual_seed
from .nn import no_grad
from .summary import summary

__version__ = "0.1.0"

__all__ = ["backend", "data", "gradcheck", "io", "models", "nn", "optim", "manual_seed", "no_grad", "summary",
           "__version__"]
