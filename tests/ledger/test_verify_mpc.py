"""`penumbra verify` on multi-holder runs: co-signers authenticated only by keys given
(--cosigner), and `mpc_round` entries reconciled with the releases. Each forgery is re-signed
with the run's key and the aggregators' keys, so only these checks can catch it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from penumbra.cli import main
from penumbra.ledger.note import generate_signer
from penumbra.ledger.verify import verify_run
from penumbra.privacy.zcdp import dgauss_sigma

from .run_fixture import aggregator_signers, build_mpc_run, build_run, read_entries, resign

K = 2


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mpc_run(tmp_path_factory.mktemp("mpc") / "run", k=K)


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def keys(pristine: Path, tmp_path: Path) -> dict[str, Any]:
    """What the data holder and the aggregators published, kept apart from the run."""
    pub = tmp_path / "holder.pub"
    pub.write_text((pristine / "ledger" / "pubkey").read_text())
    files = []
    for signer in aggregator_signers(pristine):
        path = tmp_path / f"{signer.name}.pub"
        path.write_text(signer.vkey + "\n")
        files.append(str(path))
    return {
        "pubkey": pub,
        "cosigner_files": files,
        "cosigners": [s.vkey for s in aggregator_signers(pristine)],
    }


def _authenticated(run: Path, keys: dict[str, Any]) -> Any:
    return verify_run(run, pubkey=keys["pubkey"].read_text(), cosigners=keys["cosigners"])


def _failures(run: Path) -> list[str]:
    report = verify_run(run)
    assert not report.ok
    return [str(f) for f in report.failures]


def _where(entries: list[dict[str, Any]], kind: str, **match: Any) -> list[int]:
    return [
        i
        for i, e in enumerate(entries)
        if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
    ]


def test_pristine_mpc_run_verifies_with_every_key(
    pristine: Path, keys: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    report = _authenticated(pristine, keys)
    assert report.ok, report.failures
    assert report.authenticated and report.cosigners_authenticated is True
    assert report.receipt["accountant"] == "discrete-gaussian-zcdp"
    assert report.receipt["mpc_rounds"] == {"logged": 4, "spent_epsilon": 3, "released": 3}
    args = ["verify", str(pristine), "--pubkey", str(keys["pubkey"])]
    cos = [a for f in keys["cosigner_files"] for a in ("--cosigner", f)]
    assert main([*args, *cos]) == 0
    assert "co-signers by --cosigner" in capsys.readouterr().out
    both = pristine.parent / "cosigners.pub"  # one file with both keys works as well
    both.write_text("".join(k + "\n" for k in keys["cosigners"]))
    assert main([*args, "--cosigner", str(both)]) == 0
    assert (
        main([*args, "--cosigner", keys["cosigners"][0], "--cosigner", keys["cosigners"][1]]) == 0
    )


def test_without_cosigner_exits_3_cosigners_not_authenticated(
    pristine: Path, keys: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    report = verify_run(pristine, pubkey=keys["pubkey"].read_text())
    assert report.ok and report.cosigners_authenticated is False
    assert report.unauthenticated == ["co-signers"]
    assert main(["verify", str(pristine), "--pubkey", str(keys["pubkey"])]) == 3
    out = capsys.readouterr().out
    assert "integrity verified, co-signers not authenticated" in out and "--cosigner" in out
    assert main(["verify", str(pristine)]) == 3
    assert "signer and co-signers not authenticated" in capsys.readouterr().out
    assert main(["verify", str(pristine), "--trust-run-key"]) == 0


def test_aggregators_replaced_by_a_forger(
    run: Path, keys: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The coordinator swaps in aggregator keys of its own and co-signs everything itself."""
    fakes = [generate_signer(f"penumbra-mpc-{n}") for n in ("leader", "helper")]
    entries = read_entries(run)
    setup = _where(entries, "mpc_setup")[0]
    entries[setup]["aggregator_vkeys"] = [s.vkey for s in fakes]
    resign(run, entries, cosigners=fakes)
    report = verify_run(run, pubkey=keys["pubkey"].read_text())
    assert report.ok and report.cosigners_authenticated is False  # consistent, not authenticated
    messages = [str(f) for f in _authenticated(run, keys).failures]
    assert any("not the co-signer keys given (--cosigner)" in m for m in messages)
    assert any("co-signature of penumbra-mpc-leader" in m for m in messages)
    args = ["verify", str(run), "--pubkey", str(keys["pubkey"])]
    assert main([*args, *[a for f in keys["cosigner_files"] for a in ("--cosigner", f)]]) == 1


def test_only_one_cosigner_given(run: Path, keys: dict[str, Any]) -> None:
    report = verify_run(run, pubkey=keys["pubkey"].read_text(), cosigners=keys["cosigners"][:1])
    assert str(report.failures[0]).startswith(
        f"entry {_where(read_entries(run), 'mpc_setup')[0]} (mpc_setup): its aggregator keys "
        "are not the co-signer keys given"
    )


def test_a_checkpoint_not_cosigned(run: Path) -> None:
    leader, _ = aggregator_signers(run)
    resign(run, read_entries(run), cosigners=[leader])
    messages = _failures(run)
    assert messages and all("co-signature of penumbra-mpc-helper" in m for m in messages)


def test_cosigner_given_for_a_single_holder_run(tmp_path: Path, keys: dict[str, Any]) -> None:
    single = build_run(tmp_path / "single")
    report = verify_run(single, cosigners=keys["cosigners"])
    assert [str(f) for f in report.failures] == [
        "log: --cosigner given but this is not a multi-holder run (no mpc_setup)"
    ]


def test_release_not_produced_by_its_round(run: Path) -> None:
    """The coordinator publishes a histogram other than the one the aggregators released."""
    entries = read_entries(run)
    i = _where(entries, "release", iteration=1)[0]
    entries[i]["noisy_histogram"][0] += 5.0
    resign(run, entries)
    (failure,) = _failures(run)
    r = _where(entries, "mpc_round", iteration=1, outcome="released")[0]
    assert failure.startswith(f"entry {r} (mpc_round, iteration 1): its noisy histogram")
    assert f"not the one released at entry {i}" in failure


def test_round_scaled_by_the_wrong_k(run: Path) -> None:
    entries = read_entries(run)
    r = _where(entries, "mpc_round", iteration=0)[0]
    entries[r]["noisy_histogram"] = [  # as if the release were the raw sum, not ÷√k
        round(v) for v in entries[_where(entries, "release", iteration=0)[0]]["noisy_histogram"]
    ]
    resign(run, entries)
    assert any("its noisy histogram (÷√k) is not the one released" in m for m in _failures(run))


def test_release_without_a_released_round(run: Path) -> None:
    entries = read_entries(run)
    r = _where(entries, "mpc_round", iteration=2, outcome="released")[0]
    del entries[r]
    resign(run, entries)
    i = _where(entries, "release", iteration=2)[0]
    assert _failures(run) == [
        f"entry {i} (release, iteration 2): no released mpc_round produced this release"
    ]


def test_round_sigma_below_what_the_accountant_requires(run: Path) -> None:
    entries = read_entries(run)
    start = entries[0]
    required = dgauss_sigma(
        start["epsilon_target"], start["delta"], start["iterations"], sensitivity=math.sqrt(K)
    )
    r = _where(entries, "mpc_round", iteration=1, outcome="released")[0]
    assert entries[r]["sigma_per_aggregator"] >= required * (1 - 1e-9)
    entries[r]["sigma_per_aggregator"] = required * 0.9
    resign(run, entries)
    (failure,) = _failures(run)
    assert failure.startswith(f"entry {r} (mpc_round, iteration 1): σ per aggregator")
    assert "below the σ the accountant requires" in failure


def test_noiseless_round(run: Path) -> None:
    entries = read_entries(run)
    r = _where(entries, "mpc_round", iteration=0)[0]
    entries[r]["sigma_per_aggregator"] = 0.0
    resign(run, entries)
    assert _failures(run) == [
        f"entry {r} (mpc_round, iteration 0): σ per aggregator 0.0 is not positive: no noise"
    ]


def test_setup_sigma_below_what_the_accountant_requires(run: Path) -> None:
    entries = read_entries(run)
    s = _where(entries, "mpc_setup")[0]
    entries[s]["sigma_per_aggregator"] /= 2
    resign(run, entries)
    (failure,) = _failures(run)
    assert failure.startswith(f"entry {s} (mpc_setup): σ per aggregator")


def test_rounds_aborted_after_the_shares_were_released_spend_epsilon(run: Path) -> None:
    """Aborted rounds are free (the pristine run has one) unless the shares were released:
    then the round counts in every ε after it and towards the T rounds the budget allows."""
    entries = read_entries(run)
    aborted = _where(entries, "mpc_round", outcome="aborted")[0]
    entries[aborted]["shares_released"] = True
    resign(run, entries)
    messages = _failures(run)
    release = _where(entries, "release", iteration=1)[0]
    assert any(
        m.startswith(f"entry {release} (release, iteration 1): claims cumulative ε=")
        and "3 releases" in m
        for m in messages
    )
    assert any("(run_end): claims ε spent" in m for m in messages)
    assert (
        "log: 4 mpc rounds spent ε (released, or aborted after the shares were fetched), "
        "run_start planned 3"
    ) in messages


def test_aborted_rounds_without_shares_are_free(run: Path) -> None:
    entries = read_entries(run)
    aborted = entries[_where(entries, "mpc_round", outcome="aborted")[0]]
    for attempt in range(5):
        entries.insert(-3, {**aborted, "attempt": 10 + attempt})
    resign(run, entries)
    report = verify_run(run)
    assert report.ok, report.failures
    assert report.receipt["mpc_rounds"]["spent_epsilon"] == 3


def test_an_extra_released_round(run: Path) -> None:
    """A second noisy release of iteration 0 (fresh noise for a finished round)."""
    entries = read_entries(run)
    r = _where(entries, "mpc_round", iteration=0)[0]
    again = {**entries[r], "attempt": 2}
    again["noisy_histogram"] = [v + 1 for v in entries[r]["noisy_histogram"]]
    entries.insert(r + 1, again)
    resign(run, entries)
    messages = _failures(run)
    assert f"entry {r + 1} (mpc_round, iteration 0)" in messages[0]
    assert "not the one released" in messages[0]
    assert messages[1].startswith("log: 4 mpc rounds spent ε")


def test_mpc_rounds_without_an_mpc_setup(run: Path) -> None:
    entries = read_entries(run)
    del entries[_where(entries, "mpc_setup")[0]]
    resign(run, entries)
    assert any("mpc_round entries but no mpc_setup entry" in m for m in _failures(run))
