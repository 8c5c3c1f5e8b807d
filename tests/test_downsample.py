"""Sparkline downsampling: the chunk means computed as 2-d blocks equal np.nanmean chunk by chunk."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dashboard import views


def _same(a, b) -> bool:
    if (a is None) != (b is None):
        return False
    return a is None or a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("seed", range(5))
def test_downsample_equals_nanmean_per_chunk(seed):
    rnd = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rnd.integers(0, 700))
        ys = rnd.normal(50, 30, n) * rnd.choice([1, 1e-3, 1e6])
        u = rnd.random(n)
        ys[u < rnd.random() * 0.5] = np.nan
        if rnd.random() < 0.1:
            ys[u > 0.97] = np.inf
        ys = [None if rnd.random() < 0.02 else y for y in ys.tolist()]
        k = int(rnd.choice([views.SPARK_POINTS, 7, 48]))
        got, want = views.downsample(range(n), ys, k), views._downsample_loop(range(n), ys, k)
        assert got[0] == want[0]
        assert len(got[1]) == len(want[1]) and all(_same(a, b) for a, b in zip(got[1], want[1]))
