"""Evaluation metrics for augur offline tooling (numpy only, no sklearn).

    from metrics import auc, logloss
"""
from __future__ import annotations

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x; tied values all get the mean of the ranks they span."""
    x = np.asarray(x).ravel()
    n = x.size
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Start index of every run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]]) if n else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], n]  # exclusive
    # Ranks start..end-1 (0-based) -> mean 1-based rank = (start + 1 + end) / 2.
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def auc(labels, scores) -> float:
    """ROC AUC via the Mann-Whitney U statistic (ties count 1/2).

    labels: 0/1 (anything > 0.5 is positive). Returns nan if only one class is present.
    """
    y = np.asarray(labels).ravel() > 0.5
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = average_ranks(s)
    u = r[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def logloss(labels, probs, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1-eps])."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1.0 - eps)
    if y.size == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


if __name__ == "__main__":  # tiny self-test: python metrics.py
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    assert auc([1, 0, 1, 0], [1, 1, 1, 1]) == 0.5
    assert auc([0, 1, 1], [0.2, 0.2, 0.9]) == 0.75  # one tied pair counts 1/2
    assert np.isnan(auc([1, 1], [0.1, 0.2]))
    assert np.allclose(average_ranks([3, 1, 3, 2]), [3.5, 1, 3.5, 2])
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)  # plenty of ties
    pairs = (s[y == 1][:, None] > s[y == 0][None, :]).mean() + 0.5 * (
        s[y == 1][:, None] == s[y == 0][None, :]).mean()
    assert abs(auc(y, s) - pairs) < 1e-12
    print("metrics ok")
