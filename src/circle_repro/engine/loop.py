"""The iteration-based training loop that resumes mid-epoch at its next batch, and the sampler that lets it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from mmengine.dist import get_dist_info
from mmengine.registry import DATA_SAMPLERS, LOOPS
from mmengine.runner import IterBasedTrainLoop
from torch.utils.data import DataLoader, Sampler

from circle_repro.data.samplers import augmentation_seed_base


class ResumableSampler(Sampler[tuple[int, int]]):
    """Wraps a sampler: yields each of its indices with the seed of that image's random augmentation,
    ``(index, seed)`` (:meth:`~circle_repro.data.manifest_dataset.ManifestDataset.__getitem__`), and can start
    its next pass part-way without loading what it skips (:class:`ResumableIterBasedTrainLoop` resumes
    mid-epoch with it). ``set_epoch`` passes through.

    The seed depends only on the run's ``seed``, the epoch, the ``rank`` and the image's position in the
    epoch (:func:`~circle_repro.data.samplers.augmentation_seed_base`), never on which loader worker loads
    the image or on what that worker drew before: a run draws the same augmentations with any number of
    workers, and a resumed run those of an uninterrupted one.
    """

    def __init__(self, sampler: Sampler[int], seed: int = 0, rank: int = 0) -> None:
        self.sampler, self.seed, self.rank = sampler, seed, rank
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def skip_next(self, n_indices: int) -> None:
        """Leave out the first ``n_indices`` indices of the next pass only."""
        self._skip = n_indices

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip, self._skip = self._skip, 0
        first = augmentation_seed_base(self.seed, self.epoch, self.rank)
        for position, index in itertools.islice(enumerate(self.sampler), skip, None):
            yield int(index), (first + position) % 2**63

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


@DATA_SAMPLERS.register_module(name="ResumableSampler")
def build_resumable_sampler(dataset: Any, sampler: dict[str, Any], seed: int | None = None) -> ResumableSampler:
    """A :class:`ResumableSampler` around the sampler that ``sampler`` configures, with the run's seed and rank."""
    seed = 0 if seed is None else seed
    inner = DATA_SAMPLERS.build(sampler, default_args=dict(dataset=dataset, seed=seed))
    return ResumableSampler(inner, seed=seed, rank=get_dist_info()[0])


class _EpochCycler:
    """Batches of a data loader epoch after epoch (``sampler.set_epoch(e)`` before each, as
    mmengine's infinite iterator), starting at overall batch ``start``: the epochs and batches
    before it are skipped by index, not loaded, so neither time nor the RNG is spent on them."""

    def __init__(self, dataloader: DataLoader, start: int) -> None:
        self.dataloader = dataloader
        per_epoch = len(dataloader)
        if per_epoch == 0:
            raise ValueError("the training data yields no batch: too few images or classes for the P x K sampler")
        self.epoch, skip = divmod(start, per_epoch)
        self._iterator = self._begin(skip)

    def _begin(self, skip_batches: int) -> Iterator[Any]:
        sampler = self.dataloader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        if skip_batches and isinstance(sampler, ResumableSampler):
            sampler.skip_next(skip_batches * (self.dataloader.batch_size or 1))
            skip_batches = 0
        iterator = iter(self.dataloader)
        for _ in range(skip_batches):  # another sampler: skip by loading, as mmengine does
            next(iterator)
        return iterator

    def __iter__(self) -> _EpochCycler:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self._iterator = self._begin(0)
            return next(self._iterator)


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """mmengine's IterBasedTrainLoop, except that a resumed run starts at its next batch directly.

    mmengine resumes an iteration-based run by loading and discarding every batch already trained
    on, after the checkpoint's RNG state has been restored: slow for long runs, and the discarded
    batches' random augmentations move the RNG on, so the resumed run differs from an
    uninterrupted one. Here the skipped batches are skipped by index (:class:`_EpochCycler`), and a
    run resumed from a checkpoint is bit-identical to an uninterrupted one, with any number of loader
    workers (:class:`ResumableSampler` seeds each image's augmentation; the loader's own seed draws come
    from its own generator, :class:`~circle_repro.engine.hooks.RngStateHook`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dataloader_iterator = None  # made in run(), once the resumed iteration is known

    def run(self) -> torch.nn.Module:
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        self.dataloader_iterator = _EpochCycler(self.dataloader, start=self._iter)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            self._decide_current_val_interval()
            if (
                self.runner.val_loop is not None
                and self._iter >= self.val_begin
                and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)
            ):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model
