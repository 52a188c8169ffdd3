"""Checkpoints without pickle: an ``.npz`` of the state dict plus one JSON metadata entry.

The metadata holds the model's ``config`` (from :mod:`nncore.models`), so ``load_checkpoint``
rebuilds the network, and anything the caller adds (dataset, normalisation, metrics...).
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "METADATA_KEY"]

METADATA_KEY = "__metadata__"
FORMAT = "nncore-checkpoint-1"


def save_checkpoint(model, path, metadata: dict | None = None) -> Path:
    """Writes ``model``'s parameters and ``metadata`` (JSON-serialisable) to ``path`` atomically.

    The metadata keys "format" and "model" are the checkpoint's own (its format tag and the
    model's config, which ``load_checkpoint`` rebuilds the network from).
    """
    path = Path(path)
    reserved = sorted({"format", "model"} & set(metadata or {}))
    if reserved:
        raise ValueError(f"save_checkpoint: metadata keys {reserved} are reserved (the format tag "
                         "and the model's config)")
    meta = {"format": FORMAT, **(metadata or {})}
    if getattr(model, "config", None) is not None:
        meta["model"] = model.config
    state = model.state_dict()
    if METADATA_KEY in state:
        raise ValueError(f"save_checkpoint: a parameter may not be named {METADATA_KEY!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        _write_npz(partial, {**state, METADATA_KEY: np.array(json.dumps(meta))})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write_npz(path: Path, arrays: dict) -> None:
    """An uncompressed ``.npz`` as np.savez writes it, one NAME.npy per entry. np.savez takes the
    names as keyword arguments, so parameters named "file" or "allow_pickle" broke or vanished."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)


def read_checkpoint(path) -> tuple[dict, dict]:
    """(state dict of NumPy arrays, metadata) from ``path``; ValueError naming the file if it is corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} " + ("is not a file" if path.exists()
                                                        else "does not exist"))
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as error:  # BadZipFile, EOFError, ValueError (pickled or truncated entries), ...
        raise ValueError(f"checkpoint {path} is corrupt: {type(error).__name__}: {error}") from error
    if METADATA_KEY not in arrays:
        raise ValueError(f"checkpoint {path} is corrupt: no {METADATA_KEY} entry (not an nncore checkpoint?)")
    try:
        meta = json.loads(str(arrays.pop(METADATA_KEY)))
    except ValueError as error:
        raise ValueError(f"checkpoint {path} is corrupt: bad metadata: {error}") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is corrupt: its metadata is not a {FORMAT} record")
    return arrays, meta


def load_checkpoint(path, model=None, device: str = "cpu"):
    """(model, metadata) from ``path``. Without ``model``, the network is rebuilt from the
    metadata's model config on ``device``; with one, its parameters are loaded in place."""
    from . import models

    state, meta = read_checkpoint(path)
    if model is None:
        if "model" not in meta:
            raise ValueError(f"checkpoint {path} does not record its model: pass model=... to load it")
        try:
            model = models.build(meta["model"], device=device)
        except (TypeError, ValueError) as error:
            raise ValueError(f"checkpoint {path}: cannot rebuild model {meta['model']}: {error}") from error
    try:
        model.load_state_dict(state)
    except ValueError as error:
        raise ValueError(f"checkpoint {path} does not fit the model: {error}") from error
    return model, meta
