"""Published ImageNet weights, read from local files only: hash-checked, tensors only.

Nothing here downloads. A checkpoint is published under a name that ends in the first hex
digits of its SHA-256 (torch.hub's convention, e.g. ``resnet50-0676ba61.pth``); the file's
content must start with that digest, and it is unpickled with ``torch.load(weights_only=True)``
so that a file holding arbitrary Python objects is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[^./]+$")

WeightsPath = str | os.PathLike[str]


@dataclass(frozen=True)
class PublishedWeights:
    """One published checkpoint: what it is and where it is downloaded from."""

    description: str
    url: str

    @property
    def filename(self) -> str:
        """The file name in the URL, which carries the SHA-256 prefix."""
        return self.url.rsplit("/", 1)[-1].split("?", 1)[0]

    @property
    def sha256_prefix(self) -> str:
        """The leading hex digits of the file's SHA-256, as published in its name."""
        match = _HASH_IN_NAME.search(self.filename)
        if match is None:
            raise ValueError(f"{self.url}: the file name carries no '-<sha256 prefix>.<ext>' digest")
        return match.group(1)


class WeightsError(ValueError):
    """A weights file exists but is not the published checkpoint, or does not fit the model."""


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights_path(path: WeightsPath, published: PublishedWeights) -> Path:
    """``path`` itself, or ``path/<published file name>`` where ``path`` is a folder."""
    resolved = Path(path).expanduser()
    return resolved / published.filename if resolved.is_dir() else resolved


def read_checkpoint(path: WeightsPath, known: tuple[PublishedWeights, ...]) -> dict[str, torch.Tensor]:
    """The tensors of a local checkpoint whose SHA-256 starts with one of the ``known`` prefixes.

    ``known[0]`` is the one to download when the file is absent; a folder stands for the file
    under its published name.
    """
    file = resolve_weights_path(path, known[0])
    if not file.is_file():
        raise FileNotFoundError(
            f"{known[0].description} weights not found at {file}. Nothing is downloaded at run time: "
            f"download {known[0].url} and place it at {file} (e.g. curl -L -o {file} '{known[0].url}')."
        )
    digest = sha256_of(file)
    if not any(digest.startswith(weights.sha256_prefix) for weights in known):
        expected = ", ".join(f"{weights.sha256_prefix} ({weights.url})" for weights in known)
        raise WeightsError(
            f"{file}: SHA-256 {digest} does not start with a published prefix: {expected}. "
            "The file is corrupt or is another checkpoint; download it again from the URL."
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(
            f"{file}: refused by torch.load(weights_only=True), not a plain tensor checkpoint: {error}"
        ) from error
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightsError(f"{file}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return dict(state)


def load_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    rename: Callable[[str], str] = lambda key: key,
    ignore: Callable[[str], bool] = lambda key: False,
) -> None:
    """Copy ``state`` into ``module``: each module key ``k`` reads ``state[rename(k)]``.

    Checkpoint keys for which ``ignore`` is true (a classifier) may be left over, and BN
    ``num_batches_tracked`` counters may be absent; any other missing, left-over or misshapen
    entry is an error naming the keys. A ``1 x C`` tensor fills a ``C`` parameter.
    """
    target = module.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    missing, misshapen = [], []
    for key, tensor in target.items():
        name = rename(key)
        if name not in state:
            if not key.endswith("num_batches_tracked"):
                missing.append(name)
            continue
        value = state[name]
        if value.shape != tensor.shape and value.dim() == tensor.dim() + 1 and value.shape[0] == 1:
            value = value.squeeze(0)
        if value.shape != tensor.shape:
            misshapen.append(f"{name} {tuple(value.shape)} vs {tuple(tensor.shape)}")
            continue
        loaded[key] = value
    used = {rename(key) for key in target}
    leftover = sorted(name for name in state if name not in used and not ignore(name))
    problems = [
        f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''} ({len(names)})"
        for label, names in (("missing", missing), ("unexpected", leftover), ("shape mismatch", misshapen))
        if names
    ]
    if problems:
        raise WeightsError(
            f"{source} does not fit {type(module).__name__} ({'; '.join(problems)}); "
            "ImageNet weights need width=1 and in_channels=3"
        )
    module.load_state_dict(loaded, strict=False)
