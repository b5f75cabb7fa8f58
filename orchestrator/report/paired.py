"""A cell's task results paired with the reference's, task by task: the flips each way and an exact McNemar
test, so that "changed" and "no change detected" are said honestly. Two accuracies a point apart inside
overlapping intervals say nothing; 23 answers of 400 flipped one way say a lot."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Paired:
    n: int
    right_to_wrong: int  # the reference right, the cell wrong
    wrong_to_right: int
    p: float             # exact two-sided McNemar p-value (1.0: no discordant task)

    @property
    def changed(self) -> bool:
        return self.p < 0.05


def paired(reference: str, cell: str) -> Paired:
    """`reference`, `cell`: each task's outcome as a string of 1 (right) and 0, in the tool's order."""
    if len(reference) != len(cell):
        raise ValueError(f"{len(cell)} tasks against the reference's {len(reference)}: not the same tasks")
    lost = sum(r == "1" and c == "0" for r, c in zip(reference, cell))
    gained = sum(r == "0" and c == "1" for r, c in zip(reference, cell))
    return Paired(len(cell), lost, gained, mcnemar_exact(lost, gained))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar: under no change the b + c discordant tasks split as a fair coin's throws."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95 % Wilson score interval of k right of n (what llama-perplexity prints for HellaSwag)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    mid, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (mid - half) / (1 + z * z / n), (mid + half) / (1 + z * z / n)
