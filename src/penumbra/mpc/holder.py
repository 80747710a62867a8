"""A data holder: keeps its images, votes locally, submits each vote vector as Prio3 shares.

Per round it fetches the public candidates from the coordinator, checks the announcement
against its own config (`check_announcement`: the deployment's k, metric, bits and candidate
limit; a mismatching round is refused, logged, and nothing is computed or sent), counts its
votes with `count_votes` (integer votes: k per sample), and shards the vector with
Prio3BoundedVoteVec (each entry at most its declared count and below 2^bits, the sum at most
declared × k). The leader gets the leader share, the helper the helper share; neither share
alone says anything about the votes, and the clear vector never leaves this process (nor is
it logged).

`fault` exists for the fault-injection tests only: "late" misses the deadline, "invalid"
sends a vector whose encoding is out of range, "replay" resends its reports.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from penumbra.errors import DataError
from penumbra.mpc.deploy import PartyConfig, load_party_config
from penumbra.mpc.protocol import (
    UPLOAD_MEDIA_TYPE,
    Announcement,
    Upload,
    decode_embeddings,
    new_report_id,
    vdaf_ctx,
    vdaf_for,
)
from penumbra.mpc.tls import client_context, http_client
from penumbra.pe.voting import count_votes

log = logging.getLogger("penumbra.mpc.holder")
FAULTS = ("", "late", "invalid", "replay")


class AnnouncementRefused(DataError):
    """The coordinator announced a round this holder's deployment does not allow."""


def check_announcement(config: PartyConfig, ann: Announcement) -> None:
    """AnnouncementRefused unless the round's terms are the deployment's (the holder's own
    config): k, metric and bits equal, and 1 <= candidates <= max_candidates."""
    problems = [
        f"{name}={got!r} (this deployment: {want!r})"
        for name, got, want in (
            ("k", ann.k, config.k),
            ("metric", ann.metric, config.metric),
            ("bits", ann.bits, config.bits),
        )
        if got != want
    ]
    if not 1 <= ann.length <= config.max_candidates:
        problems.append(f"{ann.length} candidates (this deployment: 1..{config.max_candidates})")
    elif len(ann.shape) != 2 or ann.shape[0] != ann.length:
        problems.append(f"candidate embeddings of shape {ann.shape} for {ann.length} candidates")
    if problems:
        raise AnnouncementRefused(
            f"{config.name}: round {ann.round_id} refused, it announces " + "; ".join(problems)
        )


def integer_votes(
    private: np.ndarray, candidates: np.ndarray, k: int, bits: int, metric: str = "l2"
) -> list[int]:
    """k-NN votes as integers (1 per nearest candidate), each entry capped at 2^bits − 1."""
    counts = count_votes(private, candidates, k=k, metric=metric) * math.sqrt(k)
    votes = np.rint(counts).astype(np.int64)
    return [int(v) for v in np.minimum(votes, 2**bits - 1)]


def make_report(
    config: PartyConfig, round_id: str, votes: list[int], declared: int, *, invalid: bool = False
) -> list[Upload]:
    """One Upload per aggregator (leader first) for this vote vector, bounded by the holder's
    `declared` count (each entry) and declared × the deployment's k (the sum)."""
    vdaf = vdaf_for(len(votes), config.bits, declared, config.k)
    ctx = vdaf_ctx(config.deployment, round_id)
    nonce = secrets.token_bytes(vdaf.NONCE_SIZE)
    rand = secrets.token_bytes(vdaf.RAND_SIZE)
    if invalid:
        meas = vdaf.valid.encode(votes)  # type: ignore[attr-defined]
        meas[0] = 2  # not a bit: the entry's value escapes [0, 2^bits)
        public, shares = vdaf._shard_encoded(ctx, meas, nonce, rand)
    else:
        public, shares = vdaf.shard(ctx, votes, nonce, rand)
    report_id = new_report_id()
    return [
        Upload(
            round_id=round_id,
            report_id=report_id,
            nonce=nonce,
            public_share=vdaf.encode_public_share(public),
            input_share=vdaf.encode_input_share(share),
        )
        for share in shares
    ]


def _retry_after(header: str | None, default: float) -> float:
    """The server's Retry-After in seconds (capped at 5), or `default` if it names none."""
    try:
        seconds = float(header) if header is not None else default
    except ValueError:
        seconds = default
    return min(max(seconds, 0.05), 5.0) if math.isfinite(seconds) else default


class Holder:
    def __init__(
        self,
        config: PartyConfig,
        embed: Callable[[Announcement], np.ndarray],
        *,
        fault: str = "",
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.c = config
        self.embed = embed
        self.fault = fault
        info = config.holder(config.name)
        if info is None:
            raise DataError(f"{config.name}: not a holder of this deployment")
        self.declared = info.declared_count
        ctx = client_context(
            config.path(config.ca), config.path(config.cert), config.path(config.key)
        )
        self.client = http_client(
            ctx, connect=config.timeouts.connect_s, read=config.timeouts.read_s
        )
        self.done: set[str] = set()
        self.previous: list[Upload] = []

    def submit(self, ann: Announcement) -> None:
        """Vote on one round; AnnouncementRefused (before anything is computed or sent) when
        the round does not match the deployment."""
        check_announcement(self.c, ann)
        private = self.embed(ann)
        if len(private) > self.declared:
            raise DataError(
                f"{self.c.name}: {len(private)} private samples but the deployment declares "
                f"{self.declared}; re-run `penumbra mpc init` with the right --counts"
            )
        candidates = decode_embeddings(ann.embeddings, ann.shape)
        if private.shape[1] != candidates.shape[1]:
            raise AnnouncementRefused(
                f"{self.c.name}: round {ann.round_id}: candidates have {candidates.shape[1]} "
                f"dimensions but {ann.embedder or 'the private embeddings'} gives "
                f"{private.shape[1]}; the coordinator's embedder or its options differ from "
                "this holder's"
            )
        votes = integer_votes(private, candidates, self.c.k, self.c.bits, self.c.metric)
        uploads = make_report(
            self.c, ann.round_id, votes, self.declared, invalid=self.fault == "invalid"
        )
        del votes  # the clear vector goes no further
        if self.fault == "late":
            time.sleep(max(0.0, ann.deadline_unix - time.time()) + 0.5)
        for url, upload in zip((self.c.leader_url, self.c.helper_url), uploads, strict=True):
            self._post(f"{url}/upload", upload, ann.deadline_unix)
            if self.fault == "replay":
                self._post(f"{url}/upload", upload, ann.deadline_unix)  # same round
        if self.fault == "replay" and self.previous:
            for url, old in zip((self.c.leader_url, self.c.helper_url), self.previous, strict=True):
                replayed = dataclasses.replace(old, round_id=ann.round_id)
                self._post(f"{url}/upload", replayed, ann.deadline_unix)
        self.previous = uploads
        log.info(
            "%s: report %s submitted for round %s", self.c.name, uploads[0].report_id, ann.round_id
        )

    def _post(self, url: str, upload: Upload, deadline_unix: float | None = None) -> None:
        """Send one share; an aggregator that is busy (503) is asked again after the delay it
        names, with backoff, until the round's deadline."""
        body = upload.encode()
        delay = 0.2
        try:
            while True:
                response = self.client.post(
                    url, content=body, headers={"content-type": UPLOAD_MEDIA_TYPE}
                )
                if response.status_code != 503 or deadline_unix is None:
                    break
                wait = max(_retry_after(response.headers.get("retry-after"), delay), delay)
                wait *= 0.5 + secrets.randbelow(1000) / 1000  # spread the holders out
                if time.time() + wait >= deadline_unix:
                    break
                time.sleep(wait)
                delay = min(delay * 2, 5.0)
            reply = response.json() if response.status_code == 200 else {}
            if not reply.get("accepted"):
                log.warning(
                    "%s: %s refused report %s: %s",
                    self.c.name,
                    url,
                    upload.report_id,
                    reply.get("reason", response.status_code),
                )
        except httpx.HTTPError as e:
            log.warning("%s: upload to %s failed: %s", self.c.name, url, type(e).__name__)

    def run(self, *, max_idle_s: float = 600.0) -> int:
        """Poll the coordinator and answer every open round; return when the run finishes
        (0) or the coordinator has been unreachable for `max_idle_s` (1)."""
        last_contact = time.monotonic()
        log.info("%s: ready, polling %s", self.c.name, self.c.coordinator_url)
        while True:
            try:
                response = self.client.get(f"{self.c.coordinator_url}/round")
                response.raise_for_status()
                ann = Announcement.model_validate(response.json())
                last_contact = time.monotonic()
            except (httpx.HTTPError, ValueError) as e:
                if time.monotonic() - last_contact > max_idle_s:
                    log.error("%s: coordinator unreachable (%s); giving up", self.c.name, e)
                    return 1
                time.sleep(self.c.poll_s)
                continue
            if ann.finished:
                return 0
            if ann.open and ann.round_id not in self.done and time.time() < ann.deadline_unix:
                self.done.add(ann.round_id)
                try:
                    self.submit(ann)
                except AnnouncementRefused as e:
                    log.error("%s", e)
            time.sleep(self.c.poll_s)


def private_embedder(private: Path, state: Path) -> Callable[[Announcement], np.ndarray]:
    """Embeddings of the holder's private data with the embedder the round announces.

    `private` is a folder of images, or a `.npy` array of embeddings already computed with
    that embedder (tests and benchmarks). Cached under the holder's own state folder."""
    cache: dict[str, np.ndarray] = {}

    def embed(ann: Announcement) -> np.ndarray:
        if private.suffix == ".npy":
            if "npy" not in cache:
                cache["npy"] = np.load(private).astype(np.float32)
            return cache["npy"]
        key = json.dumps([ann.embedder, ann.embedder_options], sort_keys=True)
        if key not in cache:
            from penumbra.models import load
            from penumbra.spti.private_embeddings import embed_private_images

            model = load(ann.embedder, role="image-embedder", **ann.embedder_options)  # type: ignore[arg-type]
            if ann.embedder_fingerprint and model.fingerprint != ann.embedder_fingerprint:
                raise DataError(
                    f"{ann.embedder}: this holder's copy differs from the "
                    "coordinator's (fingerprint); install the same version"
                )
            emb, _ = embed_private_images(
                private,
                state,
                voting="image",
                image_embedder=model,  # type: ignore[arg-type]
                captioner=None,  # type: ignore[arg-type]
                text_embedder=None,  # type: ignore[arg-type]
                max_pixels=64_000_000,
            )
            cache[key] = emb
        return cache[key]

    return embed


def run_holder(
    config_path: Path | str,
    private: Path | str,
    *,
    fault: str = "",
    warm_embedder: str = "builtin:effnet-lite0",
) -> int:
    config = load_party_config(config_path, "holder")
    private = Path(private)
    if not private.exists():
        raise DataError(f"{private}: private data not found; check --private")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    embed = private_embedder(private, config.path(config.state_dir))
    if private.is_dir() and warm_embedder:
        # Embed before the first round (the default voting embedder), so that a round's
        # deadline is spent voting, not loading models; another announced embedder still works.
        embed(Announcement(open=False, embedder=warm_embedder))
    holder = Holder(config, embed, fault=fault)
    return holder.run()
