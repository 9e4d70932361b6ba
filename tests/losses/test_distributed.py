"""``all_gather=True`` on 2 CPU processes (gloo) equals one process holding the whole batch.

Documented semantics (``circle_repro.losses.distributed``): every rank computes the loss of
the gathered batch, so the loss value is the single-process loss and the gradient reaching
the local embeddings is the single-process gradient of those rows, times the world size W;
DDP then averages parameter gradients over the W ranks, which gives back exactly the
single-process parameter gradient. The workers below do that averaging by hand (an
all-reduce sum divided by W, as DDP does) on a small linear embedding model.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from circle_repro.losses import (
    CircleLoss,
    LiftedStructureLoss,
    MultiSimilarityLoss,
    TripletMarginLoss,
)
from circle_repro.losses.distributed import gather_batch
from support import spawn_ranks

WORLD_SIZE = 2
LOCAL_BATCH = 10
IN_DIM, EMB_DIM = 6, 5

FACTORIES = {
    "circle": lambda all_gather: CircleLoss(m=0.25, gamma=32, all_gather=all_gather),
    "multi_similarity": lambda all_gather: MultiSimilarityLoss(beta=10.0, all_gather=all_gather),
    "triplet": lambda all_gather: TripletMarginLoss(margin=0.3, all_gather=all_gather),
    "lifted_structure": lambda all_gather: LiftedStructureLoss(all_gather=all_gather),
}


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of the whole batch (W·B rows), identical on every process.

    Classes are spread over both ranks (each rank's positives are partly on the other rank),
    and class 7 is a singleton, so one anchor is invalid.
    """
    gen = torch.Generator().manual_seed(123)
    inputs = torch.randn(WORLD_SIZE * LOCAL_BATCH, IN_DIM, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 7])
    return inputs, labels[torch.randperm(len(labels), generator=gen)]


def embedding_model() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(IN_DIM, EMB_DIM, bias=False).double()


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        inputs, labels = global_batch()
        local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        results: dict[str, object] = {}
        for name, factory in FACTORIES.items():
            model = embedding_model()
            emb = model(inputs[local])
            emb.retain_grad()
            loss = factory(True)(emb, labels[local])
            loss.backward()
            ddp_grad = model.weight.grad.clone()
            dist.all_reduce(ddp_grad)  # what DDP does: sum over ranks ...
            ddp_grad /= WORLD_SIZE  # ... divided by the world size
            local_loss = factory(False)(emb.detach(), labels[local]).item()
            results[name] = {
                "loss": loss.item(),
                "local_loss": local_loss,
                "emb_grad": emb.grad.clone(),
                "ddp_grad": ddp_grad,
            }
        # The gathered batch is in rank order, with this rank's slice attached to the graph.
        x = inputs[local].clone().requires_grad_(True)
        gathered = gather_batch(x, labels[local])
        results["gathered"] = (gathered.embeddings.detach(), gathered.labels)
        gathered.embeddings.sum().backward()
        results["gather_grad"] = x.grad.clone()
        # Unequal batch sizes fail on every rank, with every rank's size in the message.
        try:
            CircleLoss(all_gather=True)(torch.randn(3 + rank, 4), torch.arange(3 + rank) % 2)
        except ValueError as err:
            results["size_error"] = str(err)
        try:
            x = torch.randn(4, 4)
            CircleLoss(all_gather=True)(x, torch.arange(4), x, torch.arange(4))
        except ValueError as err:
            results["ref_error"] = str(err)
        # No valid anchor anywhere: 0 on every rank, one warning per instance.
        empty_loss = CircleLoss(all_gather=True)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            zeros = [empty_loss(torch.randn(3, 4), torch.full((3,), 5)).item() for _ in range(2)]
        results["empty"] = (zeros, len(record))
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    return spawn_ranks(_worker, tmp, WORLD_SIZE)


def single_process(name: str) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Loss, embedding gradient and parameter gradient of one process on the whole batch."""
    inputs, labels = global_batch()
    model = embedding_model()
    emb = model(inputs)
    emb.retain_grad()
    loss = FACTORIES[name](False)(emb, labels)
    loss.backward()
    return loss.item(), emb.grad, model.weight.grad


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_all_gather_equals_single_process(rank_results, name):
    loss, emb_grad, param_grad = single_process(name)
    assert loss > 0
    for rank, results in enumerate(rank_results):
        got = results[name]
        assert got["loss"] == pytest.approx(loss, rel=1e-10)
        # Without the gather each rank sees only its half: a different loss.
        assert got["local_loss"] != pytest.approx(loss, rel=1e-3)
        local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        # Gradient to the local embeddings: the single-process slice, scaled by W ...
        torch.testing.assert_close(got["emb_grad"], WORLD_SIZE * emb_grad[local], rtol=1e-10, atol=1e-14)
        # ... so that DDP's average over ranks is the single-process parameter gradient.
        torch.testing.assert_close(got["ddp_grad"], param_grad, rtol=1e-10, atol=1e-14)


def test_gather_batch_order_and_local_gradient(rank_results):
    inputs, labels = global_batch()
    for results in rank_results:
        embeddings, gathered_labels = results["gathered"]
        torch.testing.assert_close(embeddings, inputs, rtol=0, atol=0)
        assert torch.equal(gathered_labels, labels)
        # sum() of the gathered rows: gradient 1 reaches the local rows only (not W).
        assert torch.equal(results["gather_grad"], torch.ones(LOCAL_BATCH, IN_DIM).double())


def test_unequal_batch_sizes_fail_clearly_on_every_rank(rank_results):
    for results in rank_results:
        message = results["size_error"]
        assert "same batch size" in message
        assert "rank 0: B=3" in message and "rank 1: B=4" in message


def test_reference_set_is_refused_with_all_gather(rank_results):
    for results in rank_results:
        assert "ref_embeddings" in results["ref_error"]


def test_no_valid_anchor_across_ranks(rank_results):
    for results in rank_results:
        zeros, n_warnings = results["empty"]
        assert zeros == [0.0, 0.0] and n_warnings == 1


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_all_gather_without_process_group_is_local(name):
    assert not dist.is_initialized()
    inputs, labels = global_batch()
    x = inputs.clone().requires_grad_(True)
    y = inputs.clone().requires_grad_(True)
    a = FACTORIES[name](True)(x, labels)
    b = FACTORIES[name](False)(y, labels)
    assert a.item() == b.item() and math.isfinite(a.item())
    a.backward()
    b.backward()
    assert torch.equal(x.grad, y.grad)
