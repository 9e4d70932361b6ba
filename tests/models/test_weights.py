"""Local ImageNet weights: hash check, missing-file message, weights_only, key matching."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from circle_repro.models import resnet50 as resnet50_module
from circle_repro.models.resnet50 import TORCHVISION_RESNET50, ResNet50Embedding
from circle_repro.models.weights import PublishedWeights, WeightsError, load_into, read_checkpoint


def _published_for(path: Path, name: str = "test checkpoint") -> PublishedWeights:
    """A PublishedWeights entry whose name carries the real SHA-256 prefix of ``path``."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return PublishedWeights(name, f"https://example.invalid/models/{path.stem}-{digest[:8]}.pth")


def test_published_prefix_is_parsed_from_the_file_name() -> None:
    assert [weights.sha256_prefix for weights in TORCHVISION_RESNET50] == ["0676ba61", "11ad3fa6"]
    assert TORCHVISION_RESNET50[0].filename == "resnet50-0676ba61.pth"
    with pytest.raises(ValueError, match="no '-<sha256 prefix>"):
        _ = PublishedWeights("x", "https://example.invalid/model.pth").sha256_prefix


def test_missing_file_says_which_url_to_download_and_where(tmp_path: Path) -> None:
    target = tmp_path / "weights" / "resnet50.pth"
    with pytest.raises(FileNotFoundError) as error:
        ResNet50Embedding(width=1 / 16, weights=target)
    message = str(error.value)
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert str(target) in message and "Nothing is downloaded" in message


def test_a_folder_stands_for_the_published_file_name(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "resnet50-0676ba61.pth")):
        read_checkpoint(tmp_path, TORCHVISION_RESNET50)


def test_file_with_the_wrong_hash_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "resnet50-0676ba61.pth"  # right name, wrong content
    torch.save({"conv1.weight": torch.zeros(1)}, fake)
    with pytest.raises(WeightsError, match="does not start with a published prefix: 0676ba61"):
        ResNet50Embedding(width=1 / 16, weights=fake)


def test_pickle_with_an_arbitrary_global_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "created-by-unpickling"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.mkdir, (str(marker),))

    evil = tmp_path / "exploit.pth"
    evil.write_bytes(pickle.dumps({"weight": Exploit()}, protocol=2))
    with pytest.raises(WeightsError, match=r"refused by torch.load\(weights_only=True\)") as error:
        read_checkpoint(evil, (_published_for(evil),))
    assert isinstance(error.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()


def test_torchvision_layout_round_trips_through_a_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = ResNet50Embedding(width=1 / 16)
    state = dict(source.trunk.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(10, 128), torch.zeros(10)  # a classifier, dropped on load
    file = tmp_path / "resnet50.pth"
    torch.save(state, file)
    monkeypatch.setattr(resnet50_module, "TORCHVISION_RESNET50", (_published_for(file),))

    loaded = ResNet50Embedding(width=1 / 16, weights=file)

    for key, tensor in source.trunk.state_dict().items():
        torch.testing.assert_close(loaded.trunk.state_dict()[key], tensor, msg=key)


def test_load_into_names_missing_unexpected_and_misshapen_keys() -> None:
    module = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    state = {key: tensor.clone() for key, tensor in module.state_dict().items() if key != "1.running_var"}
    state["0.weight"] = torch.zeros(3, 5)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as error:
        load_into(module, state, source="file.pth")
    message = str(error.value)
    assert "missing: 1.running_var" in message
    assert "unexpected: extra.weight" in message
    assert "shape mismatch: 0.weight (3, 5) vs (3, 4)" in message
