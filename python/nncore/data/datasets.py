"""MNIST and Fashion-MNIST: finding them, downloading them, and the embedded MNIST sample.

Where a dataset is looked for, in order (the first folder holding both files of
the requested split wins):

1. the explicit `root` argument, then `<root>/<name>`;
2. `$NNCORE_DATA/<name>`, then `$NNCORE_DATA` itself;
3. `~/.cache/nncore/<name>`;
4. `/usr/share/datasets/<name>` (Debian's `dataset-fashion-mnist` package installs
   `/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`);
5. a download from the public mirrors (when `download=True`) into `<root>/<name>`, else
   `$NNCORE_DATA/<name>`, else `~/.cache/nncore/<name>`, each file checked against
   its published SHA-256 and written atomically;
6. for MNIST only: the embedded 5,000-digit sample, with a `SampleFallbackWarning`.

A folder may hold the files as `train-images-idx3-ubyte.gz`, `train-images-idx3-ubyte`
or `train-images.idx3-ubyte` (and the same for labels and `t10k-`). MNIST and
Fashion-MNIST use the same file names, so a flat folder (`root` or `$NNCORE_DATA`
itself) is taken for whichever dataset is asked for: keep each in its own
`<name>/` folder when you have both.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import Request, urlopen

import numpy as np

from .idx import DatasetError, read_idx

__all__ = [
    "Dataset",
    "DatasetSpec",
    "DownloadError",
    "SampleFallbackWarning",
    "DATASETS",
    "MNIST_MEAN",
    "MNIST_STD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "load_dataset",
    "load_mnist",
    "load_fashion_mnist",
    "load_mnist_sample",
    "search_dirs",
    "download_file",
]

SPLITS = ("train", "test")
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLE_SOURCE = "embedded-sample"
DOWNLOAD_TIMEOUT_S = 15.0
DOWNLOAD_CHUNK_BYTES = 1 << 16


class DownloadError(OSError):
    """A download failed: no connection, an HTTP error, a short read or a checksum mismatch."""


class SampleFallbackWarning(UserWarning):
    """Full MNIST was not found, so the embedded 5,000-digit sample is used instead."""


@dataclass(frozen=True)
class RemoteFile:
    """One published .gz file: its name, byte size and SHA-256."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is called, which files make up each split, and where to download them."""

    name: str
    title: str
    split_files: dict[str, tuple[RemoteFile, RemoteFile]]  # split -> (images, labels)
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]
    install_hint: str = ""


# Sizes and SHA-256 of the .gz files as published on the mirrors, from TensorFlow
# Datasets' url_checksums (tensorflow_datasets/url_checksums/mnist.txt and
# fashion_mnist.txt). They agree with the MD5s torchvision publishes in
# torchvision/datasets/mnist.py (MNIST.resources, FashionMNIST.resources).
MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    split_files={
        "train": (
            RemoteFile("train-images-idx3-ubyte.gz", 9912422,
                       "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            RemoteFile("train-labels-idx1-ubyte.gz", 28881,
                       "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        ),
        "test": (
            RemoteFile("t10k-images-idx3-ubyte.gz", 1648877,
                       "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", 4542,
                       "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    class_names=tuple(str(digit) for digit in range(10)),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    split_files={
        "train": (
            RemoteFile("train-images-idx3-ubyte.gz", 26421880,
                       "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            RemoteFile("train-labels-idx1-ubyte.gz", 29515,
                       "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        ),
        "test": (
            RemoteFile("t10k-images-idx3-ubyte.gz", 4422102,
                       "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", 5148,
                       "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        ),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    install_hint="on Debian/Ubuntu: apt-get install dataset-fashion-mnist",
)

DATASETS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}

# Per-pixel mean and standard deviation of the train splits, pixels scaled to [0, 1]
# (MNIST: the values PyTorch's MNIST example uses; Fashion-MNIST: computed from the
# Debian-packaged train images).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
_NAME_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}

# The embedded sample: rows 0..3999 are its train split, 4000..4999 its test split
# (400 and 100 per digit; order fixed once by tools/make_mnist_sample.py).
SAMPLE_IMAGES_FILE = "mnist-sample-images-idx3-ubyte.gz"
SAMPLE_LABELS_FILE = "mnist-sample-labels-idx1-ubyte.gz"
SAMPLE_SIZE = 5000
SAMPLE_TRAIN_SIZE = 4000
_SAMPLE_ROWS = {"train": slice(0, SAMPLE_TRAIN_SIZE), "test": slice(SAMPLE_TRAIN_SIZE, SAMPLE_SIZE),
                "all": slice(0, SAMPLE_SIZE)}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images uint8 (N, 28, 28) and labels uint8 (N,), with where they came from.

    `source` is the folder the files were read from, or "embedded-sample".
    A Dataset unpacks as `images, labels = dataset`.
    """

    name: str
    split: str
    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    source: str
    class_names: tuple[str, ...] = field(repr=False, default=())

    @property
    def is_sample(self) -> bool:
        """True when this is the embedded MNIST sample rather than the full dataset."""
        return self.source == SAMPLE_SOURCE

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __iter__(self):
        return iter((self.images, self.labels))


# ---------------------------------------------------------------- finding files


def _spec(name: str) -> DatasetSpec:
    key = _NAME_ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        known = ", ".join([*DATASETS, "mnist-sample"])
        raise ValueError(f"unknown dataset {name!r} (known: {known})")
    return DATASETS[key]


def _check_split(split: str, allowed=SPLITS) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(map(repr, allowed))}, got {split!r}")


def search_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for dataset `name`, in order (see the module docstring)."""
    dirs: list[Path] = []
    if root is not None:
        dirs += [Path(root).expanduser(), Path(root).expanduser() / name]
    env_dir = os.environ.get("NNCORE_DATA")
    if env_dir:
        dirs += [Path(env_dir).expanduser() / name, Path(env_dir).expanduser()]
    dirs += [_cache_dir(name), SYSTEM_DATA_DIR / name]
    unique: list[Path] = []
    for folder in dirs:
        if folder not in unique:
            unique.append(folder)
    return unique


def _cache_dir(name: str) -> Path:
    return Path.home() / ".cache" / "nncore" / name


def _download_dir(name: str, root: str | os.PathLike | None) -> Path:
    """Where a download goes: <root>/<name>, else $NNCORE_DATA/<name>, else ~/.cache/nncore/<name>
    (never a flat folder, which would then be taken for the other dataset too)."""
    if root is not None:
        return Path(root).expanduser() / name
    env_dir = os.environ.get("NNCORE_DATA")
    return Path(env_dir).expanduser() / name if env_dir else _cache_dir(name)


def _local_names(gz_name: str) -> tuple[str, ...]:
    """Spellings a published file may have on disk: gzip'd, unpacked, dotted."""
    raw = gz_name[: -len(".gz")]
    dotted = raw.replace("-idx", ".idx", 1)
    return (gz_name, raw, dotted, dotted + ".gz")


def _find_file(folder: Path, gz_name: str) -> Path | None:
    for candidate in _local_names(gz_name):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _find_split(spec: DatasetSpec, split: str, folder: Path) -> tuple[Path, Path] | None:
    images_file, labels_file = spec.split_files[split]
    images_path, labels_path = _find_file(folder, images_file.name), _find_file(folder, labels_file.name)
    if images_path is None or labels_path is None:
        return None
    return images_path, labels_path


def _read_split(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read and check an images/labels pair: uint8 (N, 28, 28) and uint8 (N,) in range."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(f"{images_path}: expected uint8 images of shape (N, 28, 28), "
                           f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images "
                           f"in {images_path}")
    if labels.size and int(labels.max()) >= num_classes:
        raise DatasetError(f"{labels_path}: label {int(labels.max())} out of range 0..{num_classes - 1}")
    return images, labels


# ---------------------------------------------------------------- downloading


class _Progress:
    """A tqdm bar when tqdm is installed, else a plain percentage line on stderr."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.shown_percent = label, total, 0, -1
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr, leave=False)

    def update(self, num_bytes: int) -> None:
        self.done += num_bytes
        if self.bar is not None:
            self.bar.update(num_bytes)
            return
        percent = 100 * self.done // self.total if self.total else 0
        if percent >= self.shown_percent + 10 or self.done == self.total:
            self.shown_percent = percent
            print(f"\r{self.label}: {percent:3d}% of {self.total / 1e6:.1f} MB", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            print(file=sys.stderr, flush=True)


def _content_length(response) -> int:
    return int(response.headers.get("Content-Length") or 0)


def _copy_with_progress(response, out, digest, progress: _Progress) -> None:
    """Stream the response into `out`, hashing and reporting as it goes."""
    try:
        while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
            out.write(chunk)
            digest.update(chunk)
            progress.update(len(chunk))
    finally:
        progress.close()


def download_file(url: str, dest: str | os.PathLike, sha256: str, size: int | None = None,
                  timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download `url` to `dest`, verify its size and SHA-256, then move it into place.

    The bytes go to a '.part' file next to `dest`, renamed over `dest` only once
    they check out, so a failed or corrupt download never leaves a file at `dest`.
    Raises DownloadError.
    """
    dest = Path(dest)
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with urlopen(Request(url, headers={"User-Agent": "nncore"}), timeout=timeout) as response:
            dest.parent.mkdir(parents=True, exist_ok=True)
            print(f"nncore: downloading {url} -> {dest}", file=sys.stderr, flush=True)
            with open(partial, "wb") as out:
                _copy_with_progress(response, out, digest, _Progress(dest.name, size or _content_length(response)))
        received = partial.stat().st_size
        if size is not None and received != size:
            raise DownloadError(f"{url}: received {received} bytes, expected {size}")
        if digest.hexdigest() != sha256:
            raise DownloadError(f"{url}: SHA-256 mismatch (got {digest.hexdigest()}, expected {sha256})")
        os.replace(partial, dest)
    except DownloadError:
        raise
    except Exception as error:  # URLError, HTTPError, timeouts, short reads, disk errors
        raise DownloadError(f"{url}: {getattr(error, 'reason', None) or error}") from error
    finally:
        partial.unlink(missing_ok=True)
    return dest


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_split(spec: DatasetSpec, split: str, folder: Path) -> tuple[Path, Path]:
    """Download a split's two files into `folder`, trying each mirror in turn; fail on the first file no mirror has.

    A file already there with the published SHA-256 is kept.
    """
    paths = []
    for remote in spec.split_files[split]:
        existing = folder / remote.name
        if existing.is_file() and _sha256_of(existing) == remote.sha256:
            paths.append(existing)
            continue
        errors = []
        for mirror in spec.mirrors:
            try:
                paths.append(download_file(mirror + remote.name, folder / remote.name, remote.sha256, remote.size))
                break
            except DownloadError as error:
                errors.append(str(error))
        else:
            raise DownloadError("; ".join(errors))
    return paths[0], paths[1]


# ---------------------------------------------------------------- loading


def load_mnist_sample(split: str = "train") -> Dataset:
    """The embedded 5,000-digit real-MNIST sample: split "train" (4,000), "test" (1,000) or "all".

    Both splits are stratified (400 / 100 per digit) and fixed: see sample/README.md.
    """
    _check_split(split, (*SPLITS, "all"))
    images, labels = _read_split(SAMPLE_DIR / SAMPLE_IMAGES_FILE, SAMPLE_DIR / SAMPLE_LABELS_FILE, 10)
    if images.shape[0] != SAMPLE_SIZE:
        raise DatasetError(f"{SAMPLE_DIR / SAMPLE_IMAGES_FILE}: expected {SAMPLE_SIZE} images, got {images.shape[0]}")
    rows = _SAMPLE_ROWS[split]
    return Dataset("mnist", split, images[rows], labels[rows], SAMPLE_SOURCE, MNIST.class_names)


def _load(spec: DatasetSpec, root, split: str, download: bool) -> Dataset:
    """Search, then download, then (MNIST only) fall back to the sample."""
    _check_split(split)
    looked_in = search_dirs(spec.name, root)
    for folder in looked_in:
        found = _find_split(spec, split, folder)
        if found is not None:
            images, labels = _read_split(*found, len(spec.class_names))
            return Dataset(spec.name, split, images, labels, str(folder), spec.class_names)

    why = f"looked in {', '.join(map(str, looked_in))}"
    if download:
        target = _download_dir(spec.name, root)
        try:
            found = download_split(spec, split, target)
        except DownloadError as error:
            why += f"; download failed: {error}"
        else:
            images, labels = _read_split(*found, len(spec.class_names))
            return Dataset(spec.name, split, images, labels, str(target), spec.class_names)
    else:
        why += "; download=False"

    if spec is MNIST:
        sample = load_mnist_sample(split)
        warnings.warn(
            f"nncore: full MNIST not found ({why}); using the embedded 5,000-digit MNIST sample "
            f"({split} split: {sample.num_samples} digits)",
            SampleFallbackWarning, stacklevel=3)
        return sample
    hint = f"; {spec.install_hint}" if spec.install_hint else ""
    raise FileNotFoundError(f"nncore: {spec.title} not found ({why}); set $NNCORE_DATA or pass root=...{hint}")


def load_mnist(root: str | os.PathLike | None = None, split: str = "train", download: bool = True) -> Dataset:
    """MNIST, split "train" (60,000) or "test" (10,000); falls back to the embedded sample, with a warning."""
    return _load(MNIST, root, split, download)


def load_fashion_mnist(root: str | os.PathLike | None = None, split: str = "train",
                       download: bool = True) -> Dataset:
    """Fashion-MNIST, split "train" (60,000) or "test" (10,000); FileNotFoundError when it cannot be found."""
    return _load(FASHION_MNIST, root, split, download)


def load_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train",
                 download: bool = True) -> Dataset:
    """Load a dataset by name: "mnist", "fashion-mnist", or "mnist-sample" (the embedded sample only)."""
    if name.lower() == "mnist-sample":
        return load_mnist_sample(split)
    return _load(_spec(name), root, split, download)
