"""The sharded class-level head (PartialFC): one process equals the plain head; 2 gloo processes
holding class shards equal one process holding all classes (loss, embedding and proxy gradients)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from circle_repro.losses import LOSSES, ShardedClassifier, build_loss
from circle_repro.losses.partial_fc import full_state_names, shard_range, sharded_cross_entropy
from circle_repro.losses.proxy import NO_TARGET, ProxyClassifier, replace_target, target_values
from support import spawn_ranks

HEADS = {
    "softmax": {},
    "normface": {"gamma": 16},
    "am_softmax": {"m": 0.35, "gamma": 16},
    "arcface": {"m": 0.5, "gamma": 16},
    "circle_classifier": {"m": 0.25, "gamma": 32},
}
WORLD_SIZE = 2
LOCAL_BATCH = 6
EMB_DIM, NUM_CLASSES = 5, 7  # 7 classes: uneven shards [0, 4) and [4, 7)


def test_every_class_level_head_is_covered():
    assert set(HEADS) == {name for name, cls in LOSSES.items() if issubclass(cls, ProxyClassifier)}


@pytest.mark.parametrize("num_classes", [1, 2, 7, 10, 85742])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_are_contiguous_and_balanced(num_classes, world_size):
    ranges = [shard_range(num_classes, rank, world_size) for rank in range(world_size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == num_classes
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    sizes = [end - start for start, end in ranges]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_range_rejects_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="rank"):
        shard_range(10, 2, 2)


def _batch(n=12, dtype=torch.float64, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, EMB_DIM, generator=gen, dtype=dtype), torch.randint(0, NUM_CLASSES, (n,), generator=gen)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_without_a_process_group_the_sharded_head_is_the_plain_head(head):
    assert not dist.is_initialized()
    torch.manual_seed(0)
    plain = build_loss({"type": head, "embedding_dim": EMB_DIM, "num_classes": NUM_CLASSES, **HEADS[head]})
    torch.manual_seed(0)
    sharded = build_loss(
        {"type": head, "embedding_dim": EMB_DIM, "num_classes": NUM_CLASSES, "sharded": True, **HEADS[head]}
    )
    assert isinstance(sharded, ShardedClassifier) and sharded.num_classes == NUM_CLASSES
    assert torch.equal(plain.weight, sharded.head.weight), "same initialisation from the same RNG state"
    x, y = _batch(dtype=torch.float32)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss_plain, loss_sharded = plain(a, y), sharded(b, y)
    assert loss_plain.item() == loss_sharded.item()
    loss_plain.backward()
    loss_sharded.backward()
    assert torch.equal(a.grad, b.grad) and torch.equal(plain.weight.grad, sharded.head.weight.grad)


def test_the_sharded_head_consumes_the_rng_like_the_plain_head():
    torch.manual_seed(0)
    build_loss({"type": "arcface", "embedding_dim": EMB_DIM, "num_classes": NUM_CLASSES})
    after_plain = torch.rand(4)
    torch.manual_seed(0)
    build_loss({"type": "arcface", "embedding_dim": EMB_DIM, "num_classes": NUM_CLASSES, "sharded": True})
    assert torch.equal(after_plain, torch.rand(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sharded_cross_entropy_without_a_group_is_cross_entropy(dtype):
    gen = torch.Generator().manual_seed(1)
    logits = (30 * torch.randn(9, 6, generator=gen)).to(dtype)
    target = torch.randint(0, 6, (9,), generator=gen)
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    mine, reference = sharded_cross_entropy(a, target), F.cross_entropy(b, target)
    torch.testing.assert_close(mine, reference)
    mine.backward()
    reference.backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert mine.dtype == dtype


def test_no_target_rows_keep_their_logits():
    logits = torch.arange(12.0).reshape(3, 4)
    labels = torch.tensor([1, NO_TARGET, 3])
    out = replace_target(logits, labels, torch.tensor([-1.0, -2.0, -3.0]))
    assert out.tolist() == [[0, -1, 2, 3], [4, 5, 6, 7], [8, 9, 10, -3]]
    assert target_values(logits, labels).tolist() == [1, 4, 11]  # the −1 row: a real, discarded value
    assert replace_target(logits[:, :0], labels, torch.zeros(3)).shape == (3, 0)


@pytest.mark.parametrize("head", ["am_softmax", "arcface", "circle_classifier"])
def test_a_no_target_row_has_no_margin(head):
    torch.manual_seed(0)
    loss = build_loss({"type": head, "embedding_dim": EMB_DIM, "num_classes": NUM_CLASSES, **HEADS[head]})
    x, _y = _batch(3)
    marked = loss.logits(x, torch.tensor([NO_TARGET] * 3))
    # Every column is then what the same head gives a non-target column.
    for column in range(NUM_CLASSES):
        other = (torch.full((3,), column) + 1) % NUM_CLASSES
        torch.testing.assert_close(marked[:, column], loss.logits(x, other)[:, column])


def test_sampling_keeps_the_batch_classes_and_is_deterministic_per_seed_and_step():
    head = build_loss(
        {
            "type": "normface",
            "embedding_dim": EMB_DIM,
            "num_classes": 100,
            "sharded": True,
            "sample_rate": 0.1,
            "seed": 4,
        }
    )
    labels = torch.tensor([3, 3, 50, 99])
    first = head.sampled_classes(labels, step=0)
    assert len(first) == 10 and set(labels.tolist()) <= set(first.tolist())
    assert torch.equal(first, head.sampled_classes(labels, step=0))
    assert not torch.equal(first, head.sampled_classes(labels, step=1))
    other_seed = build_loss(
        {
            "type": "normface",
            "embedding_dim": EMB_DIM,
            "num_classes": 100,
            "sharded": True,
            "sample_rate": 0.1,
            "seed": 5,
        }
    )
    assert not torch.equal(first, other_seed.sampled_classes(labels, step=0))
    many = torch.arange(20)  # more classes in the batch than the rate keeps: all of them
    assert torch.equal(head.sampled_classes(many, step=0), many)


def test_sampled_loss_is_the_head_over_the_sampled_classes():
    torch.manual_seed(0)
    head = build_loss(
        {
            "type": "circle_classifier",
            "embedding_dim": EMB_DIM,
            "num_classes": 40,
            "sharded": True,
            "sample_rate": 0.25,
            "m": 0.25,
            "gamma": 32,
        }
    )
    x, _ = _batch(8)
    y = torch.tensor([0, 0, 5, 5, 17, 17, 39, 39])
    chosen = head.sampled_classes(y, step=0)
    loss = head.train()(x, y)
    assert int(head.sampling_step) == 1
    reference = build_loss(
        {"type": "circle_classifier", "embedding_dim": EMB_DIM, "num_classes": len(chosen), "m": 0.25, "gamma": 32}
    )
    with torch.no_grad():
        reference.weight.copy_(head.head.weight[chosen])
    remapped = torch.searchsorted(chosen, y)
    torch.testing.assert_close(loss, reference(x, remapped))
    head.eval()
    torch.testing.assert_close(head(x, y), head.head(x, y))  # no sampling outside training
    assert int(head.sampling_step) == 1


def test_config_errors():
    with pytest.raises(ValueError, match="need sharded: true"):
        build_loss({"type": "arcface", "embedding_dim": 4, "num_classes": 3, "sample_rate": 0.5})
    with pytest.raises(ValueError, match="class-level head"):
        build_loss({"type": "circle", "sharded": True})
    with pytest.raises(ValueError, match="invalid arguments"):
        build_loss({"type": "arcface", "embedding_dim": 4, "num_classes": 3, "sharded": True, "alpha": 1})
    with pytest.raises(ValueError, match="sample_rate"):
        build_loss({"type": "arcface", "embedding_dim": 4, "num_classes": 3, "sharded": True, "sample_rate": 0})
    with pytest.raises(ValueError, match="labels must be class indices"):
        head = build_loss(
            {"type": "normface", "embedding_dim": 4, "num_classes": 3, "sharded": True, "sample_rate": 0.5}
        )
        head.train()(torch.randn(2, 4), torch.tensor([0, 3]))


def test_full_state_names_and_rank_local_state():
    head = build_loss({"type": "softmax", "embedding_dim": 4, "num_classes": 3, "sharded": True})
    assert head.rank_local_state_names() == ["head.weight", "head.class_bias"]
    assert set(full_state_names(torch.nn.ModuleDict({"loss": head}))) == {"loss.head.weight", "loss.head.class_bias"}


# -- 2 processes -----------------------------------------------------------------------------


def _global_batch():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(WORLD_SIZE * LOCAL_BATCH, EMB_DIM, generator=gen, dtype=torch.float64)
    # Each rank's samples have classes of both shards; class 6 only on rank 1.
    y = torch.tensor([0, 4, 1, 5, 2, 3, 6, 0, 5, 6, 1, 4])
    return x, y


def _head(name, sample_rate=1.0):
    torch.manual_seed(0)
    cfg = {"type": name, "embedding_dim": EMB_DIM, "num_classes": NUM_CLASSES, "sharded": True, **HEADS[name]}
    if sample_rate < 1:
        cfg["sample_rate"] = sample_rate
    return build_loss(cfg).double().train()


CASES = [(name, 1.0) for name in sorted(HEADS)] + [("circle_classifier", 0.5), ("softmax", 0.5)]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        x, y = _global_batch()
        local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        results = {}
        for name, rate in CASES:
            head = _head(name, rate)
            emb = x[local].clone().requires_grad_(True)
            loss = head(emb, y[local])
            loss.backward()
            results[(name, rate)] = {
                "shard": (head.class_start, head.class_end),
                "loss": loss.item(),
                "emb_grad": emb.grad.clone(),
                "proxy_grads": {n: getattr(head.head, n).grad.clone() for n in head.sharded_names},
                "full_weight": head.gather_rows(head.head.weight.detach()),
            }
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("partial_fc")
    return spawn_ranks(_worker, tmp, WORLD_SIZE)


@pytest.mark.parametrize(("name", "rate"), CASES)
def test_two_shards_equal_one_process_with_all_classes(rank_results, name, rate):
    x, y = _global_batch()
    head = _head(name, rate)
    emb = x.clone().requires_grad_(True)
    loss = head(emb, y)
    loss.backward()
    assert [r[(name, rate)]["shard"] for r in rank_results] == [(0, 4), (4, 7)]
    for rank, results in enumerate(rank_results):
        got = results[(name, rate)]
        assert got["loss"] == pytest.approx(loss.item(), rel=1e-12)
        local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        # The local embeddings get W x their single-process gradient (DDP's average undoes it) ...
        torch.testing.assert_close(got["emb_grad"], WORLD_SIZE * emb.grad[local], rtol=1e-10, atol=1e-13)
        # ... the proxies of the shard get exactly their single-process gradient rows.
        start, end = got["shard"]
        for param_name, grad in got["proxy_grads"].items():
            full = getattr(head.head, param_name).grad
            torch.testing.assert_close(grad, full[start:end], rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(got["full_weight"], head.head.weight.detach(), rtol=0, atol=0)
