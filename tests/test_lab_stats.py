"""lab/stats.py: the bootstrap interval of the lab's paired comparisons."""
import numpy as np

from lab.stats import bootstrap_ci


def test_bootstrap_ci_contains_mean_and_shrinks():
    rng = np.random.default_rng(2)
    small = rng.normal(5.0, 2.0, size=50)
    large = rng.normal(5.0, 2.0, size=200)
    mean, low, high = bootstrap_ci(small)
    assert low <= mean <= high
    assert abs(mean - small.mean()) < 1e-12
    _, low_l, high_l = bootstrap_ci(large)
    assert high_l - low_l < high - low
