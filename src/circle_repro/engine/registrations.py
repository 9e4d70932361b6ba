"""Register circle-repro's datasets and samplers with mmengine's registries (import for the side effect)."""

from __future__ import annotations

from mmengine.dist import get_dist_info
from mmengine.registry import DATA_SAMPLERS, DATASETS

from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.data.samplers import PKSampler
from circle_repro.engine import batch_transfer as _batch_transfer  # noqa: F401  (registers ImageBatchPreprocessor)
from circle_repro.engine import model as _model  # noqa: F401  (registers EmbeddingModel)

DATASETS.register_module(name="ManifestDataset", module=ManifestDataset)


@DATA_SAMPLERS.register_module(name="PKSampler")
def build_pk_sampler(dataset: ManifestDataset, p: int, k: int, seed: int | None = None) -> PKSampler:
    """A PKSampler over a dataset's labels, seeded by the Runner and split across ranks."""
    rank, world_size = get_dist_info()
    return PKSampler(dataset.labels, p=p, k=k, seed=0 if seed is None else seed, rank=rank, world_size=world_size)
