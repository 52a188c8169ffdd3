"""Keras-style training on NumPy arrays: ``model.fit``, ``model.evaluate``, ``model.predict``.

Mixed into every :class:`nncore.nn.Module`. A training step is forward, fused loss, backward and
one fused update call over all the parameters, with no host sync: the epoch's loss is summed on the
device and the predictions' argmaxes are copied to the host once per epoch for the accuracy.
"""
from __future__ import annotations

import contextlib
import sys
import time
import warnings

import numpy as np

import nncore
from nncore import ops

from ._checks import checked_int

__all__ = ["History", "TrainingMixin"]

_LOSS_NAMES = {
    "cross_entropy": "CrossEntropyLoss", "categorical_crossentropy": "CrossEntropyLoss",
    "sparse_categorical_crossentropy": "CrossEntropyLoss",
    "mse": "MSELoss", "mean_squared_error": "MSELoss",
}


def _resolve_loss(loss):
    from . import nn

    if isinstance(loss, nn.Loss):
        return loss
    if isinstance(loss, str) and loss.lower() in _LOSS_NAMES:
        return getattr(nn, _LOSS_NAMES[loss.lower()])()
    raise ValueError(f"unknown loss {loss!r} (a nncore.nn.Loss or one of {', '.join(_LOSS_NAMES)})")


def _resolve_optimizer(optimizer, model):
    from . import optim

    if optimizer is None or optimizer == "sgd":
        return optim.SGD(model.parameters(), lr=0.01)
    if optimizer == "adam":
        return optim.Adam(model.parameters())
    if isinstance(optimizer, optim.Optimizer):
        return optimizer
    raise ValueError(f"unknown optimizer {optimizer!r} (an nncore.optim.Optimizer, 'sgd' or 'adam')")


def _warn_double_softmax(model, loss_fn) -> None:
    from .nn import CrossEntropyLoss, Softmax

    if isinstance(loss_fn, CrossEntropyLoss) and isinstance(list(model.modules())[-1], Softmax):
        warnings.warn("fit: the model ends in Softmax but CrossEntropyLoss applies softmax itself; "
                      "drop the last Softmax layer so the loss sees logits", stacklevel=3)


def _check_metrics(metrics, loss_fn) -> bool:
    """True when accuracy is asked for (the only metric there is); by default (None) it is, for
    a classification loss only: on a regression output an argmax means nothing."""
    from .nn import CrossEntropyLoss

    if metrics is None:
        return isinstance(loss_fn, CrossEntropyLoss)
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in ("accuracy", "acc")]
    if unknown:
        raise ValueError(f"unknown metrics {unknown} (supported: 'accuracy')")
    return bool(metrics)


def _check_inputs(where: str, x, y=None):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{where}: x must be floating point, got {x.dtype} "
                        "(scale integer images with nncore.data.scale_images)")
    if y is None:
        return x, None
    y = np.asarray(y)
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"{where}: x has {x.shape[0]} rows but y has shape {y.shape}")
    return x, y


class History:
    """What ``fit`` returns: ``history`` maps "loss", "accuracy", "val_loss", "val_accuracy", "lr"
    to one value per epoch; ``best_epoch`` / ``stopped_epoch`` are set by early stopping."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class _Progress:
    """A tqdm bar over one epoch's images on stderr (when it is a terminal), with the running loss."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            bar = tqdm(total=total, desc=label, unit="img", unit_scale=True, leave=False, file=sys.stderr,
                       mininterval=0.5, dynamic_ncols=True, disable=None)  # None: no bar when not a terminal
            self.bar = None if bar.disable else bar
        self.last_postfix = time.perf_counter()

    def update(self, images: int, loss_sum, seen: int) -> None:
        if self.bar is None:
            return
        self.bar.update(images)
        now = time.perf_counter()
        if now - self.last_postfix > 0.5:  # the running loss costs a sync: at most twice a second
            self.last_postfix = now
            self.bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _EpochTotals:
    """Sums a loss on the device and keeps argmaxes for the accuracy, read back once at the end."""

    def __init__(self, device: str, accuracy: bool):
        self.loss_sum = nncore.zeros((), device=device)
        self.seen = 0
        self.accuracy = accuracy
        self.predicted, self.expected = [], []

    def add(self, batch_loss, out, target) -> None:
        images = out.shape[0]
        ops.axpy_(self.loss_sum, float(images), batch_loss)
        self.seen += images
        if self.accuracy:
            if out.ndim != 2 or out.shape[1] < 2:
                raise ValueError(f"accuracy needs class scores (N, C) with C >= 2, got output "
                                 f"{out.shape}; pass metrics=() for a regression")
            self.predicted.append(ops.argmax_rows(out))
            self.expected.append(target if target.dtype == "int32" else ops.argmax_rows(target))

    def results(self, prefix: str = "") -> dict:
        logs = {prefix + "loss": self.loss_sum.item() / self.seen}
        if self.accuracy:
            predicted = np.concatenate([t.numpy() for t in self.predicted])
            expected = np.concatenate([t.numpy() for t in self.expected])
            logs[prefix + "accuracy"] = float(np.mean(predicted == expected))
        return logs


@contextlib.contextmanager
def _modes_kept(model):
    """Gives each module back its own training flag on leaving (model.train(flag) would set them
    all alike, switching a sub-module the user put in eval mode back to training)."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def _inference(model):
    """Eval mode, and on leaving each module's own training flag and what its last forward kept
    for backward: evaluate() or predict() between a forward and its backward changes neither
    (they would otherwise leave the prediction's inputs for the backward)."""
    saved = [(module, module._saved) for module in model.modules()]
    with _modes_kept(model):
        model.eval()
        try:
            yield
        finally:
            for module, kept in saved:
                module._saved = kept


def _format_logs(logs: dict) -> str:
    return " - ".join(f"{key} {value:.4g}" if key == "lr" else f"{key} {value:.4f}" for key, value in logs.items())


class TrainingMixin:
    """fit / evaluate / predict for a Module (see the module docstring)."""

    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, validation_split: float = 0.0,
            validation_data=None, optimizer=None, loss="cross_entropy", metrics=None,
            early_stopping_patience: int | None = None, shuffle: bool = True, seed: int | None = None,
            device: str | None = None, verbose: int = 1, lr_scheduler=None, callbacks=()) -> History:
        """Trains on NumPy arrays ``x`` and ``y`` (integer labels (N,) or one-hot/probability rows).

        - ``validation_split``: like Keras, the LAST fraction of the rows (taken before any
          shuffling) is held out; ``validation_data=(x_val, y_val)`` takes precedence.
        - ``optimizer``: an nncore.optim optimizer, "sgd" or "adam" (default: SGD, lr 0.01). A
          name builds a new optimizer on each call; pass an optimizer to keep its state (momentum,
          Adam's moments) across calls.
        - ``loss``: a nncore.nn.Loss, "cross_entropy" (alias "categorical_crossentropy") or "mse".
        - ``metrics``: ("accuracy",) or (); by default accuracy with cross-entropy only.
        - ``early_stopping_patience``: stop after that many epochs without improvement of
          val_loss (loss without validation) and restore the best weights.
        - ``seed``: the shuffling order (default: drawn from nncore.manual_seed's generator).
        - ``device``: move the model there first (default: where it is).
        - ``verbose``: 0 silent, 1 a progress bar and a line per epoch, 2 the line only.
        - ``lr_scheduler``: stepped after each epoch (it must be the optimizer's); ``callbacks``: callables
          ``f(epoch, logs)`` (or objects with ``on_epoch_end``); one returning True stops training.
        """
        from .data.loader import DataLoader, train_val_split
        from .nn.loss import CrossEntropyLoss, check_labels

        x, y = _check_inputs("fit", x, y)
        if epochs < 0:
            raise ValueError(f"fit: epochs must be non-negative, got {epochs}")
        if early_stopping_patience is not None:
            early_stopping_patience = checked_int("fit", "early_stopping_patience",
                                                  early_stopping_patience)
        if validation_data is not None:
            x_val, y_val = _check_inputs("fit: validation_data", *validation_data)
            x_train, y_train = x, y
        elif validation_split:
            x_train, y_train, x_val, y_val = train_val_split(x, y, validation_split)
        else:
            x_train, y_train, x_val, y_val = x, y, None, None
        if device is not None:
            self.to(device)
        device = self.device
        loss_fn = _resolve_loss(loss)
        _warn_double_softmax(self, loss_fn)
        track_accuracy = _check_metrics(metrics, loss_fn)
        optimizer = _resolve_optimizer(optimizer, self)
        if lr_scheduler is not None and getattr(lr_scheduler, "optimizer", None) is not optimizer:
            raise ValueError("fit: lr_scheduler steps another optimizer than the one fit uses (pass "
                             "the scheduler's optimizer as optimizer=)")
        loader = DataLoader(x_train, y_train, batch_size, shuffle=shuffle, seed=seed, device=device)
        val_loader = None if x_val is None else DataLoader(x_val, y_val, max(batch_size, 256), device=device)
        callbacks = [getattr(c, "on_epoch_end", c) for c in (callbacks or ())]

        with _modes_kept(self):  # fit sets training mode; the modules' own flags come back after
            history = History()
            monitor = "val_loss" if val_loader is not None else "loss"
            best, best_state, epochs_without_improvement = float("inf"), None, 0
            optimizer.zero_grad()
            for epoch in range(1, epochs + 1):
                started = time.perf_counter()
                self.train()
                totals = _EpochTotals(device, track_accuracy)
                progress = _Progress(len(x_train), f"epoch {epoch}/{epochs}", verbose == 1)
                for xb, yb in loader:
                    out = self.forward(xb)
                    if epoch == 1 and totals.seen == 0 and isinstance(loss_fn, CrossEntropyLoss) \
                            and y_train.ndim == 1 and out.ndim == 2:  # on the GPU a bad label is only a NaN
                        for labels in (y_train, y_val):
                            if labels is not None:
                                check_labels(labels, out.shape[1])
                    batch_loss = loss_fn.forward_tensor(out, yb)
                    self.backward(loss_fn.backward(), need_dx=False)
                    optimizer.step()
                    optimizer.zero_grad()
                    totals.add(batch_loss, out, yb)
                    progress.update(xb.shape[0], totals.loss_sum, totals.seen)
                progress.close()
                logs = totals.results()
                if val_loader is not None:
                    logs.update(self._evaluate_loader(val_loader, loss_fn, track_accuracy, prefix="val_"))
                logs["lr"] = optimizer.lr
                seconds = time.perf_counter() - started
                history.append(epoch, logs)
                if verbose:
                    print(f"epoch {epoch}/{epochs} - {_format_logs(logs)} - {seconds:.1f}s "
                          f"({len(x_train) / seconds:,.0f} img/s)", flush=True)
                if lr_scheduler is not None:
                    lr_scheduler.step()
                stop = any([bool(callback(epoch, logs)) for callback in callbacks])
                if early_stopping_patience is not None:
                    if logs[monitor] < best:
                        best, best_state, epochs_without_improvement = logs[monitor], self.state_dict(), 0
                        history.best_epoch = epoch
                    else:
                        epochs_without_improvement += 1
                        if epochs_without_improvement >= early_stopping_patience:
                            stop = True
                            if verbose:
                                print(f"early stopping: {monitor} has not improved for "
                                      f"{early_stopping_patience} epochs; restoring the weights of "
                                      f"epoch {history.best_epoch}", flush=True)
                if stop:
                    history.stopped_epoch = epoch
                    break
            if best_state is not None:
                self.load_state_dict(best_state)
        self._fit_loss = loss_fn  # evaluate()'s default: the loss of the last completed fit
        return history

    def evaluate(self, x, y, batch_size: int = 256, loss=None, metrics=None,
                 device: str | None = None) -> dict:
        """{"loss": mean loss, "accuracy": fraction correct} over ``x``, ``y``, in eval mode.

        ``loss`` defaults to the one the last completed ``fit`` used (else cross-entropy); ``metrics`` as
        in ``fit``.
        """
        from .data.loader import DataLoader

        x, y = _check_inputs("evaluate", x, y)
        if device is not None:
            self.to(device)
        loss_fn = _resolve_loss(loss if loss is not None else getattr(self, "_fit_loss", "cross_entropy"))
        loader = DataLoader(x, y, batch_size, device=self.device)
        return self._evaluate_loader(loader, loss_fn, _check_metrics(metrics, loss_fn))

    def _evaluate_loader(self, loader, loss_fn, accuracy: bool, prefix: str = "") -> dict:
        totals = _EpochTotals(self.device, accuracy)
        with _inference(self):
            for xb, yb in loader:
                out = self.forward(xb)
                totals.add(loss_fn.forward_tensor(out, yb), out, yb)
        return totals.results(prefix)

    def predict(self, x, batch_size: int = 256, softmax: bool = False, device: str | None = None) -> np.ndarray:
        """The model's outputs for NumPy ``x`` (eval mode), as a NumPy array; ``softmax=True``
        turns logits into class probabilities."""
        x, _ = _check_inputs("predict", x)
        if batch_size < 1:
            raise ValueError(f"predict: batch_size must be positive, got {batch_size}")
        if device is not None:
            self.to(device)
        outputs = []
        with _inference(self):
            for start in range(0, max(x.shape[0], 1), batch_size):  # no rows: one empty batch
                out = self.forward(nncore.tensor(x[start:start + batch_size], device=self.device))
                outputs.append((ops.softmax_forward(out) if softmax else out).numpy().copy())
        return np.concatenate(outputs)
