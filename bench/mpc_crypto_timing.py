"""Time one Prio3SumVec report: sharding (client) and verification (both aggregators).

Usage: .venv/bin/python bench/mpc_crypto_timing.py [length ...]   (default: 1000 10000)
bits = 16; chunk_length both the draft's starting point, the integer nearest sqrt(length * bits),
and `best_chunk_length` (the draft's search for the shortest proof).
"""

from __future__ import annotations

import secrets
import sys
import time

from penumbra.mpc.prio3 import Prio3SumVec, best_chunk_length, recommended_chunk_length


def main(lengths: list[int]) -> None:
    ctx = b"penumbra bench"
    runs = [
        (n, chunk(n * 16))
        for n in lengths
        for chunk in (recommended_chunk_length, best_chunk_length)
    ]
    for length, chunk_length in dict.fromkeys(runs):
        vdaf = Prio3SumVec(length, 16, chunk_length)
        meas = [secrets.randbelow(2**16) for _ in range(length)]
        nonce = secrets.token_bytes(vdaf.NONCE_SIZE)
        key = secrets.token_bytes(vdaf.VERIFY_KEY_SIZE)
        t0 = time.perf_counter()
        public, inputs = vdaf.shard(ctx, meas, nonce, secrets.token_bytes(vdaf.RAND_SIZE))
        t1 = time.perf_counter()
        wire = [vdaf.encode_input_share(s) for s in inputs]
        t2 = time.perf_counter()
        states, vshares = [], []
        for j in range(vdaf.SHARES):
            share = vdaf.decode_input_share(j, wire[j])
            state, vshare = vdaf.verify_init(key, ctx, j, None, nonce, public, share)
            states.append(state)
            vshares.append(vshare)
        message = vdaf.verifier_shares_to_message(ctx, None, vshares)
        outs = [vdaf.verify_next(ctx, s, message) for s in states]
        t3 = time.perf_counter()
        assert vdaf.unshard(None, outs, 1) == meas
        print(
            f"length={length} bits=16 chunk_length={vdaf.chunk_length} "
            f"proof_len={vdaf.flp.PROOF_LEN} leader_share={len(wire[0]) / 1e6:.2f} MB: "
            f"shard {t1 - t0:.2f} s, encode {t2 - t1:.2f} s, "
            f"verify (both aggregators, incl. decode) {t3 - t2:.2f} s"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
