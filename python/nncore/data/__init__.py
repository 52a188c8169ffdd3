"""nncore.data: MNIST-style datasets as NumPy arrays, and batches as nncore Tensors.

    from nncore.data import load_mnist, scale_images, DataLoader
    train = load_mnist(split="train")          # Dataset: .images uint8 (N,28,28), .labels uint8, .source
    x = scale_images(train.images, flatten=True)
    for xb, yb in DataLoader(x, train.labels, batch_size=128, shuffle=True, seed=0): ...

Where datasets are looked for, and the embedded MNIST sample used when full
MNIST is unavailable, are described in `nncore.data.datasets`.
"""

from .datasets import (
    DATASETS,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MNIST_MEAN,
    MNIST_STD,
    Dataset,
    DownloadError,
    SampleFallbackWarning,
    download_file,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    load_mnist_sample,
    search_dirs,
)
from .idx import DatasetError, read_idx, write_idx
from .loader import DataLoader, one_hot, scale_images, train_val_split

__all__ = [
    "DATASETS",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "DataLoader",
    "Dataset",
    "DatasetError",
    "DownloadError",
    "SampleFallbackWarning",
    "download_file",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_sample",
    "one_hot",
    "read_idx",
    "scale_images",
    "search_dirs",
    "train_val_split",
    "write_idx",
]
