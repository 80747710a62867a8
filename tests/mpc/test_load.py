"""100 holders upload to the two aggregator processes at once, with faults mixed in.

Bounded: 40 candidates × 8 bits (the per-report work is small; the load is in the number of
parties, TLS connections and concurrent uploads), a 12 s round deadline, and an in-flight limit
of 4 so that back-pressure (503, retry) is exercised."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from penumbra.mpc.loadtest import load_round


def test_a_hundred_holders_with_faults_are_counted_exactly_once(tmp_path: Path) -> None:
    faults = {"invalid": 4, "replay": 4, "late": 2, "malformed": 3}
    load = load_round(
        tmp_path, holders=100, candidates=40, faults=faults, bits=8, declared=20,
        deadline_s=12.0, max_reports_in_flight=4,
    )  # fmt: skip
    result = load.result
    accepted = sorted(a.holder for a in result.outcome.accepted)
    assert accepted == sorted(load.honest)  # every valid report counted…
    assert len(set(a.report_id for a in result.outcome.accepted)) == len(accepted)  # …once
    np.testing.assert_array_equal(result.noisy.astype(np.int64), load.expected)
    reasons = Counter((r.holder, r.reason.split(":")[0]) for r in result.outcome.rejected)
    for holder, kind in load.faulty.items():
        if kind == "invalid":
            assert reasons[(holder, "invalid report")] == 1, holder
        elif kind == "replay":
            assert reasons[(holder, "replayed report (id or nonce seen before)")] >= 1, holder
        elif kind == "late":
            assert holder in result.missing
    # bytes that are no report: refused at both aggregators, the field named
    assert len(load.malformed_replies) == 2 * faults["malformed"]
    assert all(r.startswith("malformed report: ") for r in load.malformed_replies)
