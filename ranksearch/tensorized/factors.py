"""Near-equal factorisations of feature counts into tensor modes."""

from __future__ import annotations

import math
from functools import lru_cache

from ranksearch.tensorized._base import is_int

_TARGET_FACTOR = 6.0  # k=None aims at factors of about this size (PSTRN's shapes use 4..10)


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


@lru_cache(maxsize=1024)
def _best_split(n: int, k: int) -> tuple[int, ...]:
    """Non-decreasing k factors of n minimising the spread of their logs around log(n)/k."""
    ideal = math.log(n) / k
    best: tuple[float, tuple[int, ...]] | None = None

    def walk(rest: int, slots: int, low: int, chosen: tuple[int, ...], cost: float) -> None:
        nonlocal best
        if best is not None and cost >= best[0]:
            return
        if slots == 1:
            if rest >= low:
                total = cost + (math.log(rest) - ideal) ** 2
                if best is None or total < best[0]:
                    best = (total, chosen + (rest,))
            return
        f = low
        while f ** slots <= rest:
            if rest % f == 0:
                walk(rest // f, slots - 1, f, chosen + (f,), cost + (math.log(f) - ideal) ** 2)
            f += 1

    walk(n, k, 1, (), 0.0)
    assert best is not None
    return best[1]


def balanced_factors(n: int, k: int | None = None) -> tuple[int, ...]:
    """Factor `n` into `k` near-equal factors (ascending, product exactly `n`).

    Balanced modes keep tensor-network cores small (1250 -> (5, 5, 5, 10), 320 -> (5, 8, 8),
    20 -> (4, 5)). With `k=None` the number of factors is chosen so they come out near 6, and never
    more than the number of prime factors (so no factor is 1 unless n is 1). An explicit `k` larger
    than that pads with 1s.
    """
    if not (is_int(n) and n >= 1):
        raise ValueError(f"balanced_factors: n must be a positive int, got {n!r}")
    n = int(n)
    if k is None:
        if n == 1:
            return (1,)
        k = max(1, min(len(_prime_factors(n)), round(math.log(n) / math.log(_TARGET_FACTOR))))
    elif not (is_int(k) and k >= 1):
        raise ValueError(f"balanced_factors: k must be a positive int or None, got {k!r}")
    return _best_split(n, int(k))
