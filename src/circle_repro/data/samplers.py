"""P x K sampling: every batch holds P classes with K images each."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKSampler(Sampler[int]):
    """Yield indices so that each run of ``p * k`` consecutive indices is one P x K batch.

    Per epoch, each class's images are shuffled and cut into groups of K (a class with fewer than K
    images is drawn with replacement); each batch takes one group from each of P distinct classes,
    as many batches as the groups allow, in random order. Batches are dealt round-robin to ranks, so ranks are
    disjoint. The order depends only on (seed, epoch); call ``set_epoch`` each epoch.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        p: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if p < 2 or k < 2:
            raise ValueError(f"P x K sampling needs p >= 2 and k >= 2, got p={p}, k={k}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.labels = np.asarray(labels)
        self.classes, inverse = np.unique(self.labels, return_inverse=True)
        if len(self.classes) < p:
            raise ValueError(f"P x K sampling with p={p} needs at least {p} classes, the data has {len(self.classes)}")
        # every class's indices in one sort (a mask per class would cost images x classes: 5e11 on MS1MV2)
        by_class = np.argsort(inverse, kind="stable")
        self.members = np.split(by_class, np.cumsum(np.bincount(inverse, minlength=len(self.classes)))[:-1])
        self.p, self.k, self.seed, self.rank, self.world_size = p, k, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order ``__iter__`` yields."""
        self.epoch = epoch

    def _groups(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        groups = []
        for members in self.members:
            if len(members) < self.k:
                groups.append([rng.choice(members, size=self.k, replace=True)])
                continue
            shuffled = rng.permutation(members)
            n_groups = len(shuffled) // self.k
            groups.append([shuffled[i * self.k : (i + 1) * self.k] for i in range(n_groups)])
        return groups

    def batches(self) -> list[np.ndarray]:
        """All batches of this epoch for this rank, each an array of p * k dataset indices."""
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = self._groups(rng)
        # Draw from the classes with the most groups left (ties broken at random): this uses every
        # class and yields the largest possible number of batches, which makes __len__ exact.
        heap = [(-len(g), rng.random(), c) for c, g in enumerate(groups)]
        heapq.heapify(heap)
        batches = []
        while len(heap) >= self.p:
            chosen = [heapq.heappop(heap) for _ in range(self.p)]
            batches.append(np.concatenate([groups[c].pop() for _, _, c in chosen]))
            for _, _, c in chosen:
                if groups[c]:
                    heapq.heappush(heap, (-len(groups[c]), rng.random(), c))
        order = rng.permutation(len(batches))
        usable = len(batches) - len(batches) % self.world_size
        return [batches[i] for i in order[self.rank : usable : self.world_size]]

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch.tolist()

    def __len__(self) -> int:
        group_counts = [max(1, len(m) // self.k) for m in self.members]
        n_batches = max_pk_batches(group_counts, self.p)
        return (n_batches // self.world_size) * self.p * self.k


def max_pk_batches(group_counts: Sequence[int], p: int) -> int:
    """The most batches of p distinct classes that classes with these group counts can fill.

    It is the largest t with sum_c min(n_c, t) >= p * t (each class gives at most one group per batch).
    """
    counts = np.asarray(group_counts)
    low, high = 0, int(counts.sum()) // p
    while low < high:
        t = (low + high + 1) // 2
        if np.minimum(counts, t).sum() >= p * t:
            low = t
        else:
            high = t - 1
    return low


def augmentation_seed_base(seed: int, epoch: int, rank: int) -> int:
    """The augmentation seed of the first image that rank ``rank`` loads in epoch ``epoch`` of a run seeded
    ``seed``; the image at position ``i`` of the epoch takes this plus ``i`` (mod 2**63)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, np.uint64)[0]) % 2**63
