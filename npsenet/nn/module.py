"""Parameter, Module and Sequential: the containers every layer is built from.

A :class:`Module` has a ``forward`` that computes its output and caches what its
``backward`` needs, and a ``backward`` that takes dL/d(output) and returns
dL/d(input), adding the gradients of its own parameters into ``param.grad``.
Backward never updates weights: that is the optimizer's job (``ns.optim.SGD``).

Sub-modules, parameters and buffers (running statistics) are registered when they
are assigned as attributes, in the order of assignment, exactly like PyTorch, so
``state_dict()`` keys read ``layer1.0.conv1.weight`` and match torchvision's.

Nothing is half-updated after an error: the outermost ``forward`` or ``backward`` call
(a model's, or a lone layer's) remembers what each of its modules holds (running
statistics, caches, ``gate_values``, every attribute, the state of a random generator kept
as ``self.generator``) and each parameter's ``grad``; if the call raises, anything it
changed is put back, so the module is exactly as before the call. Remembering costs one
shallow copy of each module's attributes (references, no array is copied), so a module
must change a buffer or a gradient by assigning a new array (``self.running_mean =
...``), never in place.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import numpy as np

from ..backend import array_module_for, device_of, normalize_device, to_device, to_numpy
from ._checks import check_dout

_grad_mode = threading.local()   # .enabled: False inside no_grad, per thread (as PyTorch's)
_calls = threading.local()       # .active: inside a guarded forward/backward of this thread


def _restoring_on_error(method):
    """Wrap a ``forward`` or ``backward``: the outermost such call of the thread takes a
    :meth:`Module._snapshot` and, if it raises (any exception, Ctrl-C included), restores
    it before the exception goes on. Calls nested in it run as they are."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if getattr(_calls, "active", False):
            return method(self, *args, **kwargs)
        snapshot = self._snapshot()
        _calls.active = True
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self._restore(snapshot)
            raise
        finally:
            _calls.active = False

    guarded._restores_on_error = True
    return guarded


class no_grad:
    """Run forward passes without keeping what backward would need, like ``torch.no_grad()``.

        with ns.no_grad():
            logits = model(x)        # evaluation: less memory, a little faster

    Inside the block, layers store no cache (assignments to ``self.cache`` are dropped), so
    calling ``backward`` afterwards raises an error that says so.

    The mode belongs to the thread that enters the block (as in PyTorch): a forward in
    another thread, say a simulated rank of ``npsenet.distributed.ThreadGroup``, still
    keeps its cache.
    """

    def __enter__(self):
        self._previous, _grad_mode.enabled = is_grad_enabled(), False
        return self

    def __exit__(self, *exc):
        _grad_mode.enabled = self._previous
        return False


def is_grad_enabled() -> bool:
    """False inside ``with ns.no_grad():`` (in this thread)."""
    return getattr(_grad_mode, "enabled", True)


class Parameter:
    """A learnable array and its gradient.

    Attributes:
        data: the values, an array of the active backend (NumPy or CuPy).
        grad: dL/d(data) accumulated by backward passes (same shape and dtype), or
            ``None`` until the first backward after ``zero_grad()``.
    """

    def __init__(self, data):
        self.data = data
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def accumulate_grad(self, g):
        """``grad += g``, as PyTorch accumulates; ``g`` must be freshly computed.

        The sum is a new array (not an in-place ``+=``), so a backward that fails later
        can put the previous ``grad`` back (see the module docstring)."""
        if self.grad is None:
            self.grad = g
        else:
            self.grad = self.grad + g

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and model.

    Subclasses implement ``forward(*inputs)`` and ``backward(dout)``. Calling the
    module (``layer(x)``) runs ``forward``. Both are wrapped when the subclass is
    defined so that the outermost call restores the module if it raises.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("forward", "backward"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_restores_on_error", False):
                setattr(cls, name, _restoring_on_error(method))

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ---------------------------------------------------------
    def __setattr__(self, name, value):
        if name == "cache" and not is_grad_enabled():
            value = None  # under no_grad(): keep nothing for a backward pass
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                f"assigning attributes (it assigned {name!r} first).")
        if isinstance(value, (Parameter, Module)) or name in self._parameters \
                or name in self._modules:
            # (re)assigning a parameter or sub-module; assigning an array to a buffer's
            # name keeps it a buffer, as in PyTorch
            for table in (self._parameters, self._buffers, self._modules):
                table.pop(name, None)
            if isinstance(value, Parameter):
                self._parameters[name] = value
            elif isinstance(value, Module):
                self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """A state array that is saved in the state_dict but not learned (e.g. BN running mean).

        Update it by assigning a new array (``self.name = new``), not in place: a state_dict
        taken earlier keeps its values, and a failed call can restore the old one."""
        self._buffers[name] = None
        object.__setattr__(self, name, array)

    # -- the interface layers implement --------------------------------------------
    def forward(self, *inputs):
        raise TypeError(f"{type(self).__name__} is a Module without a forward(); "
                        "a layer must define forward(self, x).")

    def backward(self, dout):
        raise TypeError(f"{type(self).__name__} is a Module without a backward(); "
                        "a layer must define backward(self, dout) returning dL/dx.")

    def __call__(self, *inputs):
        return self.forward(*inputs)

    # -- traversal --------------------------------------------------------------------
    def named_modules(self, prefix=""):
        """Yield ``(name, module)`` for this module and every sub-module, depth first."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        """Yield ``(name, Parameter)`` with dotted names, e.g. ``layer1.0.conv1.weight``."""
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for mod_name, mod in self.named_modules(prefix):
            for name in mod._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(mod, name)

    # -- modes and gradients ------------------------------------------------------------
    def train(self, mode: bool = True):
        """Training mode (BatchNorm uses batch statistics). Returns the module."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Evaluation mode (BatchNorm uses its running statistics). Returns the module."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True):
        """Forget accumulated gradients (``grad = None``, PyTorch's default)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    # -- state ---------------------------------------------------------------------------
    def state_dict(self):
        """An ordered ``{name: array}`` of parameters and buffers (torchvision's keys).

        The arrays are the module's own (not copies), on the module's device, as
        PyTorch's ``state_dict`` returns tensors that share storage.
        """
        state = OrderedDict()
        for mod_name, mod in self.named_modules():
            dot = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                state[dot + name] = p.data
            for name in mod._buffers:
                state[dot + name] = getattr(mod, name)
        return state

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays from ``state`` (NumPy arrays, CuPy arrays or CPU torch tensors).

        Every key, shape and dtype kind is checked, and every array converted, before
        anything is written, so an error leaves the module as it was. Values are cast to each target's dtype and device.
        Returns ``(missing_keys, unexpected_keys)`` (both empty when ``strict``).
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(
                "load_state_dict: the keys do not match this model.\n"
                f"  missing (model has, state lacks): {_first(missing)}\n"
                f"  unexpected (state has, model lacks): {_first(unexpected)}\n"
                "Check that the state_dict was saved from the same architecture and options, "
                "or pass strict=False to load the keys that match.")
        staged = {}
        for key, target in own.items():
            if key not in state:
                continue
            value = _as_array(state[key])
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise ValueError(f"load_state_dict: {key} is a {type(value).__name__} in the "
                                 "state_dict, not an array; was it saved with state_dict()?")
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"load_state_dict: {key} has shape {tuple(value.shape)} in the state_dict "
                    f"but {tuple(target.shape)} in the model. Was the model built with the "
                    "same depth, width, reduction and num_classes?")
            kind = np.dtype(value.dtype).kind
            wanted = np.dtype(target.dtype).kind
            if kind not in "fiub" or (wanted == "f") != (kind == "f"):
                raise ValueError(
                    f"load_state_dict: {key} has dtype {value.dtype} in the state_dict but "
                    f"{target.dtype} in the model; expected "
                    f"{'a floating' if wanted == 'f' else 'an integer'} array. Was it saved "
                    "with state_dict()?")
            staged[key] = value
        # every array is converted (cast, copied, moved) before any is assigned, so an
        # error here (out of memory, say) also leaves the module as it was
        device = device_of(next(iter(own.values()))) if own else "cpu"
        staged = {key: to_device(to_numpy(value).astype(own[key].dtype, copy=True), device)
                  for key, value in staged.items()}
        for mod_name, mod in self.named_modules():
            dot = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                if dot + name in staged:
                    p.data = staged[dot + name]
            for name in mod._buffers:
                if dot + name in staged:
                    object.__setattr__(mod, name, staged[dot + name])
        return missing, unexpected

    def to(self, device=None, dtype=None):
        """Move parameters and buffers to ``device`` ('cpu' or 'gpu') and/or cast the
        floating ones to ``dtype``. Gradients are dropped. Returns the module, so
        ``model = se_resnet20().to(dtype=np.float64)`` works."""
        if device is not None:
            device = normalize_device(device)
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype.kind != "f":
                raise ValueError(f"to(dtype=...) expects a floating dtype such as np.float32 "
                                 f"or np.float64, got {dtype}.")

        def convert(a):
            if device is not None:
                a = to_device(a, device)
            if dtype is not None and a.dtype.kind == "f":
                a = a.astype(dtype, copy=False)
            return a

        for mod in self.modules():
            for p in mod._parameters.values():
                p.data = convert(p.data)
                p.grad = None
            for name in mod._buffers:
                object.__setattr__(mod, name, convert(getattr(mod, name)))
            mod.release_cache()
        return self

    def _snapshot(self):
        """What a failed call must put back: each module's attributes (a shallow copy) and
        each parameter's ``data`` and ``grad`` (references; nothing is copied)."""
        modules = [self]                 # self.modules(), without building the names
        i = 0
        while i < len(modules):
            modules.extend(modules[i]._modules.values())
            i += 1
        attributes = [(m, dict(m.__dict__)) for m in modules]
        # a random generator (Dropout's self.generator) advances in place: keep its state
        generators = [(g, g.bit_generator.state) for g in
                      (d.get("generator") for _, d in attributes)
                      if isinstance(g, np.random.Generator)]
        return (attributes, generators,
                [(p, p.data, p.grad) for m in modules for p in m._parameters.values()],
                _workspace().returned_state() if _fast_path_on() else None)

    def _restore(self, snapshot):
        """Put back a :meth:`_snapshot`: the module is exactly as when it was taken."""
        modules, generators, parameters, returned = snapshot
        # the fast path's reused memory: what a failed backward gave back belongs to the
        # restored caches again, so no later forward may borrow it
        if returned is not None:
            _workspace().restore_returned(returned)
        for m, attributes in modules:
            m.__dict__.clear()
            m.__dict__.update(attributes)
        for g, state in generators:
            g.bit_generator.state = state
        for p, data, grad in parameters:
            p.data, p.grad = data, grad

    def saved_cache(self):
        """What the last forward stored for backward (``self.cache``); an error if nothing is.

        Backward reads it, checks ``dout``, then calls :meth:`release_cache`: it frees the
        cache as PyTorch frees its graph, so between steps only the parameters stay in memory
        (and, on the fast path, the memory it reuses, ``nn/fast/workspace.py``), and a rejected
        ``dout`` leaves the cache in place for a corrected call.
        """
        cache = self.__dict__.get("cache")
        if cache is None:
            raise ValueError(
                f"{type(self).__name__}.backward was called before forward: nothing is cached. "
                "Run forward first; backward releases the cache, so each backward needs its "
                "own forward (and a forward under ns.no_grad(), or a .to() call, keeps nothing).")
        return cache

    def keep(self, path, cache, output):
        """Forward's last step in a layer: keep what its backward needs, the path that ran
        (:func:`npsenet.nn.switch.active_path`), that path's cache, and the output's shape
        and dtype, which dout must match. Returns ``output``."""
        self.cache = (path, cache, output.shape, output.dtype)
        return output

    def kept(self, dout):
        """Backward's first step in a layer: the (path, cache) its forward kept, after
        checking that ``dout`` has the output's shape and dtype; releases the cache."""
        path, cache, shape, dtype = self.saved_cache()
        check_dout(dout, shape, type(self).__name__, dtype)
        self.release_cache()
        return path, cache

    def release_cache(self):
        """Drop what forward cached (backward's last use of it, or a move to another device)."""
        if "cache" in self.__dict__:
            object.__setattr__(self, "cache", None)

    @property
    def device(self):
        """'cpu' or 'gpu': where this module's first parameter lives."""
        for p in self.parameters():
            return device_of(p.data)
        return "cpu"

    @property
    def xp(self):
        """The array library of this module's parameters (numpy or cupy)."""
        return array_module_for(self.device)

    # -- printing --------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_repr = repr(child).replace("\n", "\n  ")
                lines.append(f"  ({name}): {child_repr}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"


def _fast_path_on():
    """Whether the layers compute on the fast path now (the plain path has no reused
    memory to put back, and never runs code under ``nn/fast/``)."""
    from .switch import is_fast
    return is_fast()


def _workspace():
    """The fast path's reused memory (``nn/fast/workspace.py``)."""
    from .fast.workspace import workspace
    return workspace


def _first(keys, count=10):
    """The first ``count`` keys, and '...' when there are more."""
    return f"{keys[:count]}{' ...' if len(keys) > count else ''}"


def _as_array(value):
    """Accept NumPy/CuPy arrays, Python numbers and CPU torch tensors (via .numpy())."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    return value


class Sequential(Module):
    """Chain modules: ``forward`` runs them in order, ``backward`` in reverse.

    Sub-modules are named "0", "1", ... as in PyTorch (``downsample.0.weight``).
    """

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise ValueError(f"Sequential expects Module instances; argument {i} is "
                                 f"{type(m).__name__}.")
            setattr(self, str(i), m)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dout):
        for m in reversed(list(self._modules.values())):
            dout = m.backward(dout)
        return dout
