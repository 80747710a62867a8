"""A witness under load: add-checkpoint requests from many logs in parallel, bad ones mixed in,
and the witness process killed with SIGKILL half-way and started again on the same state.

Each log is a real run ledger (`Ledger`, signed checkpoints) grown ahead of time. One client
thread per log submits its checkpoints in order, as a run does; between good submissions it
sends bad ones: a wrong consistency proof (must get 422), a stale old size (409), a
checkpoint of an unknown log (404). Counted: every bad request refused with the right code,
every good checkpoint cosigned once (a cosignature that verifies), none lost across the kill
(after the restart each log goes on from the size the client last had cosigned), and the
state folder holding exactly each log's last cosigned size at the end.

    .venv/bin/python bench/witness_load.py [--logs 20] [--requests 1000]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_md import splice_section

from penumbra.ledger.cosignature import parse_cosigner_key
from penumbra.ledger.log import Ledger
from penumbra.ledger.merkle import consistency_proof_from_hashes
from penumbra.ledger.witness import add_log, init_state, stored_checkpoint
from penumbra.ledger.witness_client import request_body

BIN = Path(sys.executable).parent / "penumbra"


def grow_log(folder: Path, size: int) -> tuple[Ledger, list[str]]:
    """A ledger of `size` entries and the signed note of every checkpoint 1..size."""
    ledger = Ledger.open(folder)
    notes = []
    for i in range(size):
        ledger.append("files", {"stage": f"entry {i}", "files": [], "removed": []})
        notes.append((folder / "ledger" / "checkpoints" / f"{i + 1:08d}").read_text())
    return ledger, notes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(state: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(BIN), "ledger", "witness", "serve", str(state), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/vkey", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the witness did not start")


class Client(threading.Thread):
    def __init__(self, url: str, ledger: Ledger, notes: list[str], stranger: str,
                 bad_every: int, tally: Counter[str], lock: threading.Lock) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.url, self.ledger, self.notes, self.stranger = url, ledger, notes, stranger
        self.bad_every, self.tally, self.lock = bad_every, tally, lock
        self.cosigned = 0
        self.lines: dict[int, str] = {}
        self.client = httpx.Client(timeout=10)

    def post(self, body: bytes) -> httpx.Response | None:
        try:
            return self.client.post(f"{self.url}/add-checkpoint", content=body)
        except httpx.HTTPError:
            return None  # the witness is down (killed): try again after it is back

    def count(self, key: str) -> None:
        with self.lock:
            self.tally[key] += 1

    def bad(self, k: int, size: int) -> None:
        note = self.notes[size - 1]
        kind = ("bad proof", "stale", "unknown log")[k % 3]
        if kind == "bad proof" and self.cosigned and size > self.cosigned:
            hashes = self.ledger._hashes[:size]
            proof = consistency_proof_from_hashes(hashes, self.cosigned)
            body, want = request_body(self.cosigned, [b"\x07" * 32] * len(proof), note), 422
        elif kind == "unknown log":
            body, want = request_body(0, [], self.stranger), 404
        else:
            body, want = request_body(self.cosigned + 1, [], note), 409  # not the size it holds
            kind = "stale"
        response = self.post(body)
        if response is None:
            return
        self.count(f"{kind}: sent")
        self.count(f"{kind}: refused right" if response.status_code == want else f"{kind}: WRONG")

    def run(self) -> None:
        size, k = 1, 0
        while size <= len(self.notes):
            if k % self.bad_every == self.bad_every - 1:
                self.bad(k, size)
                k += 1
                continue
            k += 1
            hashes = self.ledger._hashes[:size]
            proof = consistency_proof_from_hashes(hashes, self.cosigned) if self.cosigned else []
            response = self.post(request_body(self.cosigned, proof, self.notes[size - 1]))
            if response is None:
                time.sleep(0.2)
                continue
            if response.status_code == 409:  # cosigned, but the reply was lost in the kill
                held = int(response.text)
                if held < self.cosigned:
                    self.count("good: LOST (the witness forgot a cosigned size)")
                    return
                self.count("good: 409 after a kill (state ahead of the client)")
                self.cosigned = held
                size = held + 1
                continue
            if response.status_code != 200:
                self.count(f"good: LOST ({response.status_code})")
                return
            self.count("good: cosigned")
            self.lines[size] = response.text
            self.cosigned = size
            size += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--bad-every", type=int, default=4, help="1 bad request in N")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit RESULTS.md")
    args = parser.parse_args()
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="witness-load-"))
    state = work / "state"
    key = parse_cosigner_key(init_state(state, "witness.bench/w1").vkey)
    per_log = -(-args.requests * (args.bad_every - 1) // (args.bad_every * args.logs))  # ceil
    logs = [grow_log(work / f"log-{i}", per_log) for i in range(args.logs)]
    for ledger, _ in logs:
        add_log(state, (ledger.run_dir / "ledger" / "pubkey").read_text(), ledger.origin)
    _, stranger_notes = grow_log(work / "stranger", 1)  # a log the witness does not know
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(state, port)
    tally: Counter[str] = Counter()
    lock = threading.Lock()
    clients = [Client(url, ledger, notes, stranger_notes[0], args.bad_every, tally, lock)
               for ledger, notes in logs]  # fmt: skip
    started = time.monotonic()
    for c in clients:
        c.start()
    total_good = args.logs * per_log
    while sum(v for k, v in tally.items() if k.startswith("good")) < total_good // 2:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # mid-load: requests in flight die with it
    proc.wait()
    killed_at = sum(v for k, v in tally.items() if k.startswith("good"))
    proc = start(state, port)
    for c in clients:
        c.join()
    elapsed = time.monotonic() - started
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    # every cosignature the clients hold verifies; the state holds each log's last size
    bad_cosignatures = sum(
        1 for c in clients for size, line in c.lines.items()
        if key.verify(c.notes[size - 1] + line)[0].size != size
    )  # fmt: skip
    state_ok = all(
        (cp := stored_checkpoint(state, ledger.origin)) is not None and cp.size == per_log
        for ledger, _ in logs
    )
    requests = sum(v for k, v in tally.items() if k.startswith("good") or k.endswith("sent"))
    rows = sorted(tally.items())
    lines = [
        "## Witness under load (`bench/witness_load.py`)",
        "",
        f"{args.logs} run ledgers of {per_log} entries each submit every checkpoint in order "
        f"(one thread per log) to `penumbra ledger witness serve` on loopback; one request in "
        f"{args.bad_every} is bad (a wrong consistency proof, a stale old size, an unknown "
        f"log). The witness process was killed with SIGKILL after {killed_at} good requests and "
        "started again on the same state folder. Command: `.venv/bin/python "
        f"bench/witness_load.py --logs {args.logs} --requests {args.requests}`. Machine: "
        f"developer VM (x86_64, 2 cores). Load before: `{before}`; after: `{after}`.",
        "",
        "| outcome | requests |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        f"- requests in all: {requests} in {elapsed:.1f} s ({requests / elapsed:.0f}/s, "
        "including the restart)",
        f"- cosignatures that fail to verify: {bad_cosignatures}",
        f"- state after the run holds each log's last checkpoint ({per_log}): {state_ok}",
    ]
    block = "\n".join(lines)
    if not args.no_write:
        splice_section("witness-load", block)
    sys.stdout.write(block + "\n")
    wrong = [k for k in tally if "WRONG" in k or "LOST" in k]
    sys.exit(1 if wrong or bad_cosignatures or not state_ok else 0)


if __name__ == "__main__":
    main()
