"""Published reference points that ranksearch results are compared with.

Figures from Li et al., "Heuristic Rank Selection with Progressively Searching Tensor Ring
Network" (PSTRN, AAAI 2021), for TR-LeNet-5 (20 rank elements R0..R19) and TR-ResNets.
Error = 100 - test accuracy, in percent; params count the whole model.

Cao, Sun, Nguyen, Mamitsuka, "Learning Low-Rank Tensor Cores with Probabilistic l0-Regularized
Rank Selection for Model Compression" (IJCAI 2024): ranks learned in one training run, same
TR-LeNet-5 factorisation; its Fashion-MNIST front is read off the paper's plot (+-0.2 pp) and
its compression is the paper's own count (no rank vectors are published).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedPoint:
    dataset: str
    model: str
    variant: str
    error: float
    ranks: tuple[int, ...]
    params: int
    compression: float


LENET5_DENSE_PARAMS = 429_100
PSTRN_EQUAL_RANK_10_PARAMS = 16_500  # TRN with r = 10 everywhere (26x)

PSTRN_M_FASHION = (8, 14, 8, 18, 14, 18, 22, 28, 6, 24, 20, 14, 20, 20, 10, 22, 20, 20, 6, 20)
PSTRN_S_FASHION = (22, 12, 6, 22, 16, 22, 30, 22, 16, 18, 24, 30, 30, 8, 30, 24, 22, 20, 6, 18)
PSTRN_M_MNIST = (6, 20, 14, 8, 12, 20, 2, 20, 16, 16, 20, 12, 12, 8, 6, 26, 8, 2, 6, 20)
PSTRN_S_MNIST = (2, 24, 18, 8, 8, 30, 18, 30, 22, 26, 22, 26, 30, 14, 30, 8, 24, 12, 10, 30)

PSTRN_POINTS = (
    PublishedPoint("mnist", "lenet5", "PSTRN-M", 0.57, PSTRN_M_MNIST, 25_920, 16.6),
    PublishedPoint("mnist", "lenet5", "PSTRN-S", 0.49, PSTRN_S_MNIST, 65_628, 6.5),
    PublishedPoint("fashion_mnist", "lenet5", "PSTRN-M", 8.05, PSTRN_M_FASHION, 48_780, 8.8),
    PublishedPoint("fashion_mnist", "lenet5", "PSTRN-S", 7.85, PSTRN_S_FASHION, 62_000, 6.9),
    PublishedPoint("cifar10", "resnet20", "PSTRN-M", 11.5, (4, 8, 6, 8, 6, 12, 10), 40_994, 6.6),
    PublishedPoint("cifar10", "resnet20", "PSTRN-S", 9.2, (8, 15, 10, 12, 14, 18, 12), 105_886, 2.5),
    PublishedPoint("cifar10", "resnet32", "PSTRN-M", 9.4, (3, 12, 9, 9, 9, 9, 6), 81_886, 5.7),
    PublishedPoint("cifar10", "resnet32", "PSTRN-S", 8.56, (17, 14, 10, 13, 18, 15, 10), 174_342, 2.7),
)


@dataclass(frozen=True)
class FrontPoint:
    """A published (compression, test accuracy %) point read off a plot."""

    source: str
    compression: float
    accuracy: float


#: Cao et al. 2024, Fashion-MNIST TR-LeNet-5, learned ranks (read off the plot, +-0.2 pp).
CAO_FASHION_FRONT = tuple(FrontPoint("Cao 2024 (learned ranks)", c, a)
                          for c, a in ((12, 91.0), (26, 90.9), (52, 90.1), (65, 89.5), (71, 89.0)))
#: The same plot's equal-rank TR nets (r = 25, 20, 15, 10).
CAO_FASHION_EQUAL = tuple(FrontPoint("Cao 2024 equal-rank TRN", c, a)
                          for c, a in ((4.5, 90.4), (7, 89.8), (12, 89.1), (26, 88.1)))
CAO_FASHION_DENSE_ACCURACY = 92.25
