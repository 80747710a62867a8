"""Secure voting cost per report, old vs new arithmetic, and a real 100-holder round.

One run measures, on this machine and with the real code paths:

1. Per report (one holder's vote vector, 10k and 1k candidates), for three ways of doing it:
   - `Field128 ×1, reference`: the previous protocol (Python ints in numpy object arrays, one
     Field128 proof, base64 in JSON on the wire) — kept as the reference path;
   - `Field64 ×3, reference`: today's protocol on the reference arithmetic;
   - `Field64 ×3, uint64`: today's protocol as shipped (`goldilocks.py`, binary uploads).
   Entries are 16-bit (max_entry 65535, the issue's yardstick) and also the product's default
   (max_entry = the holder's declared count, 1000 → 10 bits). Times are means ± std over
   `--samples` reports: holder sharding, each aggregator's verify_init, combining; bytes are
   the upload of both shares as sent (binary frame, or base64 JSON for the old protocol).
2. A real round over mutual TLS on loopback (`penumbra.mpc.loadtest`): two aggregator
   processes, `--holders` holders (threads in this process with their own certificates)
   uploading at once, invalid, replayed and malformed reports mixed in, counted exactly once.
   Late holders are left out here (the coordinator waits for them until the deadline, so they
   would only add the deadline); the test suite covers them.

    .venv/bin/python bench/mpc.py                     # writes bench/results/mpc.md + RESULTS.md
    .venv/bin/python bench/mpc.py --samples 3 --holders 100 --candidates 10000
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_md import splice_section

from penumbra.mpc import goldilocks
from penumbra.mpc.field import Field, Field64, Field128
from penumbra.mpc.loadtest import load_round
from penumbra.mpc.prio3 import Prio3BoundedVoteVec
from penumbra.mpc.protocol import Upload, sigma_fraction
from penumbra.privacy.dgauss import sample_discrete_gaussian
from penumbra.privacy.zcdp import dgauss_sigma

DECLARED = 1000
PATHS = {
    "Field128 ×1, reference": (Field128, 1, True),
    "Field64 ×3, reference": (Field64, 3, True),
    "Field64 ×3, uint64": (Field64, 3, False),
}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _arithmetic(reference: bool) -> contextlib.AbstractContextManager[None]:
    return goldilocks.reference_arithmetic() if reference else contextlib.nullcontext()


def _upload_bytes(vdaf: Prio3BoundedVoteVec, public: object, shares: list[object]) -> int:
    """Both shares as they travel: binary frames now, base64 JSON for Field128 (old wire)."""
    total = 0
    for share in shares:
        upload = Upload("t000-0123456789ab", "ab" * 16, bytes(16),
                        vdaf.encode_public_share(public), vdaf.encode_input_share(share))  # type: ignore[arg-type]  # fmt: skip
        if vdaf.field is Field128:
            b64 = {k: base64.b64encode(v).decode() for k, v in (
                ("nonce", upload.nonce), ("public_share", upload.public_share),
                ("input_share", upload.input_share))}  # fmt: skip
            total += len(json.dumps({"round_id": upload.round_id,
                                     "report_id": upload.report_id} | b64))  # fmt: skip
        else:
            total += len(upload.encode())
    return total


def per_report(
    length: int, max_entry: int, field: type[Field], proofs: int, reference: bool, samples: int
) -> dict[str, list[float]]:
    vdaf = Prio3BoundedVoteVec(length, max_entry.bit_length(), None, DECLARED, max_entry,
                               field=field, proofs=proofs)  # fmt: skip
    rng = np.random.default_rng(0)
    out: dict[str, list[float]] = {"shard": [], "leader": [], "helper": [], "combine": [],
                                   "bytes": []}  # fmt: skip
    ctx, key = b"bench", secrets.token_bytes(vdaf.VERIFY_KEY_SIZE)
    with _arithmetic(reference):
        # one report first, untimed: loads the compiled kernels and fills the twiddle caches
        warm_nonce = secrets.token_bytes(vdaf.NONCE_SIZE)
        warm_public, warm = vdaf.shard(
            ctx, [0] * length, warm_nonce, secrets.token_bytes(vdaf.RAND_SIZE)
        )
        vdaf.verify_init(key, ctx, 0, None, warm_nonce, warm_public, warm[0])
        for _ in range(samples):
            votes = np.bincount(rng.integers(0, length, DECLARED), minlength=length).tolist()
            nonce = secrets.token_bytes(vdaf.NONCE_SIZE)
            start = time.perf_counter()
            public, shares = vdaf.shard(ctx, votes, nonce, secrets.token_bytes(vdaf.RAND_SIZE))
            encoded = [vdaf.encode_input_share(s) for s in shares]
            out["shard"].append(time.perf_counter() - start)
            out["bytes"].append(_upload_bytes(vdaf, public, shares))
            states, verifiers = [], []
            for agg_id, name in ((0, "leader"), (1, "helper")):
                start = time.perf_counter()
                share = vdaf.decode_input_share(agg_id, encoded[agg_id])
                state, verifier = vdaf.verify_init(key, ctx, agg_id, None, nonce, public, share)
                out[name].append(time.perf_counter() - start)
                states.append(state)
                verifiers.append(verifier)
            start = time.perf_counter()
            message = vdaf.verifier_shares_to_message(ctx, None, verifiers)
            outputs = [vdaf.verify_next(ctx, s, message) for s in states]
            out["combine"].append(time.perf_counter() - start)
            assert vdaf.unshard(None, outputs, 1) == votes
    out["soundness"] = [vdaf.soundness_bits()]
    return out


def _ms(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


@contextlib.contextmanager
def _timed(label: str) -> Iterator[None]:
    start = time.monotonic()
    sys.stderr.write(f"{label} …\n")
    yield
    sys.stderr.write(f"{label}: {time.monotonic() - start:.1f} s\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3, help="reports measured per row")
    parser.add_argument("--holders", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/mpc.md"))
    args = parser.parse_args()
    before = _uptime()
    rows = []
    for length in (args.candidates, 1000):
        for max_entry, entries in ((65535, "16-bit"), (DECLARED, "≤ declared (10-bit)")):
            for name, (field, proofs, reference) in PATHS.items():
                with _timed(f"{length} × {entries}, {name}"):
                    r = per_report(length, max_entry, field, proofs, reference, args.samples)
                rows.append((length, entries, name, r))
    # the one cost the noiseless round below leaves out: each aggregator's exact discrete
    # Gaussian noise vector (σ of ε = 1, δ = 1e-6, 5 iterations at sensitivity 1)
    sigma = dgauss_sigma(1.0, 1e-6, 5)
    noise_s = []
    for _ in range(args.samples):
        start = time.perf_counter()
        sample_discrete_gaussian(sigma_fraction(sigma), args.candidates)
        noise_s.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp, _timed(f"round, {args.holders} holders"):
        faults = {"invalid": 3, "replay": 3, "malformed": 2}
        load = load_round(Path(tmp), holders=args.holders, candidates=args.candidates,
                          faults=faults, bits=16, declared=DECLARED, deadline_s=600.0)  # fmt: skip
        exact = bool(np.array_equal(load.result.noisy.astype(np.int64), load.expected))
        accepted = len(load.result.outcome.accepted)
    after = _uptime()
    lines = [
        "## Secure voting per report and per round (`bench/mpc.py`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}. Command: `.venv/bin/python bench/mpc.py --samples "
        f"{args.samples} --holders {args.holders} --candidates {args.candidates}`.",
        f"Load before: `{before}`; after: `{after}` (the 1-minute figure after is this "
        "bench's own aggregator and holder work; nothing else ran).",
        "",
        "### Per report (seconds, mean ± std over "
        f"{args.samples} reports; bytes: both shares as uploaded)",
        "",
        "| candidates | entries | arithmetic | sharding | leader verify | helper verify | "
        "combine | upload bytes | soundness (bits) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for length, entries, name, r in rows:
        lines.append(
            f"| {length} | {entries} | {name} | {_ms(r['shard'])} | {_ms(r['leader'])} | "
            f"{_ms(r['helper'])} | {_ms(r['combine'])} | {int(statistics.fmean(r['bytes'])):,} | "
            f"{r['soundness'][0]:.0f} |"
        )
    lines += [
        "",
        f"### A real round: {args.holders} holders × {args.candidates} candidates, 16-bit "
        "entries, mutual TLS on loopback",
        "",
        f"Faults mixed in: {faults}. Accepted {accepted} reports "
        f"({len(load.honest)} expected), sum {'exact' if exact else 'WRONG'}; malformed "
        f"uploads answered: {sorted(set(load.malformed_replies))}.",
        "",
        f"- round opened → both aggregate shares collected: **{load.seconds:.1f} s** (the "
        "aggregators run the test-only noiseless config so the sum can be checked exactly)",
        f"- each aggregator's exact discrete Gaussian noise for {args.candidates} candidates "
        f"(σ = {sigma:.2f}), drawn once per round, in parallel on the two aggregators: "
        f"{_ms(noise_s)} s",
        "",
        "All holders shard on this machine's two cores here (on their own machines they would "
        "shard in parallel), so the first figure includes 100 holders' proving time.",
    ]
    block = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(block + "\n", encoding="utf-8")
    splice_section("mpc", block)
    sys.stdout.write(block + "\n")


if __name__ == "__main__":
    main()
