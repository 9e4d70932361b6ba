"""mmengine metric adapters on synthetic data samples, without a Runner."""

import numpy as np
import pytest
import torch
from mmengine.registry import METRICS

from circle_repro.engine import metrics as metric_module  # noqa: F401  (registers the metrics)
from circle_repro.evaluation import reid, verification
from circle_repro.evaluation.retrieval import retrieval_metrics


def feed(metric, batches):
    for data_batch, data_samples in batches:
        metric.process(data_batch, data_samples)
    return metric.evaluate(sum(len(samples) for _, samples in batches))


def batched(embeddings, fields, batch_size=7, as_dicts=False):
    """Collated batches: data_batch holds tensors/lists per field; data_samples the model output."""
    batches = []
    for start in range(0, len(embeddings), batch_size):
        part = slice(start, start + batch_size)
        data_batch = {"inputs": None}
        for key, values in fields.items():
            chunk = values[part]
            data_batch[key] = list(chunk) if isinstance(chunk, list) else torch.as_tensor(chunk)
        output = torch.as_tensor(embeddings[part])
        samples = [{"embedding": row} for row in output] if as_dicts else output
        batches.append((data_batch, samples))
    return batches


def test_retrieval_metric_equals_library():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 50)
    embeddings = rng.normal(size=(50, 8)).astype(np.float32) + labels[:, None]
    metric = METRICS.build(dict(type="RetrievalMetric", ks=(1, 4)))
    result = feed(metric, batched(embeddings, {"labels": labels}))
    expected = retrieval_metrics(embeddings, labels, (1, 4))
    assert result == {f"retrieval/{k}": pytest.approx(v) for k, v in expected.items()}
    assert metric.results == []  # mmengine clears the records after evaluate


@pytest.mark.parametrize("how", ["role", "is_query", "num_query"])
def test_reid_metric_equals_library(how):
    rng = np.random.default_rng(1)
    n_q, n_g = 20, 80
    pids = np.r_[rng.integers(1, 8, n_q), rng.integers(0, 8, n_g)]
    cams = rng.integers(0, 3, n_q + n_g)
    embeddings = (rng.normal(size=(n_q + n_g, 8)) + pids[:, None]).astype(np.float32)
    fields = {"labels": pids, "camera": cams}
    kwargs = {}
    if how == "role":
        fields["role"] = ["query"] * n_q + ["gallery"] * n_g
    elif how == "is_query":
        fields["is_query"] = np.arange(n_q + n_g) < n_q
    else:
        kwargs["num_query"] = n_q
    metric = METRICS.build(dict(type="ReidMetric", ranks=(1, 5), **kwargs))
    result = feed(metric, batched(embeddings, fields, as_dicts=how == "role"))
    q, g = slice(0, n_q), slice(n_q, None)
    expected = reid.evaluate(embeddings[q], pids[q], cams[q], embeddings[g], pids[g], cams[g])
    assert result == {
        "reid/Rank-1": pytest.approx(expected.rank(1)),
        "reid/Rank-5": pytest.approx(expected.rank(5)),
        "reid/mAP": pytest.approx(expected.mAP),
        "reid/mINP": pytest.approx(expected.mINP),
    }


@pytest.mark.parametrize("with_pair_ids", [False, True])
def test_verification_metric_equals_library(with_pair_ids):
    rng = np.random.default_rng(2)
    n_pairs = 200
    issame = rng.random(n_pairs) < 0.5
    first = rng.normal(size=(n_pairs, 16))
    second = np.where(issame[:, None], first, 0) + rng.normal(size=(n_pairs, 16))
    embeddings = np.empty((2 * n_pairs, 16), dtype=np.float32)
    embeddings[0::2], embeddings[1::2] = first, second
    fields = {"issame": np.repeat(issame, 2)}
    order = np.arange(2 * n_pairs)
    if with_pair_ids:  # pairs identified by id, samples in shuffled order
        fields["pair_id"] = np.repeat(np.arange(n_pairs), 2)
        order = rng.permutation(2 * n_pairs)
        fields = {k: v[order] for k, v in fields.items()}
    metric = METRICS.build(dict(type="VerificationMetric", fars=(0.01, 0.1)))
    result = feed(metric, batched(embeddings[order], fields))
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    scores = np.sum(unit[0::2] * unit[1::2], axis=1)
    mean, std = verification.kfold_accuracy(scores, issame)
    tars = verification.tar_at_far(scores, issame, (0.01, 0.1))
    assert result == {
        "verification/accuracy": pytest.approx(mean),
        "verification/accuracy_std": pytest.approx(std),
        "verification/TAR@FAR=0.01": pytest.approx(tars[0.01]),
        "verification/TAR@FAR=0.1": pytest.approx(tars[0.1]),
    }


def test_verification_metric_flip_sum():
    rng = np.random.default_rng(3)
    emb, flipped = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    issame = np.repeat(rng.random(20) < 0.5, 2)
    samples = [
        {"embedding": torch.as_tensor(e), "embedding_flip": torch.as_tensor(f)}
        for e, f in zip(emb, flipped, strict=True)
    ]
    metric = METRICS.build(dict(type="VerificationMetric", n_folds=4))
    metric.process({"issame": torch.as_tensor(issame)}, samples)
    result = metric.evaluate(40)
    unit = verification.flip_sum_embeddings(emb, flipped)
    scores = np.sum(unit[0::2] * unit[1::2], axis=1)
    assert result["verification/accuracy"] == pytest.approx(verification.kfold_accuracy(scores, issame[0::2], 4)[0])


def test_missing_fields_raise_clear_errors():
    metric = METRICS.build(dict(type="ReidMetric"))
    metric.process({"labels": torch.tensor([1, 2])}, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="camera"):
        metric.evaluate(2)
    metric = METRICS.build(dict(type="RetrievalMetric"))
    metric.process({"inputs": None}, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="labels"):
        metric.evaluate(2)
    metric = METRICS.build(dict(type="VerificationMetric"))
    metric.process({"issame": torch.tensor([1, 1, 0])}, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="odd number"):
        metric.evaluate(3)
