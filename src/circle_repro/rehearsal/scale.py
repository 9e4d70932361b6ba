"""How many identities and images a data set has at a fraction of its real size (sources.yaml's counts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """A fraction of the real counts, with floors that keep a split usable: at least ``min_classes``
    identities per split (a P x K sampler needs P) and ``min_per_class`` images per identity (K; a
    retrieval query needs a positive)."""

    fraction: float
    min_classes: int = 2
    min_per_class: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"scale must be in (0, 1], got {self.fraction}")

    def count(self, real: int, floor: int = 1) -> int:
        """``real`` x fraction, rounded, ``floor`` at least."""
        return max(floor, round(real * self.fraction))

    def classes(self, real: int) -> int:
        """Identities of a split of ``real`` identities: the fraction, ``min_classes`` at least, ``real`` at most."""
        return min(real, self.count(real, self.min_classes))

    def images(self, real: int, classes: int) -> int:
        """Images of a split of ``real`` images over ``classes`` identities: ``min_per_class`` each at least."""
        return self.count(real, classes * self.min_per_class)


def spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole numbers, the larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


__all__ = ["Scale", "spread"]
