"""One results table for every benchmark (bench/results.json)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class BenchRow:
    name: str
    value: float
    unit: str
    floor_name: str
    floor_value: float
    ratio: float = field(init=False)

    def __post_init__(self) -> None:
        ratio = self.value / self.floor_value if self.floor_value else float("nan")
        object.__setattr__(self, "ratio", round(ratio, 3))

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def per_call_us(fn: Callable[[], object], *, rounds: int = 7, number: int = 2000) -> float:
    """Median over rounds of the mean time per call, in microseconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(samples)


def interleaved_us(
    fns: dict[str, Callable[[], object]], *, rounds: int = 9, number: int = 2000
) -> dict[str, float]:
    """Time several functions in alternating rounds so machine noise hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}
