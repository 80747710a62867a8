"""The coordinator's ledger: every checkpoint carries the coordinator's signature and both
aggregators', each co-signing only after it has checked the entries since its last checkpoint
(penumbra.mpc.aggregator's `cosign`); `penumbra verify --cosigner` checks them."""

from __future__ import annotations

import time
from pathlib import Path

from penumbra.durable import atomic_write_bytes
from penumbra.ledger.log import Ledger, LedgerError
from penumbra.ledger.merkle import root_from_hashes
from penumbra.ledger.note import Checkpoint
from penumbra.ledger.witness_client import witness_checkpoint
from penumbra.mpc.deploy import AGGREGATORS
from penumbra.mpc.protocol import CosignReply, CosignRequest, b64
from penumbra.mpc.rounds import Aggregators, RoundAborted


class CoSignedLedger(Ledger):
    """A ledger whose every checkpoint also carries both aggregators' signatures."""

    cosigners: Aggregators | None = None
    known: dict[str, int]

    def checkpoint(self) -> Path:
        if self.cosigners is None:
            return super().checkpoint()
        lines = self.entries_path.read_bytes().split(b"\n")[:-1] if self.size else []
        cp = Checkpoint(self.origin, self.size, root_from_hashes(self._hashes))
        body = cp.body()
        signatures = self.signer.sign(body)
        known = getattr(self, "known", None) or {n: 0 for n in AGGREGATORS}
        self.known = known
        for name in AGGREGATORS:
            signatures += self._cosign(name, cp, lines)
        path = self.dir / "checkpoints" / f"{self.size:08d}"
        atomic_write_bytes(path, (body + "\n" + signatures).encode("utf-8"))
        if self.witnesses:
            witness_checkpoint(path, self._hashes, self.witnesses)
        return path

    def _cosign(self, name: str, cp: Checkpoint, lines: list[bytes]) -> str:
        assert self.cosigners is not None
        for _ in range(3):
            start = self.known[name]
            request = CosignRequest(
                origin=cp.origin,
                size=cp.size,
                root=b64(cp.root),
                start=start,
                entries=[line.decode("utf-8") for line in lines[start:]],
            )
            deadline = time.monotonic() + 120
            while True:
                try:
                    reply = CosignReply.model_validate(
                        self.cosigners.call(name, "POST", "/cosign", request.model_dump())
                    )
                    break
                except RoundAborted as e:
                    if time.monotonic() > deadline:
                        raise LedgerError(
                            f"checkpoint {cp.size}: {name} did not co-sign: {e}"
                        ) from None
                    time.sleep(1.0)
            if reply.need_from >= 0:
                self.known[name] = reply.need_from
                continue
            self.known[name] = cp.size
            return reply.signature
        raise LedgerError(f"checkpoint {cp.size}: {name} keeps asking for other entries")
