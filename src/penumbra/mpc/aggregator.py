"""An aggregator (DAP leader or helper): verifies reports jointly, sums shares, adds noise.

Per round: holders upload their input share for this aggregator; at close the leader runs
`verify_init` on each report and sends its verifier shares to the helper, which combines them
with its own (`verifier_shares_to_message`), runs `verify_next`, and answers each report with
the verifier message or the reason it was rejected; the leader runs `verify_next` too and
commits the final accepted set to the helper, so both sum exactly the same reports. Each then
adds its own discrete Gaussian noise (SystemRandom, never logged) to its aggregate share.

An honest aggregator protects the holders alone (penumbra.mpc.policy): k, the holders' bounds
and the candidate limit come from its own config, and a round announcing another k is refused;
δ may not exceed the deployment's 1/(N ln N); it calibrates its own σ from the run's (ε, δ, T)
with `privacy.zcdp.dgauss_sigma` (never trusting a smaller σ from the coordinator); it admits a
run only if the run's ρ fits, beside every run before it, within the deployment's
`max_epsilon` (zCDP over all runs, state/budget.json); it books each release before its share
leaves, releases at most one share per (run, iteration) and at most T per run, and refuses
report ids and nonces it has seen before (persisted, across rounds and restarts). It only ever
holds shares — never a holder's vote vector — and logs ids, counts and reasons only.

Its HTTP front (routes, roles, upload admission) is penumbra.mpc.aggregator_app; the reports
and replay store it keeps per round are penumbra.mpc.aggregator_state.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

import httpx
from fastapi import HTTPException

from penumbra.durable import atomic_write_bytes
from penumbra.ledger.log import canonical
from penumbra.ledger.merkle import leaf_hash, root_from_hashes
from penumbra.ledger.note import Checkpoint
from penumbra.mpc.aggregator_state import Report, Round, SeenStore
from penumbra.mpc.deploy import PartyConfig, note_signer
from penumbra.mpc.policy import (
    BudgetBook,
    Refused,
    RunTerms,
    check_round,
    deployment_delta,
    own_sigma,
)
from penumbra.mpc.protocol import (
    Accepted,
    AggregateShare,
    CommitRequest,
    CosignReply,
    CosignRequest,
    Rejection,
    RoundOutcome,
    RoundParams,
    RoundStatus,
    Upload,
    UploadReply,
    VerifyItem,
    VerifyReply,
    VerifyRequest,
    VerifyResult,
    b64,
    unb64,
    vdaf_ctx,
    vdaf_for,
)
from penumbra.privacy.dgauss import sample_discrete_gaussian

log = logging.getLogger("penumbra.mpc.aggregator")
_SAFE = re.compile(r"^[A-Za-z0-9._/+-]{1,120}$")
_ROUND_ID = re.compile(r"^[A-Za-z0-9_-]{1,120}$")  # what `new_round_id` makes, and no path


def parse_cosign_entry(text: str) -> dict[str, Any]:
    """A ledger line sent for co-signing: a JSON object in canonical form, else ValueError."""
    try:
        entry = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(entry, dict):
        raise ValueError("not a JSON object")
    if canonical(entry).decode("utf-8") != text:
        raise ValueError("not in canonical form")
    return entry


class Aggregator:
    """The state and logic of one aggregator; penumbra.mpc.aggregator_app serves it over
    mutual TLS."""

    def __init__(self, config: PartyConfig) -> None:
        self.c = config
        self.agg_id = 0 if config.name == "leader" else 1
        self.verify_key = bytes.fromhex(config.verify_key or "")
        self.state = config.path(config.state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.seen = SeenStore(self.state / "seen.txt")
        self.rounds: dict[str, Round] = {}
        self.lock = threading.RLock()
        assert config.max_epsilon is not None  # load_party_config requires it
        self.book = BudgetBook(
            self.state / "budget.json",
            max_epsilon=config.max_epsilon,
            delta=deployment_delta(config),
            k=config.k,
        )
        self.signer = note_signer(config)

    # -- helpers ----------------------------------------------------------------------------

    def _round(self, round_id: str) -> Round:
        found = self.rounds.get(round_id)
        if found is None:
            raise HTTPException(404, f"unknown round {round_id}")
        return found

    def _vdaf(self, length: int, holder: str) -> Any:
        """The VDAF of this holder's reports: its declared count and OUR k bound them."""
        info = self.c.holder(holder)
        assert info is not None
        return vdaf_for(length, self.c.bits, info.declared_count, self.c.k)

    # -- coordinator-facing -----------------------------------------------------------------

    def open_round(self, params: RoundParams, run: str, budget: dict[str, Any]) -> dict[str, Any]:
        """Check the round against our own terms and budget, calibrate our own σ, open it.

        Refused (HTTP 4xx, nothing reserved or opened) for another k, a δ above the
        deployment's, too many candidates, an iteration released or beyond T, a run whose
        terms changed, or a run the deployment budget cannot take (penumbra.mpc.policy)."""
        if not _SAFE.match(params.round_id) or not _SAFE.match(run):
            raise HTTPException(400, "bad round or run id")
        with self.lock:
            if params.round_id in self.rounds:
                raise HTTPException(409, f"round {params.round_id} exists")
            try:
                terms = RunTerms.parse(budget)
                check_round(self.c, params, terms)
                self.book.check_iteration(run, params.iteration, terms)
                own = own_sigma(self.c, terms)
                self.book.admit(run, terms, own)
            except Refused as e:
                log.warning("round %s of run %s refused: %s", params.round_id, run, e)
                raise HTTPException(e.status, str(e)) from None
            accounted = max(own, params.sigma)
            sigma = 0.0 if self.c.test_noiseless else accounted
            params = params.model_copy(update={"sigma": sigma})
            self.rounds[params.round_id] = Round(params, run, accounted)
        log.info(
            "round %s opened (iteration %d, %d candidates)",
            params.round_id,
            params.iteration,
            params.length,
        )
        return {"sigma": sigma}

    def status(self, round_id: str) -> RoundStatus:
        with self.lock:
            rnd = self._round(round_id)
            uploads: dict[str, int] = {}
            for report in rnd.reports.values():
                uploads[report.holder] = uploads.get(report.holder, 0) + 1
            return RoundStatus(round_id=round_id, state=rnd.state, uploads=uploads)

    # -- holder-facing ----------------------------------------------------------------------

    def upload(self, holder: str, msg: Upload) -> UploadReply:
        with self.lock:
            rnd = self.rounds.get(msg.round_id)

            def refuse(reason: str) -> UploadReply:
                if rnd is not None:
                    rnd.refused.append(
                        Rejection(report_id=msg.report_id[:64], holder=holder, reason=reason)
                    )
                log.info("report %s from %s refused: %s", msg.report_id[:64], holder, reason)
                return UploadReply(accepted=False, reason=reason)

            if rnd is None or rnd.state != "open":
                return refuse("round is not open")
            if time.time() > rnd.params.deadline_unix:
                return refuse("after the round deadline")
            nonce_text = b64(msg.nonce)
            if self.seen.seen(msg.report_id, nonce_text):
                return refuse("replayed report (id or nonce seen before)")
            if any(r.holder == holder for r in rnd.reports.values()):
                return refuse("second report from this holder in the round")
            vdaf = self._vdaf(rnd.params.length, holder)
            try:
                if len(msg.nonce) != vdaf.NONCE_SIZE:
                    raise ValueError("nonce size")
                decoded = (
                    vdaf.decode_public_share(msg.public_share),
                    vdaf.decode_input_share(self.agg_id, msg.input_share),
                )
            except ValueError:
                return refuse("malformed report")
            self.seen.add(msg.report_id, nonce_text)
            report = Report(holder, msg.nonce, msg.public_share, msg.input_share)
            rnd.reports[msg.report_id] = report
        log.info("report %s from %s stored", msg.report_id, holder)
        # The expensive part, outside the lock: other uploads and rounds go on meanwhile.
        try:
            prepared: tuple[Any, Any, Any] | ValueError = self._verify_init(rnd, report, decoded)
        except ValueError as e:
            prepared = ValueError(str(e))  # not `e`: its traceback holds the shares
        with self.lock:
            report.prepared = prepared
            report.input_share = b""  # the verify state is all we need of it from here on
        return UploadReply(accepted=True)

    # -- verification -----------------------------------------------------------------------

    def _init(self, rnd: Round, report_id: str) -> tuple[Any, Any, Any]:
        """verify_init of a stored report: the result from its upload, else computed now."""
        report = rnd.reports[report_id]
        if isinstance(report.prepared, ValueError):
            raise report.prepared
        if report.prepared is not None:
            return report.prepared
        return self._verify_init(rnd, report)

    def _verify_init(
        self, rnd: Round, report: Report, decoded: tuple[Any, Any] | None = None
    ) -> tuple[Any, Any, Any]:
        """verify_init on the report's shares (`decoded`: its public and input share, already
        decoded at upload, so the megabyte share is not parsed twice)."""
        vdaf = self._vdaf(rnd.params.length, report.holder)
        if decoded is None:
            decoded = (
                vdaf.decode_public_share(report.public_share),
                vdaf.decode_input_share(self.agg_id, report.input_share),
            )
        ctx = vdaf_ctx(self.c.deployment, rnd.params.round_id)
        state, share = vdaf.verify_init(
            self.verify_key,
            ctx,
            self.agg_id,
            None,
            report.nonce,
            *decoded,
        )
        return vdaf, state, share

    def close(self, round_id: str, client: httpx.Client) -> RoundOutcome:
        """Leader: verify every report with the helper, commit the accepted set."""
        with self.lock:
            rnd = self._round(round_id)
            if rnd.outcome is not None:
                return rnd.outcome
            rnd.state = "verifying"
            items: list[VerifyItem] = []
            rejected = list(rnd.refused)
            states: dict[str, Any] = {}
            for rid, report in rnd.reports.items():
                try:
                    vdaf, state, share = self._init(rnd, rid)
                except ValueError as e:
                    rejected.append(
                        Rejection(
                            report_id=rid,
                            holder=report.holder,
                            reason=f"verification failed at leader: {e}",
                        )
                    )
                    continue
                states[rid] = (vdaf, state)
                items.append(
                    VerifyItem(
                        report_id=rid,
                        holder=report.holder,
                        verifier_share=b64(vdaf.encode_verifier_share(share)),
                    )
                )
        request = VerifyRequest(round_id=round_id, items=items, rejected=[])
        reply = VerifyReply.model_validate(
            _post(client, f"{self.c.helper_url}/rounds/{round_id}/verify", request.model_dump())
        )
        accepted: list[Accepted] = []
        with self.lock:
            for result in reply.items:
                report = rnd.reports[result.report_id]
                if not result.ok:
                    rejected.append(
                        Rejection(
                            report_id=result.report_id, holder=report.holder, reason=result.reason
                        )
                    )
                    continue
                vdaf, state = states[result.report_id]
                try:
                    message = vdaf.decode_verifier_message(unb64(result.verifier_message))
                    rnd.out_shares[result.report_id] = vdaf.verify_next(
                        vdaf_ctx(self.c.deployment, round_id), state, message
                    )
                except ValueError as e:
                    rejected.append(
                        Rejection(
                            report_id=result.report_id,
                            holder=report.holder,
                            reason=f"rejected at leader: {e}",
                        )
                    )
                    continue
                accepted.append(Accepted(report_id=result.report_id, holder=report.holder))
            rejected += reply.rejected
        commit = CommitRequest(round_id=round_id, accepted=accepted, rejected=rejected)
        _post(client, f"{self.c.helper_url}/rounds/{round_id}/commit", commit.model_dump())
        with self.lock:
            rnd.outcome = RoundOutcome(round_id=round_id, accepted=accepted, rejected=rejected)
            rnd.state = "committed"
            _drop_verify_work(rnd)
        log.info(
            "round %s: %d reports accepted, %d rejected", round_id, len(accepted), len(rejected)
        )
        return rnd.outcome

    def verify(self, request: VerifyRequest) -> VerifyReply:
        """Helper: combine verifier shares, decide each report, keep the output shares."""
        results: list[VerifyResult] = []
        with self.lock:
            rnd = self._round(request.round_id)
            if rnd.state != "open":
                raise HTTPException(409, "round already verified")
            rnd.state = "verifying"
            ctx = vdaf_ctx(self.c.deployment, request.round_id)
            leader_ids = {item.report_id for item in request.items}
            for item in request.items:
                report = rnd.reports.get(item.report_id)
                if report is None or report.holder != item.holder:
                    results.append(
                        VerifyResult(
                            report_id=item.report_id, ok=False, reason="share missing at helper"
                        )
                    )
                    continue
                try:
                    vdaf, state, share = self._init(rnd, item.report_id)
                    leader_share = vdaf.decode_verifier_share(unb64(item.verifier_share))
                    message = vdaf.verifier_shares_to_message(ctx, None, [leader_share, share])
                    rnd.out_shares[item.report_id] = vdaf.verify_next(ctx, state, message)
                except ValueError as e:
                    results.append(
                        VerifyResult(
                            report_id=item.report_id, ok=False, reason=f"invalid report: {e}"
                        )
                    )
                    continue
                results.append(
                    VerifyResult(
                        report_id=item.report_id,
                        ok=True,
                        verifier_message=b64(vdaf.encode_verifier_message(message)),
                    )
                )
            rejected = list(rnd.refused) + [
                Rejection(report_id=rid, holder=r.holder, reason="share missing at leader")
                for rid, r in rnd.reports.items()
                if rid not in leader_ids
            ]
            rnd.state = "verified"
        return VerifyReply(items=results, rejected=rejected)

    def commit(self, request: CommitRequest) -> None:
        with self.lock:
            rnd = self._round(request.round_id)
            if rnd.state != "verified":
                raise HTTPException(409, "round not verified here")
            ids = [a.report_id for a in request.accepted]
            if len(set(ids)) != len(ids):  # a report listed twice would be summed twice
                raise HTTPException(409, "a report is accepted more than once")
            missing = [rid for rid in ids if rid not in rnd.out_shares]
            if missing:
                raise HTTPException(409, f"{len(missing)} accepted reports not verified here")
            rnd.outcome = RoundOutcome(
                round_id=request.round_id, accepted=request.accepted, rejected=request.rejected
            )
            rnd.state = "committed"
            _drop_verify_work(rnd)

    # -- release ----------------------------------------------------------------------------

    def aggregate(self, round_id: str) -> AggregateShare:
        """Our noisy aggregate share, drawn once, booked and persisted before it leaves:
        asking again returns the same. 404 means this aggregator does not hold the round and
        never released it (e.g. it restarted before releasing); 409, not committed yet or
        refused by the budget book (nothing released)."""
        with self.lock:
            rnd = self.rounds.get(round_id)
            stored = self.state / "released" / f"{round_id}.json"
            if stored.exists():
                return AggregateShare.model_validate_json(stored.read_text(encoding="utf-8"))
            if rnd is None:
                if self.book.booked(round_id):  # died between booking and storing: spent
                    raise HTTPException(409, "round booked as released but its share was lost")
                raise HTTPException(404, "round unknown here (never released)")
            if rnd.outcome is None:
                raise HTTPException(409, "round not committed")
            vdaf = vdaf_for(rnd.params.length, self.c.bits, 1)
            agg = vdaf.agg_init(None)
            for item in rnd.outcome.accepted:
                agg = vdaf.agg_update(None, agg, rnd.out_shares[item.report_id])
            if rnd.params.sigma > 0:
                noise = sample_discrete_gaussian(_exact(rnd.params.sigma), rnd.params.length)
                p = vdaf.field.MODULUS
                agg = [(a + int(z)) % p for a, z in zip(agg, noise.tolist(), strict=True)]
                del noise  # never logged, never stored apart from the noisy share
            share = AggregateShare(
                round_id=round_id,
                aggregator=self.c.name,
                agg_share=b64(vdaf.encode_agg_share(agg)),
                accepted=[a.report_id for a in rnd.outcome.accepted],
                sigma=rnd.params.sigma,
                noiseless=self.c.test_noiseless,
            )
            try:
                self.book.charge(rnd.run, rnd.params.iteration, round_id, rnd.accounted_sigma)
            except Refused as e:
                raise HTTPException(e.status, str(e)) from None
            atomic_write_bytes(stored, share.model_dump_json().encode("utf-8"))
            rnd.state = "released"
            rnd.out_shares.clear()
        log.info("round %s released (%d reports)", round_id, len(share.accepted))
        return share

    # -- ledger co-signing ------------------------------------------------------------------

    def cosign(self, request: CosignRequest) -> CosignReply:
        """Sign a checkpoint only for a log we mirror whose rounds match what we released."""
        if not _SAFE.match(request.origin):
            raise HTTPException(400, "bad origin")
        mirror = self.state / "mirror" / f"{request.origin.replace('/', '_')}.jsonl"
        with self.lock:
            lines = mirror.read_text(encoding="utf-8").splitlines() if mirror.exists() else []
            if request.start != len(lines):
                return CosignReply(need_from=len(lines))
            for text in request.entries:
                try:
                    entry = parse_cosign_entry(text)
                except ValueError as e:
                    raise HTTPException(400, f"ledger entry refused: {e}") from None
                self._check_entry(entry)
            new = lines + list(request.entries)
            if len(new) != request.size:
                raise HTTPException(409, "checkpoint size does not match the entries")
            root = root_from_hashes([leaf_hash(t.encode("utf-8")) for t in new])
            if b64(root) != request.root:
                raise HTTPException(409, "checkpoint root does not match the entries")
            if request.entries:
                atomic_write_bytes(mirror, ("\n".join(new) + "\n").encode("utf-8"))
            body = Checkpoint(request.origin, request.size, root).body()
        return CosignReply(signature=self.signer.sign(body))

    def _check_entry(self, entry: dict[str, Any]) -> None:
        if entry.get("type") != "mpc_round" or entry.get("outcome") != "released":
            return
        round_id = entry.get("round_id")
        accepted = entry.get("accepted_ids", [])
        # the round id names a file here: a coordinator must not steer it out of released/
        if not isinstance(round_id, str) or not _ROUND_ID.fullmatch(round_id):
            raise HTTPException(400, "ledger entry has no valid round_id")
        if not isinstance(accepted, list) or not all(isinstance(a, str) for a in accepted):
            raise HTTPException(400, "ledger entry's accepted_ids is not a list of ids")
        stored = self.state / "released" / f"{round_id}.json"
        if not stored.exists():
            return  # a round of ours we no longer hold; nothing to contradict
        ours = AggregateShare.model_validate_json(stored.read_text(encoding="utf-8"))
        if sorted(ours.accepted) != sorted(accepted):
            raise HTTPException(409, f"round {ours.round_id}: accepted reports differ from ours")


def _drop_verify_work(rnd: Round) -> None:
    """Once a round is committed its reports' verify states are spent (the output shares that
    count are in `out_shares`): free them, so a round holds kilobytes per report, not megabytes."""
    for report in rnd.reports.values():
        report.prepared = None
        report.input_share = b""
        report.public_share = b""


def _exact(sigma: float) -> Any:
    from penumbra.mpc.protocol import sigma_fraction

    return sigma_fraction(sigma)


def _post(client: httpx.Client, url: str, payload: dict[str, Any]) -> Any:
    response = client.post(url, json=payload)
    if response.status_code != 200:
        raise HTTPException(502, f"{url}: {response.status_code} {response.text[:200]}")
    return response.json()
