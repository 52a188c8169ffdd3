"""Layers, containers and losses with explicit backprop (see :mod:`nncore.nn.module`)."""
from .module import Module, Parameter
from .layers import (AvgPool2d, Conv2d, Dropout, Flatten, Identity, LeakyReLU, Linear, MaxPool2d,
                     ReLU, Sequential, Sigmoid, Softmax, Tanh)
from .loss import CrossEntropyLoss, Loss, MSELoss

__all__ = ["Module", "Parameter", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "ReLU", "LeakyReLU",
           "Sigmoid", "Tanh", "Softmax", "Flatten", "Dropout", "Identity", "Sequential", "Loss",
           "CrossEntropyLoss", "MSELoss"]
