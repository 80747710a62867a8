"""The witness (C2SP tlog-witness) and its cosignatures (tlog-cosignature v1), issue 27 items 1-2.

Protocol tests call `Witness` directly; the run-level tests start the real HTTP server on
loopback and a real run, and copy or roll back its folder as an attacker holding it would."""

from __future__ import annotations

import base64
import itertools
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from penumbra.ledger.cosignature import parse_cosigner_key
from penumbra.ledger.log import Ledger
from penumbra.ledger.merkle import consistency_proof_from_hashes
from penumbra.ledger.note import NoteError, generate_signer
from penumbra.ledger.verify import verify_run
from penumbra.ledger.witness import Witness, add_log, init_state, stored_checkpoint
from penumbra.ledger.witness_app import make_app
from penumbra.ledger.witness_client import (
    WitnessEndpoint,
    WitnessRefused,
    request_body,
)


def _ledger(run: Path, entries: int) -> Ledger:
    ledger = Ledger.open(run)
    for i in range(entries):
        ledger.append("files", {"stage": f"s{i}", "files": [], "removed": []})
    return ledger


def _note(ledger: Ledger) -> str:
    path = ledger.newest_checkpoint()
    assert path is not None
    return path.read_text()


def _trust(state: Path, run: Path) -> None:
    """`penumbra ledger witness add-log STATE --key RUN/ledger/pubkey --origin RUN/ledger/origin`"""
    ledger = run / "ledger"
    add_log(state, (ledger / "pubkey").read_text(), (ledger / "origin").read_text().strip())


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    init_state(tmp_path / "w", "witness.test/w1")
    return Witness(tmp_path / "w")


def test_cosigns_a_first_checkpoint_and_the_cosignature_verifies(
    tmp_path: Path, witness: Witness
) -> None:
    ledger = _ledger(tmp_path / "run", 3)
    _trust(witness.folder, tmp_path / "run")
    note = _note(ledger)
    reply = witness.add_checkpoint(request_body(0, [], note))
    assert reply.status == 200, reply.body
    key = parse_cosigner_key((witness.folder / "witness.vkey").read_text())
    checkpoint, timestamp = key.verify(note + reply.body)
    assert checkpoint.size == 3 and abs(timestamp - time.time()) < 60
    # the signed message is domain-separated: the same signature does not verify as the log's
    tampered = note.replace("\n3\n", "\n4\n") + reply.body
    with pytest.raises(NoteError):
        key.verify(tampered)


def test_status_codes_of_the_spec(tmp_path: Path, witness: Witness) -> None:
    ledger = _ledger(tmp_path / "run", 2)
    vkey = (tmp_path / "run" / "ledger" / "pubkey").read_text()
    note = _note(ledger)
    assert witness.add_checkpoint(request_body(0, [], note)).status == 404  # unknown log
    add_log(witness.folder, vkey, ledger.origin)
    assert witness.add_checkpoint(request_body(0, [], note)).status == 200  # no restart needed
    # a checkpoint of the same origin signed by another key: 403
    impostor = generate_signer("penumbra-run")
    forged = Ledger(ledger.run_dir, impostor, ledger.origin)
    forged_note = note.split("\n\n")[0] + "\n\n" + impostor.sign(note.split("\n\n")[0] + "\n")
    assert forged.origin == ledger.origin
    assert witness.add_checkpoint(request_body(0, [], forged_note)).status == 403
    # stale old size: 409 with the size it holds, as text/x.tlog.size
    for _ in range(2):
        ledger.append("files", {"stage": "more", "files": [], "removed": []})
    stale = witness.add_checkpoint(request_body(0, [], _note(ledger)))
    assert (stale.status, stale.body, stale.content_type) == (409, "2\n", "text/x.tlog.size")
    # a proof that does not verify: 422, and the fork is kept as evidence
    wrong = [b"\x00" * 32] * len(consistency_proof_from_hashes(ledger._hashes, 2))
    assert witness.add_checkpoint(request_body(2, wrong, _note(ledger))).status == 422
    assert len(list((witness.folder / "evidence").iterdir())) == 1
    good = consistency_proof_from_hashes(ledger._hashes, 2)
    assert witness.add_checkpoint(request_body(2, good, _note(ledger))).status == 200
    # old larger than the checkpoint, malformed bodies, too many proof lines: 400
    assert witness.add_checkpoint(request_body(9, [], _note(ledger))).status == 400
    assert witness.add_checkpoint(b"old 01\n\n" + _note(ledger).encode()).status == 400
    assert witness.add_checkpoint(b"\xff\xfe").status == 400
    assert witness.add_checkpoint(request_body(4, [b"\x01" * 32] * 64, _note(ledger))).status == 400


def test_another_tree_of_the_same_size_is_a_conflict(tmp_path: Path, witness: Witness) -> None:
    ledger = _ledger(tmp_path / "run", 2)
    _trust(witness.folder, tmp_path / "run")
    assert witness.add_checkpoint(request_body(0, [], _note(ledger))).status == 200
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    ledger.append("files", {"stage": "original", "files": [], "removed": []})
    copy = Ledger.open(tmp_path / "copy")
    copy.append("files", {"stage": "the copy went another way", "files": [], "removed": []})
    proof = consistency_proof_from_hashes(ledger._hashes, 2)
    assert witness.add_checkpoint(request_body(2, proof, _note(ledger))).status == 200
    # the copy's tree of size 3 is not the one cosigned: 409 (size 3 held), never a cosignature
    reply = witness.add_checkpoint(request_body(3, [], _note(copy)))
    assert reply.status == 409
    # and a restarted witness (a new process) remembers
    assert Witness(witness.folder).add_checkpoint(request_body(3, [], _note(copy))).status == 409


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A real witness on loopback: (url, verifier key, state folder)."""
    state = tmp_path / "witness-state"
    vkey = init_state(state, "witness.test/w1").vkey
    port = _free_port()
    config = uvicorn.Config(make_app(state), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", vkey, state
    srv.should_exit = True
    thread.join(timeout=10)


def _problems(report: object) -> list[str]:
    """verify's failures, less the one every bare test ledger has (no run_start entry)."""
    failures = report.failures  # type: ignore[attr-defined]
    return [f"{f.location}: {f.message}" for f in failures if f.message != "no run_start entry"]


def _endpoint(url: str, vkey: str) -> WitnessEndpoint:
    return WitnessEndpoint(url, parse_cosigner_key(vkey), client=httpx.Client(timeout=5))


def test_a_copied_ledger_is_refused_before_it_can_go_on(
    tmp_path: Path, server: tuple[str, str, Path]
) -> None:
    url, vkey, state = server
    run = tmp_path / "run"
    _ledger(run, 0)  # make the key, then trust it
    _trust(state, run)
    original = Ledger.open(run, witnesses=[_endpoint(url, vkey)])
    original.append("files", {"stage": "a", "files": [], "removed": []})
    shutil.copytree(run, tmp_path / "copy")  # a mid-way copy, key and all
    original.append("files", {"stage": "b", "files": [], "removed": []})
    original.append("files", {"stage": "c", "files": [], "removed": []})
    # every checkpoint of the original carries the witness's cosignature
    key = parse_cosigner_key(vkey)
    assert key.verify(_note(original))[0].size == 3
    with pytest.raises(WitnessRefused, match="rolled back or is a copy"):
        Ledger.open(tmp_path / "copy", witnesses=[_endpoint(url, vkey)])
    # verify: the original passes with the witness key, the copy (went on without it) fails
    assert _problems(verify_run(run, witnesses=[key])) == []
    copy = Ledger.open(tmp_path / "copy")  # an attacker drops the witness and goes on
    copy.append("files", {"stage": "forked", "files": [], "removed": []})
    copy.append("files", {"stage": "forked again", "files": [], "removed": []})
    problems = _problems(verify_run(tmp_path / "copy", witnesses=[key]))
    assert len(problems) == 1 and "not cosigned by it" in problems[0], problems
    # an earlier checkpoint an auditor kept catches the rewritten log (re-signed, no witness)
    kept = tmp_path / "kept-checkpoint"
    kept.write_text((run / "ledger" / "checkpoints" / "00000003").read_text())
    held = [(str(kept), kept.read_text())]
    assert _problems(verify_run(run, checkpoints=held)) == []
    problems = _problems(verify_run(tmp_path / "copy", checkpoints=held))
    assert len(problems) == 1 and "rewritten" in problems[0], problems
    # and a folder rolled back to before the kept checkpoint: shorter than what it signed
    shutil.copytree(tmp_path / "copy", tmp_path / "short")
    (tmp_path / "short" / "ledger" / "checkpoints" / "00000003").unlink()
    lines = (tmp_path / "short" / "ledger" / "entries.jsonl").read_bytes().split(b"\n")
    (tmp_path / "short" / "ledger" / "entries.jsonl").write_bytes(b"\n".join(lines[:2]) + b"\n")
    problems = _problems(verify_run(tmp_path / "short", checkpoints=held))
    assert len(problems) == 1 and "rolled back" in problems[0], problems


def test_unreachable_witness_stops_with_one_line(tmp_path: Path) -> None:
    _ledger(tmp_path / "run", 1)
    state = tmp_path / "w"
    vkey = init_state(state, "witness.test/w1").vkey
    dead = _endpoint(f"http://127.0.0.1:{_free_port()}", vkey)
    with pytest.raises(WitnessRefused, match="unreachable") as info:
        Ledger.open(tmp_path / "run", witnesses=[dead])
    assert len(info.value.problems) == 1


def test_request_body_is_the_wire_format() -> None:
    body = request_body(5, [b"\x01" * 32], "origin\n6\nroot\n\n")
    assert body == b"old 5\n" + base64.b64encode(b"\x01" * 32) + b"\n\norigin\n6\nroot\n\n"


FIXTURES = Path(__file__).resolve().parents[1] / "spti" / "fixtures"


def test_a_run_copied_mid_way_stops_before_drawing_noise(
    tmp_path: Path, server: tuple[str, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped after its first release, copied: the original goes on under the witness
    (here one more signed entry, as its next release would be); the copy, resumed with the
    same witness, is refused in one line before it draws release 1 a second time."""
    import os

    from penumbra.cli import main

    url, vkey, state = server
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "text-run-6ffe0bb", run)
    os.chmod(run / "private", 0o700)  # git keeps no folder modes
    shutil.copytree(run, tmp_path / "copy")
    origin = (run / "ledger" / "origin").read_text().strip()
    add_log(state, (run / "ledger" / "pubkey").read_text(), origin)
    original = Ledger.open(run, witnesses=[_endpoint(url, vkey)])
    original.append("files", {"stage": "the original went on", "files": [], "removed": []})
    reviews = str(FIXTURES / "text-run-6ffe0bb-reviews.jsonl")
    witnessed = f"ledger.witnesses=[{{url: '{url}', key: '{vkey}'}}]"
    copy = tmp_path / "copy"
    assert (
        main(["synthesize", "--private", reviews, "--set", witnessed, "--resume", str(copy)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "witness witness.test/w1" in err[0] and "copy" in err[0], err
    assert not (copy / "candidates" / "release-001.json").exists()  # no second draw
    assert (copy / "ledger" / "entries.jsonl").read_bytes() == (
        FIXTURES / "text-run-6ffe0bb" / "ledger" / "entries.jsonl"
    ).read_bytes()
    # the auditor: the original's newest checkpoint is witnessed, the copy's is not
    assert main(["verify", str(copy), "--witness-key", vkey, "--trust-run-key"]) == 1
    assert "not cosigned by it" in capsys.readouterr().out


def test_concurrent_submissions_form_one_chain(tmp_path: Path, witness: Witness) -> None:
    """Every (old, new) pair of a 12-entry log, sent at once from 16 threads: the witness
    accepts only requests whose old size is the one it holds, so the accepted ones form a
    single chain 0 → … → the stored size, and it never rolls back (the spec's race)."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    ledger = _ledger(tmp_path / "run", 12)
    _trust(witness.folder, tmp_path / "run")
    notes = {
        n: (tmp_path / "run" / "ledger" / "checkpoints" / f"{n:08d}").read_text()
        for n in range(1, 13)
    }
    pairs = [(old, new) for new in range(1, 13) for old in range(new)]
    random.Random(0).shuffle(pairs)

    def send(pair: tuple[int, int]) -> tuple[int, int, int]:
        old, new = pair
        proof = consistency_proof_from_hashes(ledger._hashes[:new], old) if old else []
        return old, new, witness.add_checkpoint(request_body(old, proof, notes[new])).status

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, pairs))
    accepted = sorted((old, new) for old, new, status in results if status == 200)
    assert all(status in (200, 409) for *_, status in results)
    assert accepted[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(accepted)), accepted
    stored = stored_checkpoint(witness.folder, ledger.origin)
    assert stored is not None and stored.size == accepted[-1][1]


def test_a_copy_under_a_fresh_origin_is_not_a_new_log(
    tmp_path: Path, server: tuple[str, str, Path]
) -> None:
    """Review finding: whoever holds a copied folder holds the key and can re-sign the log
    under a fresh origin. A witness trusts a key for named origins only, so that copy is an
    unknown log (404): refused at open, and never cosigned for verify."""
    from penumbra.errors import PenumbraError
    from penumbra.ledger.merkle import root_from_hashes
    from penumbra.ledger.note import Checkpoint, load_private_key, sign_checkpoint

    url, vkey, state = server
    run = tmp_path / "run"
    _ledger(run, 0)
    _trust(state, run)
    original = Ledger.open(run, witnesses=[_endpoint(url, vkey)])
    original.append("files", {"stage": "a", "files": [], "removed": []})
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "ledger" / "origin").write_text("penumbra.run/fresh-origin\n")
    signer = load_private_key(copy / "private" / "ledger.key", "penumbra-run")
    for path in (copy / "ledger" / "checkpoints").iterdir():
        size = int(path.name)
        cp = Checkpoint(
            "penumbra.run/fresh-origin", size, root_from_hashes(original._hashes[:size])
        )
        path.write_text(sign_checkpoint(cp, [signer]))
    with pytest.raises(WitnessRefused, match="does not witness this run's log"):
        Ledger.open(copy, witnesses=[_endpoint(url, vkey)])
    with pytest.raises(PenumbraError, match="origin"):
        add_log(state, (run / "ledger" / "pubkey").read_text(), "")


def test_what_penumbra_adds_to_a_finished_run_is_witnessed(
    tmp_path: Path, server: tuple[str, str, Path]
) -> None:
    """Review finding: `record_published` (the report and evaluation written after a run) must
    have its checkpoint cosigned too, or an honest run fails verify --witness-key."""
    import yaml

    from penumbra.ledger.tree import record_published

    url, vkey, state = server
    run = tmp_path / "run"
    _ledger(run, 0)
    _trust(state, run)
    Ledger.open(run, witnesses=[_endpoint(url, vkey)]).append(
        "files", {"stage": "a", "files": [], "removed": []}
    )
    (run / "run.yaml").write_text(
        yaml.safe_dump({"ledger": {"witnesses": [{"url": url, "key": vkey}]}})
    )
    record_published(run, "evaluation", written=("run.yaml",))
    newest = Ledger.open(run).newest_checkpoint()
    assert newest is not None and newest.name == "00000002"
    assert parse_cosigner_key(vkey).verify(newest.read_text())[0].size == 2


def test_a_hostile_witness_gets_one_line_never_a_traceback(tmp_path: Path) -> None:
    """Review finding: a witness's reply is bounded (size, a 409's size line) and must not
    crash the run or let it go on."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    replies = {
        "long-size": Response("9" * 5000 + "\n", 409, media_type="text/x.tlog.size"),
        "huge": Response("— w " + "A" * 200_000 + "\n", 200),
        "garbage": Response("not a cosignature\n", 200),
    }

    async def add_checkpoint(request):  # type: ignore[no-untyped-def]
        return replies[request.path_params["kind"]]

    app = Starlette(routes=[Route("/{kind}/add-checkpoint", add_checkpoint, methods=["POST"])])
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "the hostile witness did not start"
    try:
        ledger = _ledger(tmp_path / "run", 1)
        key = init_state(tmp_path / "w", "w").vkey
        for kind, reason in (("long-size", "without a size"), ("huge", "64 KiB"),
                             ("garbage", "not a valid cosignature")):  # fmt: skip
            endpoint = _endpoint(f"http://127.0.0.1:{port}/{kind}", key)
            with pytest.raises(WitnessRefused, match=reason) as info:
                ledger.add_witnesses([endpoint])
            assert len(info.value.problems) == 1
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
