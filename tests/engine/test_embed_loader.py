"""Embedding with loader workers: the same features in the same order as in the main process."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from circle_repro.engine.evaluate import model_embedder
from circle_repro.engine.loader import loader_settings


class _Flat(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 8))


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(13):
        path = f"images/{i}.png"
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(tmp_path / path)
        paths.append(path)
    return tmp_path, pd.DataFrame({"path": paths})


def test_workers_give_the_main_process_features_in_row_order(images, monkeypatch):
    root, rows = images
    model = _Flat()
    built = []

    def recording_loader(*args, **kwargs):
        built.append(kwargs)
        return DataLoader(*args, **kwargs)

    monkeypatch.setattr("circle_repro.engine.evaluate.DataLoader", recording_loader)
    alone = model_embedder(model, root, "mnist", batch_size=4, loader=loader_settings(1, accelerator=False))
    with_workers = model_embedder(model, root, "mnist", batch_size=4, loader=loader_settings(3, accelerator=False))
    expected = np.concatenate([alone(rows), alone(rows, True)])
    assert expected.shape == (26, 8) and not np.allclose(expected[:13], expected[13:])
    np.testing.assert_array_equal(np.concatenate([with_workers(rows), with_workers(rows, True)]), expected)
    assert [kwargs["num_workers"] for kwargs in built] == [0, 0, 2, 2]
    assert not any(kwargs["pin_memory"] for kwargs in built)  # pinned memory only for a CUDA model
