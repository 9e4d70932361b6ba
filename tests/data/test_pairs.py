import pandas as pd
import pytest

from circle_repro.data.manifest import ManifestError
from circle_repro.data.pairs import read_pairs, sample_pairs, write_pairs


def _frame():
    return pd.DataFrame({"path": [f"{i}.png" for i in range(12)], "label": [i % 3 for i in range(12)], "split": "test"})


def test_pairs_are_balanced_distinct_and_labelled_correctly():
    frame = _frame()
    pairs = sample_pairs(frame, 200, seed=1)
    label = dict(zip(frame["path"], frame["label"], strict=True))
    assert pairs["issame"].sum() == 100
    assert (pairs["path_a"] != pairs["path_b"]).all()
    assert (pairs["path_a"].map(label) == pairs["path_b"].map(label)).tolist() == pairs["issame"].tolist()
    assert pairs["issame"].iloc[:20].nunique() == 2, "shuffled, so every fold holds both kinds"
    assert sample_pairs(frame, 200, seed=1).equals(pairs)


def test_round_trip_and_errors(tmp_path):
    pairs = sample_pairs(_frame(), 10)
    write_pairs(pairs, tmp_path)
    assert read_pairs(tmp_path, known_paths=_frame()["path"]).equals(pairs)
    with pytest.raises(ManifestError, match="not in the manifest"):
        read_pairs(tmp_path, known_paths=pd.Series(["0.png"]))
    pairs.assign(issame=pairs["issame"].astype(int)).to_parquet(tmp_path / "pairs.parquet")
    with pytest.raises(ManifestError, match="'issame' must be boolean"):
        read_pairs(tmp_path)
    with pytest.raises(ManifestError, match="no verification pairs"):
        read_pairs(tmp_path / "none")
    with pytest.raises(ValueError, match="even number"):
        sample_pairs(_frame(), 7)
