"""Confidence intervals for the lab's paired comparisons (ours: the paper reports means only).

Every lab table compares rows on the same worlds, so a row's gain is a list of per-world differences;
`bootstrap_ci` gives its mean and a 95% percentile-bootstrap interval over worlds.
"""
import numpy as np


def bootstrap_ci(values, n_boot=1000, alpha=0.05, seed=0):
    """Percentile bootstrap of the mean: (mean, q_{alpha/2}, q_{1-alpha/2}) of resampled means."""
    values = np.asarray(values, dtype=np.float64).ravel()  # (n,)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))  # resample with replacement
    means = values[idx].mean(axis=1)  # (n_boot,)
    low, high = np.percentile(means, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(values.mean()), float(low), float(high)
