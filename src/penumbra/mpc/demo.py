"""`penumbra mpc demo`: every party as its own process on loopback, one verifiable run.

Two aggregators, three holders (the demo private set split 50% / 30% / 20%) and the
coordinator are started with the CLI as separate processes. The deployment (CA, keys,
configs), the holders' image folders and every party's log live under RUN_DIR/private/mpc
(mode 0700, never published); the run directory is otherwise a normal one that
`penumbra verify` accepts, and whose checkpoints both aggregators co-signed. The deployment
takes the run's pe.k, pe.metric and population, and the run's ε as its whole budget
(`max_epsilon`): the demo is the only run its aggregators will ever serve.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from penumbra.data.demo import DemoPrivateSet, demo_private_set
from penumbra.errors import PenumbraError
from penumbra.mpc import DEFAULT_MAX_CANDIDATES
from penumbra.mpc.deploy import init_deployment

SPLIT = (0.5, 0.3, 0.2)


def free_ports(count: int) -> list[int]:
    """Ports free right now on loopback (the OS picks them)."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def split_private_set(folder: Path, n: int, split: tuple[float, ...] = SPLIT) -> list[Path]:
    """The demo set written as one image folder per holder, unevenly split."""
    demo = demo_private_set(n)
    sizes = [round(f * n) for f in split[:-1]]
    sizes.append(n - sum(sizes))
    paths, start = [], 0
    for i, size in enumerate(sizes):
        path = folder / f"holder-{i + 1}"
        if not path.exists():
            part = DemoPrivateSet(
                demo.images[start : start + size],
                demo.labels[start : start + size],
                demo.darkness[start : start + size],
            )
            part.write(path.with_name(path.name + ".tmp"))
            path.with_name(path.name + ".tmp").rename(path)
        paths.append(path)
        start += size
    return paths


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "penumbra", "mpc", *args]


class Parties:
    """Child processes with their logs; stopped (terminate, then kill) on exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        self.procs[name] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def run_mpc_demo(
    out: Path,
    *,
    epsilon: float,
    n_private: int = 5000,
    console: Console | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Start all parties, wait for the coordinator, verify the run; returns a summary."""
    out = Path(out)
    secret = out / "private" / "mpc"
    secret.mkdir(parents=True, exist_ok=True)
    os.chmod(out / "private", 0o700)
    deployment = secret / "deployment"
    data = split_private_set(secret / "data", n_private)
    counts = [len(list(p.glob("*.png"))) for p in data]
    if not (deployment / "coordinator" / "config.json").exists():
        cfg = _run_config(epsilon, overrides or [])
        leader, helper, coord = free_ports(3)
        init_deployment(
            deployment,
            holders=len(data),
            counts=counts,
            ports={"leader": leader, "helper": helper, "coordinator": coord},
            round_deadline_s=300.0,
            max_epsilon=epsilon,
            k=cfg.pe.k,
            metric=cfg.pe.metric,
            max_candidates=max(
                DEFAULT_MAX_CANDIDATES,
                cfg.pe.max_population if cfg.pe.population == "auto" else cfg.pe.population,
            ),
        )
    parties = Parties(secret / "logs")
    sets = [arg for o in (overrides or []) for arg in ("--set", o)]
    try:
        for name in ("leader", "helper"):
            parties.start(
                name, cli_command("aggregator", "--config", str(deployment / name / "config.json"))
            )
        for i, path in enumerate(data):
            name = f"holder-{i + 1}"
            parties.start(
                name,
                cli_command(
                    "holder",
                    "--private",
                    str(path),
                    "--config",
                    str(deployment / name / "config.json"),
                ),
            )
        parties.start(
            "coordinator",
            cli_command(
                "coordinate",
                "--config",
                str(deployment / "coordinator" / "config.json"),
                "--epsilon",
                str(epsilon),
                "--out",
                str(out),
                *sets,
            ),
        )
        code = _watch(out, parties, console)
        if code != 0:
            tail = (secret / "logs" / "coordinator.log").read_text(errors="replace")[-2000:]
            last = tail.strip().splitlines()[-1] if tail.strip() else ""
            raise PenumbraError(f"the coordinator failed (exit {code}): {last}")
        for i in range(len(data)):
            proc = parties.procs.get(f"holder-{i + 1}")
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
    finally:
        parties.stop_all()
    from penumbra.ledger.log import KEY_NAME
    from penumbra.ledger.note import load_private_key
    from penumbra.ledger.verify import verify_run

    # The demo made every key itself, so it verifies against the keys it holds (as an auditor
    # would against the published ones), not against the copies the run carries.
    own = load_private_key(out / "private" / "ledger.key", KEY_NAME).vkey
    deployed = json.loads((deployment / "coordinator" / "config.json").read_text())
    report = verify_run(out, pubkey=own, cosigners=list(deployed["aggregator_vkeys"].values()))
    return {
        "run_dir": str(out),
        "verified": report.ok and report.authenticated,
        "failures": [str(f) for f in report.failures],
        "holders": counts,
        "receipt": report.receipt,
    }


def _run_config(epsilon: float, overrides: list[str]) -> Any:
    """The demo run's config with the --set overrides applied (what the coordinator runs)."""
    from penumbra.config import RunConfig
    from penumbra.config.overrides import apply_overrides
    from penumbra.spti.demo import demo_config

    data = apply_overrides(demo_config(epsilon).model_dump(mode="json"), overrides)
    return RunConfig.model_validate(data)


def _watch(out: Path, parties: Parties, console: Console | None) -> int:
    """Rich progress over the coordinator's rounds until it exits; its exit code."""
    coordinator = parties.procs["coordinator"]
    progress = Progress(
        TextColumn("{task.description:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )
    with progress:
        task = progress.add_task("secure PE rounds", total=None)
        while coordinator.poll() is None:
            rounds = len(list((out / "mpc").glob("round-*.json")))
            total = None
            if (out / "candidates" / "state.json").exists():
                state = json.loads((out / "candidates" / "state.json").read_text())
                total = state["settings"]["iterations"]
            progress.update(task, completed=rounds, total=total)
            for name, proc in list(parties.procs.items()):
                if name in ("leader", "helper") and proc.poll() is not None:
                    raise PenumbraError(
                        f"aggregator {name} exited (code {proc.returncode}); "
                        f"see {parties.logs / (name + '.log')}"
                    )
            time.sleep(0.5)
    return int(coordinator.returncode)
