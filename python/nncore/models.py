"""Ready-made networks. Each returns a :class:`nncore.nn.Sequential` whose ``config`` records how
it was built, so a checkpoint can rebuild it (:func:`build`)."""
from __future__ import annotations

from . import nn

__all__ = ["lenet5", "mlp", "build", "MODELS"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}
_POOLING = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _choice(table: dict, value: str, what: str):
    if value not in table:
        raise ValueError(f"unknown {what} {value!r} (choose from {', '.join(table)})")
    return table[value]


def lenet5(activation: str = "relu", pooling: str = "max", num_classes: int = 10,
           device: str = "cpu") -> nn.Sequential:
    """LeNet-5 for 1x28x28 input: conv 6@5x5 (pad 2), pool 2, conv 16@5x5, pool 2, 400-120-84-classes."""
    act, pool = _choice(_ACTIVATIONS, activation, "activation"), _choice(_POOLING, pooling, "pooling")
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, device=device), act(), pool(2),
        nn.Conv2d(6, 16, 5, device=device), act(), pool(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120, device=device), act(),
        nn.Linear(120, 84, device=device), act(),
        nn.Linear(84, num_classes, device=device),
    )
    model.config = {"name": "lenet5", "args": [],
                    "kwargs": {"activation": activation, "pooling": pooling, "num_classes": num_classes}}
    return model


def mlp(*sizes: int, activation: str = "relu", dropout: float = 0.0, device: str = "cpu") -> nn.Sequential:
    """Fully connected layers sizes[0] -> sizes[1] -> ... -> sizes[-1], ``activation`` (and dropout,
    when > 0) between them, logits out: ``mlp(784, 800, 10)``."""
    if len(sizes) < 2:
        raise ValueError(f"mlp: need at least an input and an output size, got {sizes}")
    if not 0.0 <= dropout < 1.0:  # nn.Dropout's range, checked even when no layer would get one
        raise ValueError(f"mlp: dropout must be in [0, 1), got {dropout}")
    act = _choice(_ACTIVATIONS, activation, "activation")
    model = nn.Sequential()
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        model.append(nn.Linear(fan_in, fan_out, device=device))
        if index < len(sizes) - 2:
            model.append(act())
            if dropout > 0:
                model.append(nn.Dropout(dropout))
    model.config = {"name": "mlp", "args": [int(size) for size in sizes],
                    "kwargs": {"activation": activation, "dropout": float(dropout)}}
    return model


MODELS = {"lenet5": lenet5, "mlp": mlp}


def build(config: dict, device: str = "cpu") -> nn.Sequential:
    """The model a ``config`` (as stored in ``model.config``) describes."""
    if not isinstance(config, dict):
        raise TypeError(f"a model config is a dict like model.config, got {config!r}")
    factory = _choice(MODELS, config.get("name"), "model")
    return factory(*config.get("args", []), **config.get("kwargs", {}), device=device)
