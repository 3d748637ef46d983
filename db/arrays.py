"""Lossless array <-> bytes codec for scans and masks stored in the database.

Arrays are written with ``np.savez_compressed`` under the key ``array`` and read back with
``allow_pickle=False``, so any dtype and shape round-trips bit for bit and loading stored
bytes can never execute code.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np


def array_to_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` (any shape, any numeric/bool dtype) as compressed ``.npz`` bytes."""
    if array.dtype == object:
        raise ValueError("object arrays cannot be stored; pass a numeric or bool array")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, array=array)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    """Decode bytes written by :func:`array_to_bytes` back into the identical array."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        if "array" not in archive:
            raise ValueError("stored bytes do not hold a BrainLoc array")
        return archive["array"]


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (64 characters), as stored beside scans and reports."""
    return hashlib.sha256(data).hexdigest()
