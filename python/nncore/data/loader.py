"""From NumPy arrays to training batches: scaling, one-hot labels, a train/validation split, DataLoader."""

from __future__ import annotations

import math

import numpy as np

import nncore

from .._checks import checked_int

__all__ = ["scale_images", "one_hot", "train_val_split", "DataLoader"]


# ---------------------------------------------------------------- preprocessing


def scale_images(images: np.ndarray, mean: float | None = None, std: float | None = None,
                 flatten: bool = False) -> np.ndarray:
    """Integer pixels 0..255 -> float32 in [0, 1], then (x - mean) / std when given.

    Shape: (N, H, W) becomes (N, 1, H, W) for conv nets, or (N, H*W) with
    `flatten=True` for MLPs; (N, C, H, W) keeps its shape (or becomes (N, C*H*W)).
    """
    images = np.asarray(images)
    if not np.issubdtype(images.dtype, np.integer):
        raise TypeError(f"scale_images: expected integer pixels 0..255, got dtype {images.dtype}")
    if images.ndim not in (3, 4):
        raise ValueError(f"scale_images: expected shape (N, H, W) or (N, C, H, W), got {images.shape}")
    if std is not None and std <= 0:
        raise ValueError(f"scale_images: std must be positive, got {std}")
    scaled = images.astype(np.float32) / np.float32(255)
    if mean is not None:
        scaled -= np.float32(mean)
    if std is not None:
        scaled /= np.float32(std)
    if flatten:  # not -1: with no images that is ambiguous
        return scaled.reshape(scaled.shape[0], math.prod(scaled.shape[1:]))
    return scaled[:, None] if scaled.ndim == 3 else scaled


def one_hot(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Integer labels (N,) -> float32 (N, num_classes) with a 1 in each label's column."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot: expected integer labels of shape (N,), got {labels.dtype} {labels.shape}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"one_hot: labels must lie in 0..{num_classes - 1}, "
                         f"got {int(labels.min())}..{int(labels.max())}")
    encoded = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    encoded[np.arange(labels.shape[0]), labels] = 1.0
    return encoded


# ---------------------------------------------------------------- splitting


def train_val_split(x: np.ndarray, y: np.ndarray, val_fraction: float, shuffle: bool = False,
                    seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split into (x_train, y_train, x_val, y_val).

    Default, like Keras's `validation_split`: the LAST `val_fraction` of the rows,
    unshuffled, is the validation set (rows from int(N * (1 - val_fraction)) on).
    With `shuffle=True` the rows are first permuted with `seed` (same seed, same split).
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"train_val_split: x has {x.shape[0]} rows but y has {y.shape[0]}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"train_val_split: val_fraction must be in (0, 1), got {val_fraction}")
    if seed is not None and not shuffle:
        raise ValueError("train_val_split: seed has no effect without shuffle=True")
    split_at = int(x.shape[0] * (1.0 - val_fraction))
    if split_at == 0 or split_at == x.shape[0]:
        raise ValueError(f"train_val_split: val_fraction={val_fraction} of {x.shape[0]} rows leaves an empty part")
    if shuffle:
        order = np.random.default_rng(seed).permutation(x.shape[0])
        x, y = x[order], y[order]
    return x[:split_at], y[:split_at], x[split_at:], y[split_at:]


# ---------------------------------------------------------------- batching


class DataLoader:
    """Mini-batches of (x, y) as nncore Tensors on `device`.

    x and y are NumPy arrays with the same number of rows; float arrays become
    float32 tensors, integer arrays (class labels) int32 tensors. `len(loader)`
    is the number of batches per epoch.

    Order: with `shuffle=True`, epoch k uses a permutation drawn from (seed, k),
    so the same seed gives the same sequence of epochs; each `iter(loader)` starts
    the next epoch (or pick one with `set_epoch`). Without a seed one is drawn once,
    at construction, from nncore's generator (so `nncore.manual_seed` fixes it).
    A seed without `shuffle=True` is refused, as in `train_val_split`.

    On CUDA the whole dataset is uploaded once, at construction; each epoch uploads
    its permutation once, and batches are gathered on the device with
    `nncore.ops.index_select_rows`, without further host-device copies.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False, device: str = "cpu"):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(f"DataLoader: x and y need the same number of rows, got shapes {x.shape} and {y.shape}")
        batch_size = checked_int("DataLoader", "batch_size", batch_size, 1)
        if x.shape[0] == 0:
            raise ValueError("DataLoader: the dataset is empty")
        self.x, self.y = (nncore._host_array(x, what="DataLoader: x"),
                          nncore._host_array(y, what="DataLoader: y"))
        self.num_samples = int(x.shape[0])
        self.batch_size = batch_size
        self.shuffle = shuffle
        if seed is None:  # drawn only when shuffling, so an unshuffled loader leaves it alone
            seed = int(nncore.random.generator().integers(2**31)) if shuffle else 0
        elif not shuffle:
            raise ValueError("DataLoader: seed has no effect without shuffle=True")
        self.seed = checked_int("DataLoader", "seed", seed)
        self.drop_last = drop_last
        self.device = str(device)
        self.epoch = 0
        self._on_cuda = nncore._device_type(self.device) == "cuda"  # "gpu" fails here, clearly
        if self._on_cuda:
            self._x_device = nncore.tensor(self.x, device=self.device)
            self._y_device = nncore.tensor(self.y, device=self.device)
            self._order_device = None  # the unshuffled order, uploaded once

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use epoch `epoch`'s order."""
        self.epoch = checked_int("DataLoader.set_epoch", "epoch", epoch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The row order of epoch `epoch`: 0..N-1, or a permutation drawn from (seed, epoch)."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_samples)

    def __iter__(self):
        order = self.epoch_order(self.epoch)
        self.epoch += 1
        return self._device_batches(order) if self._on_cuda else self._host_batches(order)

    def _batch_bounds(self):
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield start, min(start + self.batch_size, self.num_samples)

    def _host_batches(self, order: np.ndarray):
        for start, stop in self._batch_bounds():
            rows = order[start:stop]
            yield nncore.tensor(self.x[rows]), nncore.tensor(self.y[rows])

    def _device_batches(self, order: np.ndarray):
        from nncore import ops

        if self.shuffle:
            order_device = nncore.tensor(order.astype(np.int32), device=self.device)
        else:
            if self._order_device is None:
                self._order_device = nncore.tensor(order.astype(np.int32), device=self.device)
            order_device = self._order_device
        for start, stop in self._batch_bounds():
            rows = order_device[start:stop]  # a view: no copy, no launch
            yield ops.index_select_rows(self._x_device, rows), ops.index_select_rows(self._y_device, rows)
