"""Empirical privacy audit of a synthetic set: memorisation and membership inference.

Both use the private images themselves, so nothing here is differentially private: results
are labelled AUDIT_LABEL wherever they are shown and never feed selection or stopping
(privacy invariant 6). They are evidence, not a guarantee: a DP run bounds what any attack can
do; this measures what one simple attack actually does.

Memorisation: for each synthetic sample, the distance to its nearest private (member) sample
is compared with the distance to its nearest held-out (non-member) sample from the same
distribution. Copies show up as synthetic samples far closer to a member than real unseen
images ever are: the flagging threshold is a low quantile of the distances from held-out
images to their nearest member.

Membership inference (distance to the closest synthetic record, as in Hilprecht et al. 2019
and Chen et al. 2020's GAN-leaks): a candidate record scores higher the closer it is to the
synthetic set; AUC and the TPR at 1% FPR separate members from non-members.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from penumbra.evaluate.manifold import BLOCK, pairwise_distances

AUDIT_LABEL = "not DP, computed against the private data; never fed back into the run"


def nearest(queries: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query's nearest row of `pool`."""
    dist, idx = [], []
    for i in range(0, len(queries), BLOCK):
        d = pairwise_distances(queries[i : i + BLOCK], pool)
        j = d.argmin(axis=1)
        idx.append(j)
        dist.append(d[np.arange(len(j)), j])
    return np.concatenate(dist), np.concatenate(idx)


def roc_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """P(member score > non-member score) + ½ P(tie): the Mann–Whitney form of the AUC."""
    m = np.asarray(member_scores, dtype=np.float64)
    n = np.asarray(nonmember_scores, dtype=np.float64)
    if len(m) == 0 or len(n) == 0:
        raise ValueError("AUC needs members and non-members")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([m, n]))  # average ranks handle ties
    u = ranks[: len(m)].sum() - len(m) * (len(m) + 1) / 2
    return float(u / (len(m) * len(n)))


def roc_curve(
    member_scores: np.ndarray, nonmember_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every threshold, from (0, 0) to (1, 1)."""
    scores = np.concatenate([member_scores, nonmember_scores])
    labels = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # one point per distinct threshold
    tpr = np.r_[0.0, np.cumsum(y)[last] / max(y.sum(), 1)]
    fpr = np.r_[0.0, np.cumsum(1 - y)[last] / max((1 - y).sum(), 1)]
    return fpr, tpr


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
    """Share of members scored strictly above the threshold that at most `fpr` of the
    non-members exceed: the low-FPR operating point Carlini et al. 2022 argue for."""
    n = np.sort(np.asarray(nonmember_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(fpr * len(n)))  # non-members allowed above the threshold
    threshold = n[allowed] if allowed < len(n) else -np.inf
    return float((np.asarray(member_scores) > threshold).mean())


def membership_inference(
    synthetic: np.ndarray,
    members: np.ndarray,
    nonmembers: np.ndarray,
    *,
    seed: int = 0,
    bootstrap: int = 200,
) -> dict[str, Any]:
    """Distance-to-closest-synthetic attack. Members are subsampled to the number of
    non-members (or the other way) so that AUC is not skewed by the class ratio."""
    rng = np.random.default_rng(seed)
    size = min(len(members), len(nonmembers))
    if size < 2:
        raise ValueError("membership inference needs at least two members and two non-members")
    mem = members[rng.choice(len(members), size, replace=False)]
    non = nonmembers[rng.choice(len(nonmembers), size, replace=False)]
    mem_scores = -nearest(mem, synthetic)[0]
    non_scores = -nearest(non, synthetic)[0]
    auc = roc_auc(mem_scores, non_scores)
    boots = []
    for _ in range(bootstrap):  # percentile bootstrap of the AUC
        i, j = rng.integers(0, size, size), rng.integers(0, size, size)
        boots.append(roc_auc(mem_scores[i], non_scores[j]))
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    fpr, tpr = roc_curve(mem_scores, non_scores)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 400)).astype(int))
    return {
        "auc": auc,
        "auc_ci95_low": float(lo),
        "auc_ci95_high": float(hi),
        "tpr_at_1pct_fpr": tpr_at_fpr(mem_scores, non_scores, 0.01),
        "tpr_at_10pct_fpr": tpr_at_fpr(mem_scores, non_scores, 0.10),
        "members": float(size),
        "nonmembers": float(size),
        "roc": {"fpr": [float(v) for v in fpr[keep]], "tpr": [float(v) for v in tpr[keep]]},
    }


def memorisation(
    synthetic: np.ndarray,
    members: np.ndarray,
    nonmembers: np.ndarray | None,
    *,
    quantile: float = 0.01,
    threshold: float | None = None,
    max_pairs: int = 16,
    seed: int = 0,
) -> dict[str, object]:
    """Nearest-member distances of the synthetic set, compared with held-out images.

    `threshold` defaults to the `quantile` of held-out-to-nearest-member distances: a
    synthetic sample closer to a member than 99% of unseen real images are is flagged."""
    d_mem, i_mem = nearest(synthetic, members)
    result: dict[str, object] = {
        "synthetic_to_member_median": float(np.median(d_mem)),
        "synthetic_to_member_min": float(d_mem.min()),
    }
    if nonmembers is not None and len(nonmembers):
        d_non, _ = nearest(synthetic, nonmembers)
        reference, _ = nearest(nonmembers, members)
        result["synthetic_to_nonmember_median"] = float(np.median(d_non))
        # ~0.5 when synthetic samples are no closer to members than to unseen images; the
        # nearest of more points is closer by chance, so compare equal-size sets
        size = min(len(members), len(nonmembers))
        rng = np.random.default_rng(seed)
        d_mem_eq, _ = nearest(synthetic, members[rng.choice(len(members), size, replace=False)])
        d_non_eq, _ = nearest(
            synthetic, nonmembers[rng.choice(len(nonmembers), size, replace=False)]
        )
        result["closer_to_member_share"] = float((d_mem_eq < d_non_eq).mean())
        result["nonmember_to_member_median"] = float(np.median(reference))
        if threshold is None:
            threshold = float(np.quantile(reference, quantile))
            result["threshold_rule"] = (
                f"{quantile:g} quantile of held-out-to-nearest-member distances"
            )
    if threshold is None:
        result["threshold"] = None
        result["flagged"] = None
        result["pairs"] = []
        return result
    flagged = np.flatnonzero(d_mem <= threshold)
    order = flagged[np.argsort(d_mem[flagged])]
    closest = np.argsort(d_mem)[:max_pairs]
    result["threshold"] = float(threshold)
    result["flagged"] = len(flagged)
    result["flagged_share"] = float(len(flagged) / len(synthetic))
    # (synthetic index, member index, distance); flagged pairs first, then the closest others
    shown = list(order[:max_pairs]) + [c for c in closest if c not in set(order)]
    result["pairs"] = [
        {"synthetic": int(s), "member": int(i_mem[s]), "distance": float(d_mem[s]),
         "flagged": bool(d_mem[s] <= threshold)}
        for s in shown[:max_pairs]
    ]  # fmt: skip
    return result
