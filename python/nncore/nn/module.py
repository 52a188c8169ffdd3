"""Parameter and Module: the containers every layer is built from.

Backprop is explicit: ``forward(x)`` keeps what its backward needs, ``backward(dy)`` uses it up,
returns ``dx`` and ADDS the parameter gradients into each ``Parameter.grad`` (call
``zero_grad()`` between steps). A module keeps one forward's inputs, so each use in a network
needs its own module; modules may share Parameters (``b.weight = a.weight``), whose gradients
then add up. Parameters and sub-modules assigned as attributes are registered in
assignment order, which fixes the names in ``state_dict()`` (PyTorch's: "0.weight", ...); one
assigned again under its name keeps its place.

A layer implements ``forward`` (which sets ``self._saved``) and ``_backward(saved, dy,
need_dx)``; ``Module.backward`` checks ``dy`` and hands ``_saved`` over once, marking it used
only when ``_backward`` returns, so that a backward refused for a bad ``dy`` can be retried.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, NamedTuple

import numpy as np

import nncore
from nncore import Tensor, ops

from ..training import TrainingMixin

class _Marker:
    """A named stand-in for saved state; copies and pickles of a model keep the very object
    (``is`` tests stay true in a deep copy)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self):
        return self.name  # pickle, copy and deepcopy by reference to this module's global


# What a layer holds for backward when Sequential ran its forward inside a neighbour's fused op
# and nothing it could use was kept (a ReLU between a Conv2d and the 2x2 max pool fused into it).
FUSED_AWAY = _Marker("FUSED_AWAY")
# What a layer holds once its backward has used what the last forward kept (PyTorch frees its
# graph the same way): a second backward, or a module used twice in one forward, then raises
# instead of computing gradients from the wrong inputs.
CONSUMED = _Marker("CONSUMED")


class Parameter:
    """A trainable tensor ``.data`` and its gradient ``.grad`` (same shape and device, starts at 0)."""

    def __init__(self, data: Tensor):
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter: expected an nncore Tensor, got {type(data).__name__}")
        if data.dtype != "float32":
            raise TypeError(f"Parameter: expected a float32 tensor, got {data.dtype}")
        self.data = data
        self.grad = nncore.zeros(data.shape, device=data.device)

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def device(self) -> str:
        return self.data.device

    def to(self, device: str) -> "Parameter":
        """Moves value and gradient to ``device`` (in place; returns self)."""
        self.data = self.data.to(device)
        self.grad = self.grad.to(device)
        return self

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, device={self.device!r})"


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` did not match (PyTorch's return value)."""

    missing_keys: list
    unexpected_keys: list


def zero_grads(params) -> None:
    """Zeroes the ``.grad`` of ``params``: one fill call per device (one launch on the GPU)."""
    by_device: dict = {}
    for param in params:
        by_device.setdefault(param.grad.device, []).append(param.grad)
    for grads in by_device.values():
        ops.fill_tensors_(grads, 0.0)


class Module(TrainingMixin):
    """Base class of layers and networks: parameters, sub-modules, modes, devices, state dicts."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        self.training = True
        self._saved = None  # what forward kept for backward

    # ---------------------------------------------------------------- registration

    def __setattr__(self, name, value):
        params, modules = self.__dict__.get("_parameters"), self.__dict__.get("_modules")
        if params is None:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning {name!r}")
        # PyTorch's rule: a registered name takes only its own kind, or None to unregister it.
        if name in params and value is not None and not isinstance(value, Parameter):
            raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} to "
                            f"parameter {name!r} (a Parameter or None expected)")
        if name in modules and value is not None and not isinstance(value, Module):
            raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} to "
                            f"sub-module {name!r} (a Module or None expected)")
        object.__setattr__(self, name, value)  # first: a read-only property refuses here
        if isinstance(value, Parameter):
            params[name] = value  # assigned again, a name keeps its place (Sequential's order)
        elif isinstance(value, Module):
            modules[name] = value
        else:  # None, or a plain attribute: the name is registered no more
            params.pop(name, None)
            modules.pop(name, None)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def add_module(self, name: str, module: "Module") -> None:
        """Registers ``module`` under ``name`` (names need not be identifiers: "0", "1", ...)."""
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: {name!r} must be a Module, got {type(module).__name__}")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"{type(self).__name__}: invalid module name {name!r}")
        if name not in self._modules and hasattr(self, name):  # "train", "device", "fit", ...
            raise ValueError(f"{type(self).__name__}: invalid module name {name!r}: it would hide "
                             f"the {type(self).__name__}'s attribute of that name")
        if name.isidentifier():
            setattr(self, name, module)
        else:
            self._modules[name] = module

    # ---------------------------------------------------------------- computation

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy: Tensor, need_dx: bool = True):
        """d(loss)/d(input) from d(loss)/d(output); accumulates parameter gradients.

        ``need_dx=False`` skips the input gradient (returns None) where that saves work. What
        the last forward kept is used up by a backward that returns, not by one that raises.
        """
        self._check_tensor(dy, "dy")
        dx = self._backward(self._saved_for_backward(), dy, need_dx)
        self._saved = CONSUMED
        return dx

    def _backward(self, saved, dy: Tensor, need_dx: bool):
        """backward's computation from ``saved``, what the last forward kept."""
        raise NotImplementedError(f"{type(self).__name__}._backward")

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def _saved_for_backward(self):
        """What the last forward kept, if backward may use it (see CONSUMED)."""
        saved = self._saved
        if saved is None:
            raise RuntimeError(f"{self!r}: backward called without a forward before it")
        if saved is FUSED_AWAY:
            raise RuntimeError(f"{self!r}: its last forward ran fused inside the layers around it "
                               "(Sequential), which kept nothing for its own backward; call the "
                               "Sequential's backward")
        if saved is CONSUMED:
            raise RuntimeError(f"{self!r}: backward already ran for its last forward. A module "
                               "keeps one forward's inputs: give each use in a network its own "
                               "module (they may share Parameters: b.weight = a.weight)")
        return saved

    def _check_tensor(self, x, what: str = "input") -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self!r}: expected an nncore Tensor {what}, got {type(x).__name__} "
                            "(convert with nncore.tensor(x, device=...))")

    def _check_same_shape(self, dy: Tensor, shape: tuple) -> None:
        """For a backward that hands dy on without a kernel that would check it."""
        if dy.dtype != "float32":
            raise TypeError(f"{self!r}: dy must be float32, got {dy.dtype}")
        if dy.shape != tuple(shape):
            raise ValueError(f"{self!r}: dy {dy.shape} must have the forward output's shape "
                             f"{tuple(shape)}")

    # ---------------------------------------------------------------- traversal

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        return iter(self._modules.items())

    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    def modules(self) -> Iterator["Module"]:
        """This module, then every sub-module, depth first."""
        yield self
        for child in self._modules.values():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """("name", Parameter) pairs, own parameters first, then each child's as "child.name"."""
        for name, param in self._parameters.items():
            yield prefix + name, param
        for child_name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}{child_name}.")

    def parameters(self) -> list[Parameter]:
        """Each parameter once, in named_parameters order (a Parameter shared by modules once)."""
        return list({id(param): param for _, param in self.named_parameters()}.values())

    # ---------------------------------------------------------------- modes and devices

    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active) for this module and all sub-modules; returns self."""
        if not isinstance(mode, (bool, np.bool_)):  # train("no") would be training mode
            raise ValueError(f"{type(self).__name__}.train: mode must be a bool, got {mode!r}")
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    @property
    def device(self) -> str:
        """The device of the parameters ("cpu" for a module without any)."""
        for param in self.parameters():
            return param.device
        return "cpu"

    def to(self, device: str) -> "Module":
        """Moves all parameters (and their gradients) to ``device``, in place; returns self.
        What the last forward kept for backward is dropped (it lives on the old device)."""
        for param in self.parameters():
            param.to(device)  # an unknown device raises here, before anything changed
        for module in self.modules():
            module._saved = None
        return self

    def zero_grad(self) -> None:
        zero_grads(self.parameters())

    # ---------------------------------------------------------------- state

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameter name -> a NumPy copy of its value (a snapshot, on the host)."""
        return OrderedDict((name, np.array(param.data.numpy(), copy=True))
                           for name, param in self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Sets each parameter's value to a new tensor, on its device, holding ``state_dict``'s
        (name -> array): a view taken earlier of the old value (``.numpy()``) keeps the old one.

        Shapes must match; with ``strict`` every parameter must be present and no other key.
        Nothing is changed unless the whole dict checks out. Returns the keys missing from
        ``state_dict`` and those it has that the model has not (PyTorch's NamedTuple).
        """
        own = OrderedDict(self.named_parameters())
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own]
        if strict and (missing or unexpected):
            problems = []
            if missing:
                problems.append(f"missing keys {missing}")
            if unexpected:
                problems.append(f"unexpected keys {unexpected}")
            raise ValueError(f"load_state_dict: {type(self).__name__}: {'; '.join(problems)}")
        arrays = {}
        for name, param in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
            if tuple(array.shape) != tuple(param.shape):
                raise ValueError(f"load_state_dict: {name}: shape {tuple(array.shape)} in the state dict, "
                                 f"{tuple(param.shape)} in the model")
            if array.dtype.kind != "f":
                raise TypeError(f"load_state_dict: {name}: expected floating-point values, got {array.dtype}")
            arrays[name] = array
        for name, array in arrays.items():
            own[name].data = nncore.tensor(array, device=own[name].device, dtype="float32")
        for module in self.modules():
            module._saved = None
        return IncompatibleKeys(missing, unexpected)

    # ---------------------------------------------------------------- printing

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, child in self._modules.items():
            child_lines = repr(child).split("\n")
            lines.append(f"  ({name}): " + "\n  ".join(child_lines))
        return "\n".join(lines) + "\n)"
