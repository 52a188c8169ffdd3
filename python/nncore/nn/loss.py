"""Losses: ``forward(out, target) -> float`` (syncs), ``forward_tensor`` (shape-() Tensor, no
sync, for training loops), ``backward() -> d(loss)/d(out)``. Both are means over the batch."""
from __future__ import annotations

import numbers

import numpy as np

import nncore
from nncore import Tensor, ops

from .module import CONSUMED

__all__ = ["Loss", "CrossEntropyLoss", "MSELoss"]


class Loss:
    """Base class: keeps what the last forward needs for backward."""

    def __init__(self):
        self._saved = None

    def forward_tensor(self, out: Tensor, target) -> Tensor:
        """The mean loss as a shape-() tensor on ``out``'s device (no host sync)."""
        raise NotImplementedError

    def forward(self, out: Tensor, target) -> float:
        """The mean loss as a Python float (waits for the device)."""
        return self.forward_tensor(out, target).item()

    def __call__(self, out: Tensor, target) -> float:
        return self.forward(out, target)

    def backward(self, grad_scale: float = 1.0) -> Tensor:
        """d(grad_scale * loss)/d(out) for the last forward, whose outputs a backward that
        returns uses up (one that raises does not)."""
        if not isinstance(grad_scale, numbers.Real):
            raise TypeError(f"{type(self).__name__}.backward: grad_scale must be a number, got "
                            f"{type(grad_scale).__name__}")
        dout = self._backward(self._saved_for_backward(), grad_scale)
        self._saved = CONSUMED
        return dout

    def _backward(self, saved, grad_scale: float) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__}._backward")

    def _target(self, out: Tensor, target) -> Tensor:
        if not isinstance(out, Tensor):
            raise TypeError(f"{type(self).__name__}: expected an nncore Tensor output, got {type(out).__name__}")
        if isinstance(target, Tensor):
            return target.to(out.device)
        return nncore.tensor(np.asarray(target), device=out.device)

    def _saved_for_backward(self):
        """What the last forward kept, if backward may use it (as a Module's: see CONSUMED)."""
        saved = self._saved
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}: backward called without a forward before it")
        if saved is CONSUMED:
            raise RuntimeError(f"{type(self).__name__}: backward already ran for its last forward "
                               "(a loss keeps one forward's outputs: use one loss object per output)")
        return saved

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropyLoss(Loss):
    """Softmax + cross-entropy on logits (N, C), fused and stable.

    Targets: integer labels (N,) in 0..C-1, or probabilities / one-hot rows (N, C).
    Labels given as NumPy arrays (or CPU tensors) are range-checked; device-resident labels
    are checked by ``forward`` (which syncs anyway), not by ``forward_tensor``.
    """

    def forward_tensor(self, out: Tensor, target) -> Tensor:
        if isinstance(target, np.ndarray) and np.issubdtype(target.dtype, np.integer) and out.ndim == 2:
            check_labels(target, out.shape[1])
        target = self._target(out, target)
        loss, probs = ops.cross_entropy_forward(out, target)
        self._saved = (probs, target)
        return loss

    def forward(self, out: Tensor, target) -> float:
        if isinstance(target, Tensor) and target.dtype == "int32" and out.ndim == 2:
            check_labels(target.numpy(), out.shape[1])
        return super().forward(out, target)

    def _backward(self, saved, grad_scale: float) -> Tensor:
        probs, target = saved
        return ops.cross_entropy_backward(probs, target, grad_scale)


class MSELoss(Loss):
    """Mean over all elements of (out - target)^2; target has out's shape."""

    def forward_tensor(self, out: Tensor, target) -> Tensor:
        target = self._target(out, target)
        if target.dtype != "float32":
            raise TypeError(f"MSELoss: target must be floating point, got {target.dtype}")
        self._saved = (out, target)
        return ops.mse_forward(out, target)

    def _backward(self, saved, grad_scale: float) -> Tensor:
        out, target = saved
        return ops.mse_backward(out, target, grad_scale)


def check_labels(labels: np.ndarray, num_classes: int) -> None:
    """ValueError when an integer label lies outside 0..num_classes-1."""
    labels = np.asarray(labels)
    if not labels.size:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        row = int(bad[0])
        raise ValueError(f"CrossEntropyLoss: label {int(labels.reshape(-1)[row])} at row {row} is out of "
                         f"range for {num_classes} classes ({bad.size} labels out of range)")
