"""Reading and writing IDX files, the format MNIST and Fashion-MNIST ship in.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the
number of dimensions), one big-endian uint32 per dimension, then the data in
big-endian row-major order. Files may be gzip-compressed; the reader detects
that from the content, not the file name.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DatasetError", "read_idx", "write_idx", "IDX_DTYPES"]

# IDX dtype code -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetError(ValueError):
    """A data file is missing pieces, corrupt, or not what it claims to be."""


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip data."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read file ({error.strerror or error})") from error
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return _gunzip_idx(raw)
    except zlib.error as error:
        raise DatasetError(
            f"{path}: bad gzip data, the file is truncated or corrupt ({error})"
        ) from error


def _gunzip_idx(raw: bytes) -> bytes:
    """gzip data inflated no further than its IDX header allows, plus a byte to show there is
    more (a small file could inflate to gigabytes before the size check); the whole stream
    must end there, its checksum verified. zlib.error for anything else."""
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    content = stream.decompress(raw, 4)
    if len(content) == 4:
        content += stream.decompress(stream.unconsumed_tail, 4 * content[3])
        header_size = 4 + 4 * content[3]
        if len(content) == header_size and content[2] in IDX_DTYPES:  # else read_idx says why
            shape = struct.unpack(f">{content[3]}I", content[4:header_size])
            data_size = math.prod(shape) * IDX_DTYPES[content[2]].itemsize
            content += stream.decompress(stream.unconsumed_tail, data_size + 1)
            if not stream.eof and len(content) <= header_size + data_size:
                content += stream.decompress(stream.unconsumed_tail, 1)  # the end, or more data
            if len(content) <= header_size + data_size:  # all of it: the stream must end here
                if not stream.eof:
                    raise zlib.error("the gzip stream ends early")
                if stream.unused_data:
                    raise zlib.error(f"{len(stream.unused_data)} bytes after the gzip stream")
    return content


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip'd) into a native-endian NumPy array.

    Raises DatasetError (a ValueError) naming the file and the problem: bad gzip
    data, bad magic number, unknown dtype code, or a data size that does not
    match the header.
    """
    path = Path(path)
    content = _read_bytes(path)
    if len(content) < 4:
        raise DatasetError(f"{path}: truncated IDX header ({len(content)} bytes)")
    zero0, zero1, dtype_code, ndim = content[0], content[1], content[2], content[3]
    if zero0 != 0 or zero1 != 0:
        raise DatasetError(
            f"{path}: bad magic number 0x{content[:4].hex()} (an IDX file starts with two zero bytes)"
        )
    if dtype_code not in IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX dtype code 0x{dtype_code:02x}")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DatasetError(
            f"{path}: truncated IDX header (needs {header_size} bytes for {ndim} dims, "
            f"file has {len(content)})"
        )
    shape = struct.unpack(f">{ndim}I", content[4:header_size])
    dtype = IDX_DTYPES[dtype_code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: in int64, dims (2**31,) * 3 wrapped to 0 bytes
    actual = len(content) - header_size
    if actual != expected:
        raise DatasetError(
            f"{path}: size mismatch, header says shape {shape} of {dtype.name} "
            f"({expected} data bytes) but the file has {'more' if actual > expected else actual} "
            "data bytes"
        )
    data = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _idx_dtype_code(dtype: np.dtype) -> int:
    for code, idx_dtype in IDX_DTYPES.items():
        if idx_dtype.kind == dtype.kind and idx_dtype.itemsize == dtype.itemsize:
            return code
    supported = ", ".join(sorted(d.newbyteorder("=").name for d in IDX_DTYPES.values()))
    raise TypeError(f"write_idx: dtype {dtype} has no IDX code (supported: {supported})")


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write `array` as an IDX file; gzip'd when the name ends in '.gz'.

    The gzip header carries no name or time, so equal arrays give equal files.
    The file is written to '<path>.part' and renamed into place.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim > 255:
        raise ValueError(f"write_idx: at most 255 dimensions, got {array.ndim}")
    if any(n >= 2**32 for n in array.shape):
        raise ValueError(f"write_idx: dimensions must fit in uint32, got shape {array.shape}")
    code = _idx_dtype_code(array.dtype)
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.name.endswith(".gz"):
        content = gzip.compress(content, compresslevel=9, mtime=0)
    partial = path.with_name(path.name + ".part")
    try:
        partial.write_bytes(content)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
