"""Pareto tools: non-dominated sorting, crowding, hypervolume and rules that pick one trial.

Everything numeric here works on minimisation matrices (one row per point, one column per
objective): callers negate what they maximise. Costs that span orders of magnitude (params,
compression ratio, FLOPs) are compared on a log10 scale wherever a distance matters (knee point),
because that is how a front over compression is read.

Pick expressions, as used by `ranksearch best --pick`:

    max val_accuracy where compression_ratio >= 8
    min params where val_accuracy >= 0.9 and compression_ratio > 4
    knee
    knee where val_accuracy >= 0.85
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ranksearch.errors import RanksearchError
from ranksearch.objectives import LOG_SCALE_METRICS
from ranksearch.objectives import finite as finite_number

#: The objectives a knee is taken over when none are given: the search plane of this project.
DEFAULT_OBJECTIVES: tuple[tuple[str, str], ...] = (("val_accuracy", "max"), ("compression_ratio", "max"))


class PickError(RanksearchError, ValueError):
    """A pick expression could not be parsed, or no trial satisfies it."""


# -- dominance ------------------------------------------------------------------------------------
def _as_matrix(F: Any) -> np.ndarray:
    F = np.asarray(F, dtype=float)
    if F.ndim == 1:
        F = F[:, None] if F.size else F.reshape(0, 1)
    if F.ndim != 2:
        raise ValueError(f"expected a 2-D array of objective values, got shape {F.shape}")
    return F


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when `a` is no worse than `b` everywhere and better somewhere (minimisation).

    Plain Python: callers compare short vectors one pair at a time (the front archive does on
    every insert), where numpy's per-call overhead would dominate; matrices go through
    `non_dominated_sort` / `non_dominated_mask`."""
    better = False
    for x, y in zip(a, b, strict=True):
        if x > y:
            return False
        if x < y:
            better = True
    return better


def _domination_matrix(F: np.ndarray) -> np.ndarray:
    """D[i, j] is True when point i dominates point j."""
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    return le & lt


def non_dominated_sort(F: Any) -> list[np.ndarray]:
    """Split points into fronts: front 0 is non-dominated, front 1 is dominated only by front 0...

    Returns the index arrays of the fronts, best first (Deb et al.'s fast non-dominated sort).
    """
    F = _as_matrix(F)
    n = len(F)
    if n == 0:
        return []
    D = _domination_matrix(F)
    n_dominators = D.sum(axis=0)
    fronts: list[np.ndarray] = []
    current = np.flatnonzero(n_dominators == 0)
    assigned = np.zeros(n, dtype=bool)
    while current.size:
        fronts.append(current)
        assigned[current] = True
        n_dominators = n_dominators - D[current].sum(axis=0)
        current = np.flatnonzero((n_dominators == 0) & ~assigned)
    return fronts


def non_dominated_mask(F: Any) -> np.ndarray:
    """Boolean mask of the points no other point dominates (duplicates all stay)."""
    F = _as_matrix(F)
    if len(F) == 0:
        return np.zeros(0, dtype=bool)
    return ~_domination_matrix(F).any(axis=0)


def front_ranks(F: Any) -> np.ndarray:
    """The front index of every point (0 = non-dominated)."""
    F = _as_matrix(F)
    rank = np.zeros(len(F), dtype=int)
    for k, idx in enumerate(non_dominated_sort(F)):
        rank[idx] = k
    return rank


def crowding_distance(F: Any) -> np.ndarray:
    """NSGA-II crowding distance within one front; the extremes of each objective get inf.

    Each objective is normalised by its range over the front, so objectives in different units
    weigh the same.
    """
    F = _as_matrix(F)
    n, m = F.shape
    if n <= 2:
        return np.full(n, np.inf)
    dist = np.zeros(n)
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        values = F[order, j]
        span = values[-1] - values[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span <= 0:
            continue
        dist[order[1:-1]] += (values[2:] - values[:-2]) / span
    return dist


def rank_and_crowding_order(F: Any) -> np.ndarray:
    """Indices sorted best first: by front, then by decreasing crowding distance (NSGA-II)."""
    F = _as_matrix(F)
    keys: list[tuple[int, float, int]] = []
    for k, idx in enumerate(non_dominated_sort(F)):
        cd = crowding_distance(F[idx])
        keys.extend((k, -float(c), int(i)) for i, c in zip(idx, cd, strict=True))
    return np.array([i for _, _, i in sorted(keys)], dtype=int)


# -- hypervolume ----------------------------------------------------------------------------------
def hypervolume(F: Any, reference: Sequence[float], *, ideal: Sequence[float] | None = None) -> float:
    """Volume dominated by the points and bounded by `reference` (minimisation).

    Points not strictly better than the reference in every objective add nothing. With `ideal`,
    objectives are first normalised so that `ideal` maps to 0 and `reference` to 1, and the value
    is the dominated fraction of that unit box (comparable across problems).
    """
    F = _as_matrix(F)
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 1 or (len(F) and F.shape[1] != ref.size):
        raise ValueError(f"reference point {list(ref)} does not match {F.shape[1]} objectives")
    if ideal is not None:
        lo = np.asarray(ideal, dtype=float)
        scale = ref - lo
        if np.any(scale <= 0):
            raise ValueError(f"ideal point {list(lo)} must be better than the reference {list(ref)}")
        F = (F - lo) / scale
        ref = np.ones_like(ref)
    if len(F) == 0:
        return 0.0
    F = F[np.all(np.isfinite(F), axis=1) & np.all(F < ref, axis=1)]
    if len(F) == 0:
        return 0.0
    F = F[non_dominated_mask(F)]
    return float(_hv(np.unique(F, axis=0), ref))


def _hv(F: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of mutually non-dominated points, all strictly inside `ref`."""
    m = F.shape[1]
    if m == 1:
        return float(ref[0] - F[:, 0].min())
    if m == 2:
        order = np.argsort(F[:, 0], kind="stable")
        area, best_y = 0.0, ref[1]
        xs, ys = F[order, 0], F[order, 1]
        for i in range(len(xs)):
            if ys[i] < best_y:
                x_next = ref[0]
                area += (x_next - xs[i]) * (best_y - ys[i])
                best_y = ys[i]
        return float(area)
    # Slice along the last objective: each slab is the (m-1)-volume of the points below it.
    order = np.argsort(F[:, -1], kind="stable")
    F = F[order]
    total = 0.0
    for i in range(len(F)):
        upper = F[i + 1, -1] if i + 1 < len(F) else ref[-1]
        depth = upper - F[i, -1]
        if depth <= 0:
            continue
        sub = F[: i + 1, :-1]
        sub = sub[non_dominated_mask(sub)]
        total += depth * _hv(np.unique(sub, axis=0), ref[:-1])
    return float(total)


@dataclass(frozen=True)
class PlaneHypervolume:
    """Hypervolume in the (validation accuracy, log10 compression ratio) plane, both maximised.

    The reference point is part of the value: two numbers measured from different references
    cannot be compared, so it travels with them.
    """

    value: float
    reference: tuple[float, float]
    n_points: int
    front_size: int

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "reference": list(self.reference),
                "n_points": self.n_points, "front_size": self.front_size}


def plane_hypervolume(
    accuracy: Sequence[float], compression: Sequence[float], reference: Sequence[float] = (0.5, 0.0),
) -> PlaneHypervolume:
    """Hypervolume of (accuracy, compression ratio) pairs in the accuracy / log10-compression plane.

    Non-finite pairs are skipped. `reference` is (accuracy, log10 compression ratio).
    """
    acc = np.asarray(accuracy, dtype=float).reshape(-1)
    comp = np.asarray(compression, dtype=float).reshape(-1)
    if acc.shape != comp.shape:
        raise ValueError("accuracy and compression must have the same length")
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.log10(comp)
    keep = np.isfinite(acc) & np.isfinite(logc)
    F = -np.column_stack([acc[keep], logc[keep]])
    ref = (float(reference[0]), float(reference[1]))
    value = hypervolume(F, (-ref[0], -ref[1])) if len(F) else 0.0
    front = int(non_dominated_mask(F).sum()) if len(F) else 0
    return PlaneHypervolume(value=value, reference=ref, n_points=int(keep.sum()), front_size=front)


# -- knee -----------------------------------------------------------------------------------------
def knee_point(F: Any) -> int:
    """Index of the knee of a front (minimisation, any number of points).

    Objectives are normalised to [0, 1] over the non-dominated points. With two objectives the knee
    is the front point farthest from the line through the two extremes (where giving up a little of
    one objective costs the most of the other); otherwise it is the point closest to the ideal.
    """
    F = _as_matrix(F)
    if len(F) == 0:
        raise ValueError("no points to take a knee of")
    candidates = np.flatnonzero(non_dominated_mask(F))
    P = F[candidates]
    lo, hi = P.min(axis=0), P.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    N = (P - lo) / span
    if len(P) <= 2 or N.shape[1] != 2:
        return int(candidates[int(np.argmin(np.linalg.norm(N, axis=1)))])
    a = N[np.argmin(N[:, 0])]
    b = N[np.argmin(N[:, 1])]
    d = b - a
    length = float(np.hypot(*d))
    origin_side = np.sign(d[0] * -a[1] - d[1] * -a[0])
    if length == 0 or origin_side == 0:
        return int(candidates[int(np.argmin(np.linalg.norm(N, axis=1)))])
    # Distance from the extremes' chord, positive on the ideal's side: the bulge of the front.
    dist = origin_side * (d[0] * (N[:, 1] - a[1]) - d[1] * (N[:, 0] - a[0])) / length
    return int(candidates[int(np.argmax(dist))])


# -- selection rules ------------------------------------------------------------------------------
_OPS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
}


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    value: float

    def holds(self, row: Mapping[str, Any]) -> bool:
        v = finite_number(row.get(self.metric))
        return v is not None and _OPS[self.op](v, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {_fmt(self.value)}"


@dataclass(frozen=True)
class Pick:
    """A parsed selection rule: `max`/`min` one metric, or `knee`, subject to conditions."""

    kind: str  # "max", "min" or "knee"
    metric: str | None = None
    conditions: tuple[Condition, ...] = ()

    def __str__(self) -> str:
        head = self.kind if self.kind == "knee" else f"{self.kind} {self.metric}"
        if self.conditions:
            head += " where " + " and ".join(str(c) for c in self.conditions)
        return head

    def metrics(self) -> tuple[str, ...]:
        names = [self.metric] if self.metric else []
        return tuple(dict.fromkeys(names + [c.metric for c in self.conditions]))

    def select(
        self, rows: Sequence[Mapping[str, Any]], *,
        objectives: Sequence[tuple[str, str]] = DEFAULT_OBJECTIVES,
    ) -> int:
        """Index of the chosen row. Rows are metric dicts; rows lacking a needed value are skipped.

        Raises PickError naming the missing metric or the unmet condition when nothing qualifies.
        """
        if not rows:
            raise PickError(f"'{self}': there are no finished trials to pick from")
        needed = list(self.metrics()) + ([n for n, _ in objectives] if self.kind == "knee" else [])
        known = sorted({k for r in rows for k, v in r.items() if finite_number(v) is not None})
        for name in dict.fromkeys(needed):
            if name not in known:
                present = f"; metrics present: {', '.join(known)}" if known else ""
                raise PickError(f"'{self}': no trial has a value for '{name}'{present}")
        eligible = [i for i, r in enumerate(rows) if all(c.holds(r) for c in self.conditions)]
        if not eligible:
            raise PickError(f"'{self}': no trial satisfies it; {self._closest(rows)}")
        if self.kind == "knee":
            return self._knee(rows, eligible, objectives)
        assert self.metric is not None
        scored = [(i, finite_number(rows[i].get(self.metric))) for i in eligible]
        scored = [(i, v) for i, v in scored if v is not None]
        if not scored:
            raise PickError(f"'{self}': no trial that satisfies the conditions has '{self.metric}'")
        sign = -1.0 if self.kind == "max" else 1.0
        return min(scored, key=lambda iv: (sign * iv[1], iv[0]))[0]

    def _knee(self, rows, eligible, objectives) -> int:
        points, index = [], []
        for i in eligible:
            vec = []
            for name, sense in objectives:
                v = finite_number(rows[i].get(name))
                if v is None or (name in LOG_SCALE_METRICS and v <= 0):
                    break
                v = math.log10(v) if name in LOG_SCALE_METRICS else v
                vec.append(-v if sense == "max" else v)
            else:
                points.append(vec)
                index.append(i)
        if not points:
            names = ", ".join(n for n, _ in objectives)
            raise PickError(f"'{self}': no eligible trial has finite values for {names}")
        return index[knee_point(np.array(points))]

    def _closest(self, rows) -> str:
        parts = []
        for c in self.conditions:
            vals = [v for v in (finite_number(r.get(c.metric)) for r in rows) if v is not None]
            if not vals:
                continue
            best = max(vals) if c.op in (">=", ">") else min(vals) if c.op in ("<=", "<") else None
            n_ok = sum(c.holds(r) for r in rows)
            text = f"{n_ok} of {len(rows)} trials have {c}"
            if best is not None and n_ok == 0:
                text += f" (the best is {_fmt(best)})"
            parts.append(text)
        return "; ".join(parts) + "; loosen the condition" if parts else "loosen the condition"


_TOKEN = re.compile(r"\s*(>=|<=|==|>|<|[A-Za-z_][\w.]*|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def parse_pick(text: str) -> Pick:
    """Parse a pick expression (see the module docstring) into a `Pick`."""
    if not isinstance(text, str) or not text.strip():
        raise PickError("empty pick expression; use e.g. 'knee', 'max val_accuracy where "
                        "compression_ratio >= 8' or 'min params where val_accuracy >= 0.9'")
    tokens, pos, raw = [], 0, text.strip()
    while pos < len(raw):
        m = _TOKEN.match(raw, pos)
        if not m or not m.group(1):
            raise PickError(f"pick expression '{raw}': cannot read '{raw[pos:].strip()}'; "
                            "use metric names, numbers and >=, <=, >, <, ==")
        tokens.append(m.group(1))
        pos = m.end()
        while pos < len(raw) and raw[pos].isspace():
            pos += 1
    head = tokens[0].lower()
    rest = tokens[1:]
    if head == "knee":
        metric = None
    elif head in ("max", "min"):
        if not rest or not _is_name(rest[0]) or rest[0].lower() == "where":
            raise PickError(f"pick expression '{raw}': '{head}' needs a metric name, e.g. "
                            f"'{head} val_accuracy'")
        metric, rest = rest[0], rest[1:]
    else:
        raise PickError(f"pick expression '{raw}' must start with 'max', 'min' or 'knee' "
                        f"(got '{tokens[0]}')")
    conditions: list[Condition] = []
    if rest:
        if rest[0].lower() != "where":
            raise PickError(f"pick expression '{raw}': expected 'where' after the metric, "
                            f"got '{rest[0]}'")
        rest = rest[1:]
        while True:
            if len(rest) < 3:
                raise PickError(f"pick expression '{raw}': incomplete condition; write "
                                "'METRIC >= NUMBER'")
            name, op, num = rest[:3]
            if not _is_name(name):
                raise PickError(f"pick expression '{raw}': '{name}' is not a metric name")
            if op not in _OPS:
                raise PickError(f"pick expression '{raw}': '{op}' is not a comparison; use one "
                                f"of {', '.join(_OPS)}")
            value = finite_number(num) if not _is_name(num) else None
            if value is None:
                raise PickError(f"pick expression '{raw}': '{num}' is not a number")
            conditions.append(Condition(name, op, value))
            rest = rest[3:]
            if not rest:
                break
            if rest[0].lower() != "and":
                raise PickError(f"pick expression '{raw}': join conditions with 'and', "
                                f"got '{rest[0]}'")
            rest = rest[1:]
    return Pick(kind=head, metric=metric, conditions=tuple(conditions))


def pick(rows: Sequence[Mapping[str, Any]], expression: str | Pick, *,
         objectives: Sequence[tuple[str, str]] = DEFAULT_OBJECTIVES) -> int:
    """Index of the row an expression picks (parse + select)."""
    rule = expression if isinstance(expression, Pick) else parse_pick(expression)
    return rule.select(rows, objectives=objectives)


def max_subject_to(rows: Sequence[Mapping[str, Any]], metric: str, *conditions: Condition) -> int:
    """The row with the largest `metric` among those meeting every condition."""
    return Pick("max", metric, tuple(conditions)).select(rows)


def min_subject_to(rows: Sequence[Mapping[str, Any]], metric: str, *conditions: Condition) -> int:
    """The row with the smallest `metric` among those meeting every condition."""
    return Pick("min", metric, tuple(conditions)).select(rows)


# -- helpers --------------------------------------------------------------------------------------
def _is_name(token: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][\w.]*", token))


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"
