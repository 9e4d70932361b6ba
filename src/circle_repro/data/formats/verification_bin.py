"""insightface ``.bin`` verification packs (lfw.bin, cfp_fp.bin, agedb_30.bin, ...), loaded safely.

A pack is ``pickle.dump((bins, issame_list), f)``: ``bins`` holds 2 x P encoded images in pair order
(``bins[2i]``, ``bins[2i + 1]`` = pair i) and ``issame_list`` P booleans (insightface
``recognition/arcface_torch/eval/verification.py::load_bin``; builders ``src/data/lfw2pack.py``,
``cfp2pack.py``, ``agedb2pack2.py``). Elements are raw JPEG ``bytes`` (lfw2pack) or the 1-D uint8
numpy arrays ``cv2.imencode`` returns (cfp/agedb). Old packs were written by Python 2, whose ``str``
must be read back as ``bytes`` (``encoding="bytes"``).

Unpickling runs code named by the file, so packs are read with :class:`RestrictedUnpickler`, which
resolves only the globals listed in :data:`ALLOWED_GLOBALS` and refuses any other with
:class:`UnsafePickleError`.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""

    def __init__(self, path: Path | str, module: str, name: str) -> None:
        self.path = str(path)
        self.module = module
        self.name = name
        super().__init__(
            f"{self.path}: refusing to load global {module}.{name}: a verification pack only holds "
            f"image bytes/uint8 arrays and booleans (allowed: {', '.join(sorted(_ALLOWED_NAMES))}); "
            "the file is not a genuine pack or has been tampered with"
        )


class VerificationBinError(ValueError):
    """A pack that unpickles but does not have the (images, issame) structure."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes: only the latin-1 round trip."""
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only for latin-1 bytes, got encoding {encoding!r}")
    return codecs.encode(text, "latin-1", errors)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy _reconstruct of {subtype!r} refused (only numpy.ndarray)")
    return _multiarray._reconstruct(subtype, shape, dtype)


# (module, name) as written in the pickle -> the object it resolves to. Python 2 and numpy < 2
# spell numpy's private module ``numpy.core``; numpy >= 2 writes ``numpy._core``.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,  # numpy scalars (e.g. numpy.bool_ flags)
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # protocol-5 arrays
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("_codecs", "encode"): _latin1_encode,  # bytes in protocol-2 pickles written by Python 3
}
_ALLOWED_NAMES = {f"{module}.{name}" for module, name in ALLOWED_GLOBALS}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; ``path`` names the file in errors."""

    def __init__(self, file: Any, *, path: Path | str = "<pickle>", encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding, fix_imports=False)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(self.path, module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"{self.path}: persistent ids are not allowed in a verification pack")


def restricted_load(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (Python 2 ``str`` comes back as ``bytes``)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), path=path).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as err:
        raise VerificationBinError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None


def _image_bytes(path: Path, index: int, item: Any) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    is_column = item.ndim == 1 or (item.ndim == 2 and item.shape[1] == 1) if isinstance(item, np.ndarray) else False
    if is_column and item.dtype == np.uint8:
        return item.tobytes()  # cv2.imencode returns an (n, 1) or (n,) uint8 array
    raise VerificationBinError(
        f"{path}: image {index} is {type(item).__name__}"
        f"{getattr(item, 'shape', '')}, expected encoded image bytes or a 1-D uint8 array"
    )


def load_verification_bin(path: str | os.PathLike[str]) -> tuple[list[bytes] | np.ndarray, np.ndarray]:
    """``(images, issame)`` of a pack: ``images`` are encoded-image ``bytes`` (or, for a pack that stores
    one decoded array, that ``np.ndarray`` of 2 x P images), ``issame`` a bool array of P pairs."""
    path = Path(path)
    obj = restricted_load(path)
    if not (isinstance(obj, tuple | list) and len(obj) == 2):
        raise VerificationBinError(f"{path}: expected a pickled (images, issame) pair, got {type(obj).__name__}")
    bins, issame_raw = obj
    if isinstance(bins, np.ndarray):
        images: list[bytes] | np.ndarray = bins
    elif isinstance(bins, list | tuple):
        images = [_image_bytes(path, i, item) for i, item in enumerate(bins)]
    else:
        raise VerificationBinError(f"{path}: images must be a list or an array, got {type(bins).__name__}")
    issame_array = np.asarray(issame_raw)
    if issame_array.ndim != 1:
        raise VerificationBinError(f"{path}: issame must be a flat list, got shape {issame_array.shape}")
    if issame_array.dtype != np.bool_:
        if issame_array.size and not (
            np.issubdtype(issame_array.dtype, np.integer) and np.isin(issame_array, (0, 1)).all()
        ):
            raise VerificationBinError(f"{path}: issame must hold booleans, got dtype {issame_array.dtype}")
        issame_array = issame_array.astype(bool)
    if len(images) != 2 * len(issame_array):
        raise VerificationBinError(
            f"{path}: {len(images)} images for {len(issame_array)} pairs; a pack holds exactly 2 images per pair"
        )
    return images, issame_array


__all__ = [
    "ALLOWED_GLOBALS",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "VerificationBinError",
    "load_verification_bin",
    "restricted_load",
]
