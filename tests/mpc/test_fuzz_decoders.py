"""Every decoder that reads bytes from the network, fuzzed: it returns a valid object or raises
ValueError (the decoders' documented error; pydantic's, JSON's and the note parser's errors
are ValueErrors too), never another exception and never a hang.

Inputs are random bytes and mutations of valid encodings (truncations, flipped bytes, spliced
lengths), since purely random bytes rarely get past the first length check. Bounded: a fixed
number of examples per decoder and a per-example deadline; derandomized so CI is repeatable.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penumbra.ledger.note import parse_signed_note, parse_vkey
from penumbra.mpc import protocol
from penumbra.mpc.aggregator import parse_cosign_entry
from penumbra.mpc.field import Field64, Field128
from penumbra.mpc.prio3 import Prio3BoundedVoteVec
from penumbra.mpc.protocol import Upload, decode_embeddings, vdaf_for

FUZZ = settings(
    max_examples=150,
    deadline=2000,  # ms per example: a decoder that loops on crafted input fails here
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@cache
def _vdaf() -> Prio3BoundedVoteVec:
    return vdaf_for(12, 8, 5, 2)


@cache
def _valid() -> dict[str, bytes]:
    vdaf = _vdaf()
    ctx, nonce = b"fuzz", bytes(16)
    public, shares = vdaf.shard(
        ctx, [1, 0, 2, 0, 0, 1, 0, 0, 3, 0, 0, 0], nonce, bytes(vdaf.RAND_SIZE)
    )
    key = bytes(32)
    _, leader_verifier = vdaf.verify_init(key, ctx, 0, None, nonce, public, shares[0])
    upload = Upload(
        "t000-abc",
        "ab" * 16,
        nonce,
        vdaf.encode_public_share(public),
        vdaf.encode_input_share(shares[0]),
    )
    return {
        "upload": upload.encode(),
        "public": vdaf.encode_public_share(public),
        "leader": vdaf.encode_input_share(shares[0]),
        "helper": vdaf.encode_input_share(shares[1]),
        "verifier": vdaf.encode_verifier_share(leader_verifier),
        "message": bytes(32),
        "agg": vdaf.encode_agg_share([0] * 12),
    }


def _mutated(seed: str) -> st.SearchStrategy[bytes]:
    """A valid encoding with a random edit: cut, flipped byte, inserted or repeated bytes."""

    def edit(data: bytes, kind: int, at: int, value: int, extra: bytes) -> bytes:
        i = at % (len(data) + 1)
        if kind == 0:
            return data[:i]
        if kind == 1 and data:
            j = at % len(data)
            return data[:j] + bytes([data[j] ^ (value or 1)]) + data[j + 1 :]
        if kind == 2:
            return data[:i] + extra + data[i:]
        return data + data[i:]

    return st.builds(
        lambda k, a, v, e: edit(_valid()[seed], k, a, v, e),
        st.integers(0, 3),
        st.integers(0, 1 << 20),
        st.integers(0, 255),
        st.binary(max_size=40),
    )


def _fuzz(decode: Callable[[bytes], object], seed: str) -> None:
    @FUZZ
    @given(st.one_of(st.binary(max_size=300), _mutated(seed)))
    def run(data: bytes) -> None:
        with contextlib.suppress(ValueError):
            decode(data)

    run()


DECODERS: dict[str, tuple[Callable[[bytes], object], str]] = {
    "upload frame": (Upload.decode, "upload"),
    "public share": (lambda b: _vdaf().decode_public_share(b), "public"),
    "leader input share": (lambda b: _vdaf().decode_input_share(0, b), "leader"),
    "helper input share": (lambda b: _vdaf().decode_input_share(1, b), "helper"),
    "verifier share": (lambda b: _vdaf().decode_verifier_share(b), "verifier"),
    "verifier message": (lambda b: _vdaf().decode_verifier_message(b), "message"),
    "aggregate share": (lambda b: _vdaf().decode_agg_share(b), "agg"),
    "Field64 vector": (Field64.decode_vec, "agg"),
    "Field128 vector": (Field128.decode_vec, "leader"),
}


@pytest.mark.parametrize("name", list(DECODERS))
def test_binary_decoder_returns_or_raises_value_error(name: str) -> None:
    decode, seed = DECODERS[name]
    _fuzz(decode, seed)


def test_a_decoded_frame_encodes_back_to_itself() -> None:
    @FUZZ
    @given(_mutated("upload"))
    def run(data: bytes) -> None:
        try:
            upload = Upload.decode(data)
        except ValueError:
            return
        assert upload.encode() == data

    run()


MESSAGES = [
    cls
    for cls in vars(protocol).values()
    if isinstance(cls, type) and issubclass(cls, protocol._Msg) and cls is not protocol._Msg
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda c: c.__name__)
def test_json_messages_return_or_raise_value_error(message: type[protocol._Msg]) -> None:
    text = st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=12), inner, max_size=6)
            ),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
    )

    @FUZZ
    @given(text)
    def run(data: bytes) -> None:
        with contextlib.suppress(ValueError):
            message.model_validate_json(data)

    run()


@pytest.mark.parametrize(
    "parse",
    [parse_signed_note, parse_vkey, parse_cosign_entry, lambda t: decode_embeddings(t, [2, 3])],
    ids=["signed note", "verifier key", "cosign entry", "embeddings"],
)
def test_text_decoders_return_or_raise_value_error(parse: Callable[[str], object]) -> None:
    seeds = [
        "log\n3\n" + "A" * 43 + "=\n\n— leader AAAA\n",
        "leader+0a0b0c0d+" + "A" * 44,
        '{"type":"mpc_round","outcome":"released","round_id":"r"}',
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        secrets.token_hex(8),
    ]

    @FUZZ
    @given(
        st.one_of(
            st.text(max_size=300),
            st.sampled_from(seeds).flatmap(
                lambda s: st.text(max_size=20).map(lambda t: s[: len(t) * 3] + t)
            ),
        )
    )
    def run(text: str) -> None:
        with contextlib.suppress(ValueError):
            parse(text)

    run()
