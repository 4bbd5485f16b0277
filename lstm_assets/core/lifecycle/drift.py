"""Input and label drift of one symbol: its recent rows against the rows its model trained on.

The population stability index (PSI) compares two samples of one variable over a fixed set of
bins: ``PSI = sum_i (r_i - q_i) * ln(r_i / q_i)``, with ``q_i`` the reference's share of bin ``i``
and ``r_i`` the recent sample's share. It is a symmetrised Kullback-Leibler divergence, 0 for
identical shares and growing with every share that moves. The conventional reading is
PSI < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a significant shift (the default
``threshold``).

PSI of small samples is noisy: two samples of sizes ``n`` and ``m`` drawn from one distribution
give, over ``B`` bins, a PSI of about ``(B - 1) * (1/n + 1/m)`` on average (a scaled chi-square
with ``B - 1`` degrees of freedom). For 10 bins, a 60-row window and a few thousand train rows
that is about 0.17, and about one undrifted feature in six exceeds 0.25; a 120-row window
(about 0.08) or 5 bins (about 0.07) brings that below one in fifty. The KS p-value beside each
PSI is the check on chance.

Bins are the reference's deciles (``bins`` quantiles; repeated edges, as in a feature with many
ties, are merged), with open outer bins, so every value of either sample falls in a bin. Shares
are floored at ``SHARE_FLOOR`` so an empty bin gives a large but finite term, not infinity; the
floor caps the PSI of two fully disjoint samples at about ``2 * ln(1 / SHARE_FLOOR)`` (18.4).

The reference is the train rows (``seq.bounds.range("train")``): the distribution the scaler was
fit on and the model learned from. Validation and test rows are already "later" data; measuring
against them would hide a shift the model has never seen. Beside each PSI stands the two-sample
Kolmogorov-Smirnov statistic and p-value (``scipy.stats.ks_2samp``), which need no bins.

Label drift compares the DOWN/FLAT/UP mix of the train labels with that of the most recent
labelled rows, by the same PSI over the three classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from lstm_assets.core.sequences import SequenceSet
from lstm_assets.core.settings import CLASSES

SHARE_FLOOR = 1e-4
"""Smallest bin share PSI uses: an empty bin counts as this share."""

MIN_WINDOW = 10
"""Fewest recent rows a drift report accepts."""


def _psi_from_counts(ref_counts: np.ndarray, rec_counts: np.ndarray) -> float:
    """PSI of two histograms over the same bins (shares floored at ``SHARE_FLOOR``)."""
    q = np.maximum(ref_counts / max(ref_counts.sum(), 1), SHARE_FLOOR)
    r = np.maximum(rec_counts / max(rec_counts.sum(), 1), SHARE_FLOOR)
    return float(np.sum((r - q) * np.log(r / q)))


def _psi_with_edges(reference: np.ndarray, recent: np.ndarray, inner: np.ndarray) -> float:
    """PSI over the bins that the sorted inner edges ``inner`` cut; a reference with one value
    gets the bins "equal to it" and "not equal to it"."""
    lo, hi = reference.min(), reference.max()
    if lo == hi:
        ref_counts = np.array([reference.size, 0])
        same = int(np.count_nonzero(recent == lo))
        return 0.0 if same == recent.size else _psi_from_counts(
            ref_counts, np.array([same, recent.size - same]))
    edges = np.unique(inner)
    n_bins = edges.size + 1
    # bin i holds (edges[i-1], edges[i]]; the outer bins are open
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=n_bins)
    rec_counts = np.bincount(np.searchsorted(edges, recent, side="left"), minlength=n_bins)
    return _psi_from_counts(ref_counts, rec_counts)


def _inner_quantiles(reference: np.ndarray, bins: int) -> np.ndarray:
    """The reference's inner bin edges: its ``1/bins .. (bins-1)/bins`` quantiles (along axis 0)."""
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    return np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1], axis=0)


def _usual_psi(ref: np.ndarray, inner: np.ndarray, window: int) -> np.ndarray:
    """Per feature, the largest PSI of a ``window``-row block of the train rows against all of
    them (non-overlapping blocks): how far a window of this length strays from the train
    distribution by itself. Slow features (levels that wander, like fundamentals or rates) stray
    far in every window; recent rows count as drifted only beyond that."""
    n_blocks = ref.shape[0] // window
    out = np.zeros(ref.shape[1])
    if n_blocks < 2:
        return out
    for j in range(ref.shape[1]):
        col = ref[:, j]
        if col.min() == col.max():
            continue  # a constant train column: every block equals it
        edges = np.unique(inner[:, j])
        idx = np.searchsorted(edges, col, side="left")  # each train row's bin, once
        n_bins = edges.size + 1
        q = np.maximum(np.bincount(idx, minlength=n_bins) / col.size, SHARE_FLOOR)
        blocks = idx[:n_blocks * window].reshape(n_blocks, window)
        counts = np.stack([np.bincount(b, minlength=n_bins) for b in blocks])
        r = np.maximum(counts / window, SHARE_FLOOR)
        out[j] = float(np.max(np.sum((r - q) * np.log(r / q), axis=1)))
    return out


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``recent`` against ``reference`` (1-D samples), over
    ``bins`` bins at the reference's quantiles (repeated edges merged, outer bins open, shares
    floored at ``SHARE_FLOOR``).

    A constant reference has the bins "equal to its value" and "any other value": the PSI is 0
    when every recent value equals it and grows with the share that does not, up to about
    18.4 when none does (large but finite).
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    rec = np.asarray(recent, dtype=np.float64).ravel()
    if ref.size == 0 or rec.size == 0:
        raise ValueError(f"psi needs two non-empty samples (got {ref.size} and {rec.size})")
    return _psi_with_edges(ref, rec, _inner_quantiles(ref, bins))


def _class_counts(labels: np.ndarray) -> np.ndarray:
    """Counts of DOWN/FLAT/UP (0/1/2) among ``labels``; any other value is left out."""
    lab = np.asarray(labels).ravel()
    lab = lab[(lab >= 0) & (lab < len(CLASSES))].astype(np.int64)
    return np.bincount(lab, minlength=len(CLASSES))


def label_mix_psi(ref_labels: np.ndarray, recent_labels: np.ndarray) -> float:
    """PSI of the DOWN/FLAT/UP mix of ``recent_labels`` against ``ref_labels``; only labels
    0, 1 and 2 count (unlabelled -1 and excluded rows are left out)."""
    ref, rec = _class_counts(ref_labels), _class_counts(recent_labels)
    if ref.sum() == 0 or rec.sum() == 0:
        raise ValueError(f"label_mix_psi needs labels in 0..2 on both sides "
                         f"(got {int(ref.sum())} and {int(rec.sum())})")
    return _psi_from_counts(ref, rec)


def _shares(labels: np.ndarray) -> dict[str, float]:
    counts = _class_counts(labels)
    return {c: float(v) for c, v in zip(CLASSES, counts / max(counts.sum(), 1), strict=True)}


def _check_rows(seq: SequenceSet, window: int) -> tuple[range, np.ndarray]:
    """The train rows and the last ``window`` labelled rows, or ValueError when there are too
    few rows for a report."""
    if window < MIN_WINDOW:
        raise ValueError(f"drift window must be at least {MIN_WINDOW} rows, got {window}")
    rows, train = len(seq.X), seq.bounds.range("train")
    if len(train) < window:
        raise ValueError(f"too few train rows for a drift report: {len(train)} < window {window}")
    if rows - window < train.stop:
        raise ValueError(f"too few rows for a drift report: the last {window} of {rows} rows "
                         f"overlap the train rows (which end at row {train.stop})")
    labelled = np.flatnonzero((seq.y >= 0) & (seq.y < len(CLASSES)))
    train_labelled = int(np.count_nonzero((labelled >= train.start) & (labelled < train.stop)))
    if labelled.size < window or train_labelled == 0:
        raise ValueError(f"too few labelled rows for a drift report: {labelled.size} in all, "
                         f"{train_labelled} in the train rows (window {window})")
    return train, labelled[-window:]


def drift_report(seq: SequenceSet, window: int = 60, threshold: float = 0.25,
                 bins: int = 10, alpha: float = 0.01) -> dict[str, Any]:
    """Drift of the last ``window`` rows of ``seq`` against its train rows, as a JSON-ready dict.

    Inputs: every feature's PSI and Kolmogorov-Smirnov statistic and p-value, train rows
    against the last ``window`` rows of ``X`` (labelled or not: the live inputs). Labels: the
    DOWN/FLAT/UP mix of the train rows against the last ``window`` labelled rows.

    Keys: ``window``, ``threshold``, ``reference_rows``, ``recent_rows``, ``recent_from`` and
    ``recent_to`` (ISO dates), ``features`` (name -> ``{"psi", "ks", "ks_pvalue"}``),
    ``drifted`` (features whose PSI exceeds both ``threshold`` and ``usual_psi``, the largest PSI
    of a block of ``window`` train rows against the train rows, and whose KS p-value is below
    ``alpha`` divided by the number of features, largest PSI first: a shift large, beyond
    what the feature does by itself within the train rows, and beyond chance across all the
    features looked at; the KS test alone takes neighbouring rows as independent, which slow
    features are not), ``max_psi``, ``label_mix`` (``{"train": shares,
    "recent": shares, "psi", "p", "drifted"}``: PSI > ``threshold`` and a chi-square test of the
    recent counts against the train shares below ``alpha``) and ``drifted_any`` (any feature or
    the label mix drifted). Raises ValueError when ``window`` < ``MIN_WINDOW`` or there are
    too few rows (train rows fewer than ``window``, the window reaching into the train rows, or
    fewer than ``window`` labelled rows).
    """
    train, recent_labelled = _check_rows(seq, window)
    ref = np.asarray(seq.X[train.start:train.stop], dtype=np.float64)
    rec = np.asarray(seq.X[-window:], dtype=np.float64)
    inner = _inner_quantiles(ref, bins)  # (bins-1, features), one pass over all columns
    psis = np.array([_psi_with_edges(ref[:, j], rec[:, j], inner[:, j])
                     for j in range(ref.shape[1])])
    usual = _usual_psi(ref, inner, window)
    limits = np.maximum(threshold, usual)
    ks = stats.ks_2samp(ref, rec, axis=0)
    ks_stat, ks_p = np.atleast_1d(ks.statistic), np.atleast_1d(ks.pvalue)
    features = {name: {"psi": float(psis[j]), "usual_psi": float(usual[j]),
                       "ks": float(ks_stat[j]), "ks_pvalue": float(ks_p[j])}
                for j, name in enumerate(seq.features)}
    order = np.argsort(-psis, kind="stable")
    cut = alpha / max(1, len(seq.features))
    drifted = [seq.features[j] for j in order if psis[j] > limits[j] and ks_p[j] < cut]
    train_labels = seq.y[train.start:train.stop]
    recent_labels = seq.y[recent_labelled]
    mix_psi = label_mix_psi(train_labels, recent_labels)
    ref_counts, rec_counts = _class_counts(train_labels), _class_counts(recent_labels)
    expected = np.maximum(ref_counts / ref_counts.sum(), SHARE_FLOOR) * rec_counts.sum()
    mix_p = float(stats.chisquare(rec_counts, expected * rec_counts.sum() / expected.sum()
                                  ).pvalue)
    label_mix = {"train": _shares(train_labels), "recent": _shares(recent_labels),
                 "psi": mix_psi, "p": mix_p, "drifted": bool(mix_psi > threshold
                                                               and mix_p < alpha)}
    return {
        "window": int(window), "threshold": float(threshold), "alpha": float(alpha),
        "reference_rows": len(train), "recent_rows": int(rec.shape[0]),
        "recent_from": str(np.datetime64(seq.dates[-window], "D")),
        "recent_to": str(np.datetime64(seq.dates[-1], "D")),
        "features": features, "drifted": drifted,
        "max_psi": float(psis.max()) if psis.size else 0.0,
        "label_mix": label_mix,
        "drifted_any": bool(drifted) or label_mix["drifted"],
    }
