"""Optimizers (SGD with momentum/Nesterov/weight decay, Adam) and learning-rate schedules.

Each update is one fused kernel call over all the parameters (``ops.sgd_step_`` /
``ops.adam_step_`` take lists: one launch per 32 tensors on the GPU), with PyTorch's CPU
arithmetic (the GPU's is an AVX2 / AVX-512 CPU's): SGD gives ``torch.optim.SGD``'s bits, Adam
``torch.optim.Adam``'s moments and, but where PyTorch's sqrt is an ulp off, its parameters.
State (momentum buffers, Adam moments) lives on the parameter's device, and is stored with
subnormals flushed to +-0: the state of a parameter whose gradient stays 0 decays into that
range, where x86 CPUs compute ~100x slower, and there it would move the parameter by less than
lr * 1.2e-38.
Schedules change ``optimizer.lr`` once per epoch: call ``scheduler.step()`` after it.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

import nncore
from nncore import ops

from ._checks import checked_int
from .nn.module import zero_grads

__all__ = ["Optimizer", "SGD", "Adam", "LRScheduler", "StepLR", "CosineAnnealingLR"]


def _state_fields(where: str, state_dict, kind_key: str, kind: str, keys: tuple) -> list:
    """The values of ``keys`` in a state dict that restores only into the kind of object that
    saved it; ValueError for another kind or a missing key."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"{where}: expected a dict, got {type(state_dict).__name__}")
    if state_dict.get(kind_key) != kind:
        raise ValueError(f"{where}: the state dict is from {state_dict.get(kind_key)!r}, not {kind!r}")
    missing = [key for key in keys if key not in state_dict]
    if missing:
        raise ValueError(f"{where}: the state dict has no {', '.join(map(repr, missing))}")
    return [state_dict[key] for key in keys]


def _check_names(where: str, what: str, values, names: tuple) -> None:
    """``values`` is a dict with exactly the keys ``names``."""
    if not isinstance(values, dict) or set(values) != set(names):
        got = sorted(values) if isinstance(values, dict) else type(values).__name__
        raise ValueError(f"{where}: {what} {got}, expected {sorted(names)}")


def _check_non_negative(name: str, **values) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0.0:
            raise ValueError(f"{name}: {key} must be non-negative, got {value!r}")


class Optimizer:
    """Holds the parameters and per-parameter state; ``step()`` updates them from their ``.grad``."""

    hyper_parameters: tuple = ()  # attribute names saved by state_dict besides lr
    buffer_names: tuple = ()  # the per-parameter state a subclass keeps

    def __init__(self, params, lr: float, **hyper):
        self.params = list(params.parameters() if hasattr(params, "parameters") else params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for param in self.params:
            if not (hasattr(param, "data") and hasattr(param, "grad")):
                raise TypeError(f"{type(self).__name__}: expected Parameters, got {type(param).__name__}")
        if len({id(param) for param in self.params}) != len(self.params):
            raise ValueError(f"{type(self).__name__}: a parameter is listed twice (it would be "
                             "updated twice per step)")
        self.__dict__.update(self._checked(lr=lr, **hyper))
        self.state: list[dict] = [{} for _ in self.params]
        self.step_count = 0

    @classmethod
    def _checked(cls, lr) -> dict:
        """lr and the hyper-parameters as the optimizer stores them, after the checks its
        constructor makes (also run on what ``load_state_dict`` restores)."""
        _check_non_negative(cls.__name__, lr=lr)
        return {"lr": float(lr)}

    def zero_grad(self) -> None:
        zero_grads(self.params)

    def step(self) -> None:
        """Updates every parameter from its ``.grad``. A step that raises (a gradient of another
        shape, say) leaves the parameters of a one-device model, ``step_count`` and the state
        as they were, so that a step retried after the fix is the step it would have been."""
        # One update call per device and kind of state (parameters without buffers yet take
        # their first step), so normally one call for the whole model.
        groups: dict = {}
        for index, (param, state) in enumerate(zip(self.params, self.state)):
            if not isinstance(param.grad, nncore.Tensor):
                raise TypeError(f"{type(self).__name__}.step: parameter {index} {param.shape} "
                                f"has no gradient tensor (.grad is {type(param.grad).__name__})")
            device = param.data.device
            for name, buffer in state.items():  # follow a parameter moved to another device
                if buffer.device != device:
                    state[name] = buffer.to(device)
            params, states = groups.setdefault((device, len(state)), ([], []))
            params.append(param)
            states.append(state)
        self.step_count += 1
        for done, (params, states) in enumerate(groups.values()):
            kept = [set(state) for state in states]
            try:
                self._update(params, states)
            except BaseException:
                # The update kernels check all their tensors before changing any: undo the
                # buffers this call created (a retried first step starts them afresh) and, if
                # no device's update ran, the count.
                for state, names in zip(states, kept):
                    for name in set(state) - names:
                        del state[name]
                if done == 0:
                    self.step_count -= 1
                raise

    def _update(self, params: list, states: list) -> None:
        """Updates ``params`` (one device; their states hold the same buffers) from their ``.grad``."""
        raise NotImplementedError

    @staticmethod
    def _buffers(params: list, states: list, name: str) -> list:
        """state[name] of each parameter, created as zeros like it on first use."""
        for param, state in zip(params, states):
            if name not in state:
                state[name] = nncore.zeros(param.shape, device=param.device)
        return [state[name] for state in states]

    def state_dict(self) -> dict:
        """The optimizer's kind, hyper-parameters, step count and per-parameter buffers (NumPy)."""
        return {"optimizer": type(self).__name__, "lr": self.lr,
                "hyper_parameters": {name: getattr(self, name) for name in self.hyper_parameters},
                "step_count": self.step_count,
                "state": [{name: np.array(t.numpy(), copy=True) for name, t in s.items()}
                          for s in self.state]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what ``state_dict()`` saved, hyper-parameters included (PyTorch's rule).

        Nothing changes unless the whole dict fits: same kind of optimizer, one state per
        parameter, each either empty (no step yet) or holding all of this kind's buffers, each
        of its parameter's shape.
        """
        where = f"{type(self).__name__}.load_state_dict"
        lr, hyper, step_count, states = _state_fields(
            where, state_dict, "optimizer", type(self).__name__,
            ("lr", "hyper_parameters", "step_count", "state"))
        if not isinstance(states, (list, tuple)) or len(states) != len(self.params):
            count = len(states) if isinstance(states, (list, tuple)) else type(states).__name__
            raise ValueError(f"{where}: {count} parameter states for {len(self.params)} parameters")
        _check_names(where, "hyper-parameters", hyper, self.hyper_parameters)
        values = self._checked(lr=lr, **hyper)
        step_count = checked_int(where, "step_count", step_count)
        arrays = []
        for index, (param, saved) in enumerate(zip(self.params, states)):
            if not isinstance(saved, dict):
                raise ValueError(f"{where}: parameter {index}'s state is a "
                                 f"{type(saved).__name__}, not a dict of buffers")
            if saved:  # a parameter's state holds all of the buffers or none (before its first step)
                _check_names(where, f"parameter {index}'s buffers", saved, self.buffer_names)
            arrays.append({})
            for name, value in saved.items():
                array = np.asarray(value)
                if array.dtype.kind not in "fiu":
                    raise TypeError(f"{where}: {name} of parameter {index} holds {array.dtype} "
                                    "values, not numbers")
                if tuple(array.shape) != tuple(param.shape):
                    raise ValueError(f"{where}: {name} of shape {tuple(array.shape)} for a "
                                     f"parameter of shape {tuple(param.shape)}")
                arrays[-1][name] = array
        self.__dict__.update(values)
        self.step_count = step_count
        self.state = [{name: nncore.tensor(array, device=param.device, dtype="float32")
                       for name, array in saved.items()}
                      for param, saved in zip(self.params, arrays)]


class SGD(Optimizer):
    """p -= lr * d, with d = g + weight_decay * p, optionally through momentum (PyTorch's rule):
    buf = momentum * buf + (1 - dampening) * d (buf = d on the first step); d = buf, or
    d + momentum * buf with Nesterov."""

    hyper_parameters = ("momentum", "dampening", "nesterov", "weight_decay")
    buffer_names = ("momentum_buffer",)

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                         weight_decay=weight_decay)

    @classmethod
    def _checked(cls, lr, momentum, dampening, nesterov, weight_decay) -> dict:
        _check_non_negative("SGD", momentum=momentum, dampening=dampening, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening = 0")
        return {**super()._checked(lr), "momentum": float(momentum), "dampening": float(dampening),
                "nesterov": bool(nesterov), "weight_decay": float(weight_decay)}

    def _update(self, params: list, states: list) -> None:
        first_step = self.momentum != 0 and "momentum_buffer" not in states[0]
        buffers = (self._buffers(params, states, "momentum_buffer") if self.momentum != 0
                   else None)
        ops.sgd_step_([p.data for p in params], [p.grad for p in params], buffers, self.lr,
                      self.momentum, self.dampening, self.weight_decay, self.nesterov, first_step)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; weight_decay adds L2 to the gradient (not AdamW)."""

    hyper_parameters = ("betas", "eps", "weight_decay")
    buffer_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay)

    @classmethod
    def _checked(cls, lr, betas, eps, weight_decay) -> dict:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(
                isinstance(beta, numbers.Real) and 0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), got {betas}")
        _check_non_negative("Adam", eps=eps, weight_decay=weight_decay)
        return {**super()._checked(lr), "betas": (float(betas[0]), float(betas[1])),
                "eps": float(eps), "weight_decay": float(weight_decay)}

    def _update(self, params: list, states: list) -> None:
        m = self._buffers(params, states, "exp_avg")
        v = self._buffers(params, states, "exp_avg_sq")
        ops.adam_step_([p.data for p in params], [p.grad for p in params], m, v, self.lr,
                       *self.betas, self.eps, self.weight_decay, self.step_count)


# ---------------------------------------------------------------- learning-rate schedules


class LRScheduler:
    """Sets ``optimizer.lr`` from the epoch count; ``step()`` once per epoch, after training it.

    ``state_dict()`` / ``load_state_dict()`` save and restore base_lr and the epoch count, so a
    scheduler rebuilt on a resumed optimizer (whose lr has already decayed) continues the same
    schedule, as in PyTorch."""

    arguments: tuple = ()  # attribute names saved by state_dict besides base_lr and last_epoch

    def __init__(self, optimizer: Optimizer, **arguments):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an nncore.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self.__dict__.update(self._checked(**arguments))

    @classmethod
    def _checked(cls, **arguments) -> dict:
        """The schedule's arguments as stored, after the constructor's checks (also run on what
        ``load_state_dict`` restores)."""
        raise NotImplementedError

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self) -> float:
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {"scheduler": type(self).__name__, "base_lr": self.base_lr,
                "last_epoch": self.last_epoch,
                "arguments": {name: getattr(self, name) for name in self.arguments}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what ``state_dict()`` saved; nothing changes unless all of it is valid."""
        where = f"{type(self).__name__}.load_state_dict"
        base_lr, last_epoch, arguments = _state_fields(
            where, state_dict, "scheduler", type(self).__name__,
            ("base_lr", "last_epoch", "arguments"))
        _check_names(where, "arguments", arguments, self.arguments)
        arguments = self._checked(**arguments)
        _check_non_negative(where, base_lr=base_lr)
        last_epoch = checked_int(where, "last_epoch", last_epoch)
        self.__dict__.update(arguments)
        self.base_lr, self.last_epoch = float(base_lr), last_epoch


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    arguments = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer, step_size=step_size, gamma=gamma)

    @classmethod
    def _checked(cls, step_size, gamma) -> dict:
        _check_non_negative("StepLR", gamma=gamma)
        return {"step_size": checked_int("StepLR", "step_size", step_size, 1), "gamma": float(gamma)}

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    arguments = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        super().__init__(optimizer, T_max=T_max, eta_min=eta_min)

    @classmethod
    def _checked(cls, T_max, eta_min) -> dict:
        _check_non_negative("CosineAnnealingLR", eta_min=eta_min)
        return {"T_max": checked_int("CosineAnnealingLR", "T_max", T_max, 1), "eta_min": float(eta_min)}

    def lr_at(self, epoch: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
