"""A reader for the IDX file format used by (Fashion-)MNIST, plain or gzipped.

Layout: two zero bytes, a type code, the number of dimensions d, then d big-endian uint32
sizes, then the values in C order (big-endian for multi-byte types).
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from ranksearch.data.core import DataError

_IDX_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | os.PathLike[str], *, dataset: str | None = None) -> np.ndarray:
    """Parse one IDX file (gzipped if its name ends in `.gz`) into a native-endian numpy array.

    Raises DataError naming the file when the header is not IDX or the size disagrees with it.
    """
    path = os.fspath(path)
    where = {"dataset": dataset, "field": "data.path", "value": path}
    fix = "Replace the file with an intact copy (re-download or reinstall the dataset)"
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except FileNotFoundError:
        raise DataError("IDX file not found", **where, hint="Check data.path") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file: {exc}", **where, hint=fix) from None

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"not an IDX file (bad magic number {raw[:4].hex() or 'empty'})",
                        **where, hint=fix)
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"IDX header is truncated or declares {ndim} dimensions",
                        **where, hint=fix)
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"IDX header declares shape {shape} ({expected} data bytes) but the "
                        f"file holds {len(raw) - header}", **where, hint=fix)
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)
