"""`penumbra mpc ...`: deploy and run several data holders, two aggregators, one coordinator."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from penumbra.errors import ConfigError
from penumbra.mpc import DEFAULT_MAX_CANDIDATES, DEFAULT_MAX_EPSILON

app = typer.Typer(
    help="Several data holders, one synthetic dataset: Prio3 secure voting with DP noise.",
    no_args_is_help=True,
)
console = Console()


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated integers, got {text!r}") from None


@app.command()
def init(
    holders: Annotated[int, typer.Option("--holders", help="Number of data holders.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the deployment.")],
    counts: Annotated[
        str | None,
        typer.Option(
            "--counts",
            help="Declared sample count per holder (its L1 bound), e.g. "
            "500,300,200; public. Default 1000 each.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address every party listens on.")] = (
        "127.0.0.1"
    ),
    ports: Annotated[
        str, typer.Option("--ports", help="Ports of leader,helper,coordinator.")
    ] = "8441,8442,8443",
    bits: Annotated[
        int, typer.Option("--bits", help="Vote entries lie in [0, 2^bits) (and <= the count).")
    ] = 16,
    max_epsilon: Annotated[
        float,
        typer.Option(
            "--max-epsilon",
            help="The deployment's privacy budget: each aggregator refuses any round that "
            "would take the ε of all its releases over these holders, every run together "
            "(zCDP, at δ = 1/(N ln N), N the sum of --counts), beyond this. Default "
            f"{DEFAULT_MAX_EPSILON:g}.",
        ),
    ] = DEFAULT_MAX_EPSILON,
    k: Annotated[
        int,
        typer.Option(
            "--k",
            help="Votes per private sample (the runs' pe.k); aggregators and holders "
            "refuse any other.",
        ),
    ] = 1,
    metric: Annotated[
        str, typer.Option("--metric", help="Vote metric (the runs' pe.metric): l2 or cosine.")
    ] = "l2",
    max_candidates: Annotated[
        int,
        typer.Option(
            "--max-candidates", help="Most candidates a round may have (the runs' pe.population)."
        ),
    ] = DEFAULT_MAX_CANDIDATES,
    deadline: Annotated[
        float, typer.Option("--deadline", help="Seconds holders have to answer a round.")
    ] = 60.0,
) -> None:
    """Write a CA, a key and certificate per party, and each party's config.json.

    The deployment's terms (k, metric, bits, candidate limit, and the aggregators' budget
    --max-epsilon) are fixed here: no coordinator can change them later."""
    from penumbra.mpc.deploy import init_deployment

    port_list = _ints(ports, "--ports")
    if len(port_list) != 3:
        raise ConfigError("--ports: give three ports: leader,helper,coordinator")
    written = init_deployment(
        out,
        holders=holders,
        counts=_ints(counts, "--counts") if counts else None,
        host=host,
        ports=dict(zip(("leader", "helper", "coordinator"), port_list, strict=True)),
        bits=bits,
        round_deadline_s=deadline,
        max_epsilon=max_epsilon,
        k=k,
        metric=metric,
        max_candidates=max_candidates,
    )
    table = Table(title=f"deployment in {out}")
    table.add_column("party")
    table.add_column("config")
    for name, path in written.items():
        table.add_row(name, str(path))
    console.print(table)
    console.print(
        f"Deployment budget: ε <= {max_epsilon:g} over all runs (each aggregator enforces it); "
        f"k={k}, metric={metric}, at most {max_candidates} candidates per round.",
        highlight=False,
    )
    console.print("Give each party its folder and ca.pem; key.pem and note.key stay secret.")


@app.command()
def aggregator(
    config: Annotated[Path, typer.Option("--config", help="The aggregator's config.json.")],
) -> None:
    """Serve as an aggregator (leader or helper, from the config) until interrupted."""
    from penumbra.mpc.aggregator_app import run_aggregator

    run_aggregator(config)


@app.command()
def holder(
    private: Annotated[Path, typer.Option("--private", help="Folder of this holder's images.")],
    config: Annotated[Path, typer.Option("--config", help="The holder's config.json.")],
    fault: Annotated[str, typer.Option("--fault", hidden=True)] = "",
) -> None:
    """Answer the coordinator's rounds with secret-shared votes until the run ends."""
    from penumbra.mpc.holder import run_holder

    code = run_holder(config, private, fault=fault)
    if code:
        raise typer.Exit(code)


@app.command()
def coordinate(
    config: Annotated[Path, typer.Option("--config", help="The coordinator's config.json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (resumed if present).")],
    epsilon: Annotated[float | None, typer.Option("--epsilon", help="Target ε.")] = None,
    run_config: Annotated[
        Path | None, typer.Option("--run-config", help="Run config YAML (default: the demo's).")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a run config field: KEY=VALUE.")
    ] = None,
) -> None:
    """Run PE as the coordinator: candidates out, noisy aggregate histograms in."""
    from penumbra.mpc.coordinator import coordinate as run_coordinate

    run = run_coordinate(
        config,
        epsilon=epsilon,
        out=out,
        run_config=run_config,
        overrides=overrides or [],
        console=console,
    )
    console.print(
        f"done: ε spent {run.epsilon_spent:.4g} of {run.epsilon_target:g}; "
        f"{run.num_images} images in {out / 'synthetic'}; verify with: penumbra verify {out} "
        "--pubkey COORDINATOR_KEY --cosigner LEADER_KEY --cosigner HELPER_KEY "
        "(the keys as published out of band)",
        highlight=False,
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")] = Path(
        "penumbra-mpc-demo"
    ),
    epsilon: Annotated[float, typer.Option("--epsilon", help="Target ε.")] = 1.0,
    n_private: Annotated[int, typer.Option("--n", help="Demo images in total.")] = 5000,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a run config field: KEY=VALUE.")
    ] = None,
) -> None:
    """2 aggregators, 3 holders (demo set split 50/30/20%) and a coordinator as processes."""
    from penumbra.mpc.demo import run_mpc_demo

    summary = run_mpc_demo(
        out, epsilon=epsilon, n_private=n_private, console=console, overrides=overrides or []
    )
    receipt = summary["receipt"]
    table = Table(title="penumbra mpc demo: done")
    table.add_column("")
    table.add_column("")
    table.add_row("holders (declared samples)", ", ".join(map(str, summary["holders"])))
    table.add_row(
        "ε spent / target",
        f"{receipt.get('epsilon_spent', 0):.4g} / {receipt.get('epsilon_target')}",
    )
    table.add_row("run directory", summary["run_dir"])
    table.add_row("verified", "yes" if summary["verified"] else "NO")
    console.print(table)
    for failure in summary["failures"]:
        console.print(f"  {failure}", markup=False)
    if not summary["verified"]:
        sys.exit(1)
