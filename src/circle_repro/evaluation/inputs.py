"""Input checks shared by the evaluation protocols; every error names the argument."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_numpy(values: object) -> np.ndarray:
    """A numpy view of an array-like or a (possibly CUDA, possibly grad-tracking) tensor."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def vector(values: object, name: str, length: int | None = None, length_of: str = "") -> np.ndarray:
    """``values`` as a 1-D array, with ``length`` entries (one per row of ``length_of``) if given."""
    array = to_numpy(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries but {length_of} has {length} rows")
    return array


def finite_matrix(values: object, name: str, dtype: type = np.float64) -> np.ndarray:
    """``values`` as a non-empty 2-D float array (integers become ``dtype``) without NaN or inf."""
    array = to_numpy(values)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n × dim), got shape {array.shape}")
    if len(array) == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(dtype)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def finite_tensor(values: object, name: str) -> torch.Tensor:
    """``values`` as a detached, non-empty 2-D float tensor without NaN or inf, on its own device.

    float32 and float64 are kept; other dtypes (integers, bool, half precision) become float32.
    """
    try:
        tensor = torch.as_tensor(values).detach()
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} must be a numeric array or tensor: {error}") from None
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n × dim), got shape {tuple(tensor.shape)}")
    if 0 in tensor.shape:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}): it needs at least one row and one column")
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def unit_rows(values: object, name: str) -> torch.Tensor:
    """:func:`finite_tensor` with every row L2-normalised (an all-zero row stays zero)."""
    return F.normalize(finite_tensor(values, name), dim=1)


def binary_vector(values: object, name: str, length: int, length_of: str) -> np.ndarray:
    """``values`` as a boolean 1-D array of ``length`` entries; bool or 0/1 input is accepted."""
    flags = vector(values, name, length, length_of)
    if flags.dtype != bool:
        if not np.issubdtype(flags.dtype, np.number) or not np.isin(flags, (0, 1)).all():
            raise ValueError(f"{name} must be binary (bool or 0/1), got values {np.unique(flags)[:5]!r}")
        flags = flags.astype(bool)
    return flags
