"""Percentile bootstrap over examples: confidence intervals and paired differences.

Resampling is over examples (rows), with replacement, ``n_boot`` times from
``numpy.random.default_rng(seed)``; every metric of one evaluation is computed on the
same resamples, and a paired comparison applies the same resample to both systems, so
the per-example pairing is kept (Efron & Tibshirani, *An Introduction to the Bootstrap*,
ch. 13, percentile interval; Koehn 2004 for paired bootstrap resampling of BLEU).

The statistic is a function of a resample's row indices, so a corpus-level statistic
such as BLEU is recomputed from its summed sufficient statistics on every resample rather
than averaged per sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["Interval", "bootstrap", "resample_indices"]

IndexArray = npt.NDArray[np.intp]
#: Computes named statistics for a batch of resamples: rows of indices (shape (b, n)) ->
#: name -> values (shape (b,)).
BatchStatistic = Callable[[IndexArray], Mapping[str, npt.NDArray[np.float64]]]
#: Rows of indices per batch: bounds memory to ``_BATCH * n`` indices.
_BATCH = 200


class Interval(NamedTuple):
    """A percentile interval; ``low == high`` when every resample agrees."""

    low: float
    high: float


def resample_indices(n: int, n_boot: int, seed: int) -> Iterator[IndexArray]:
    """``n_boot`` resamples of ``range(n)``, in batches of rows; the same for a seed."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        size = min(_BATCH, n_boot - done)
        yield rng.integers(0, n, size=(size, n), dtype=np.intp)
        done += size


def bootstrap(
    statistic: BatchStatistic, n: int, *, n_boot: int, seed: int, confidence: float
) -> dict[str, Interval]:
    """Percentile intervals of each named statistic over ``n_boot`` resamples of n rows.

    Resamples where a statistic is undefined (NaN, e.g. no labelled example drawn) are
    left out of that statistic's interval; a statistic undefined everywhere gets NaNs.
    """
    if n < 1:
        raise ValueError("bootstrap needs at least one example")
    draws: dict[str, list[npt.NDArray[np.float64]]] = {}
    for rows in resample_indices(n, n_boot, seed):
        for name, values in statistic(rows).items():
            draws.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    tail = (1.0 - confidence) / 2.0 * 100.0
    intervals = {}
    for name, chunks in draws.items():
        values = np.concatenate(chunks)
        values = values[~np.isnan(values)]
        if values.size == 0:
            intervals[name] = Interval(float("nan"), float("nan"))
            continue
        low, high = np.percentile(values, [tail, 100.0 - tail])
        intervals[name] = Interval(float(low), float(high))
    return intervals
