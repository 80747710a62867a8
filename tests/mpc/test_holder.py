"""A holder answers only rounds whose terms are its deployment's; otherwise it sends nothing."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from penumbra.mpc.deploy import init_deployment, load_party_config
from penumbra.mpc.holder import AnnouncementRefused, Holder, check_announcement
from penumbra.mpc.protocol import Announcement, Upload, encode_embeddings, vdaf_for

DIM = 4


class Recorder:
    """Stands in for the holder's HTTPS client: records what would have been sent."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []

    def post(self, url: str, content: bytes, headers: dict[str, str]) -> Any:
        assert headers == {"content-type": "application/octet-stream"}
        self.posts.append((url, content))

        class Reply:
            status_code = 200

            @staticmethod
            def json() -> dict[str, bool]:
                return {"accepted": True}

        return Reply()


@pytest.fixture
def holder(tmp_path: Path) -> tuple[Holder, list[int]]:
    configs = init_deployment(
        tmp_path / "d", holders=1, counts=[6], k=2, metric="cosine", bits=8, max_candidates=5
    )
    embedded: list[int] = []
    private = np.random.default_rng(0).normal(size=(6, DIM)).astype(np.float32)

    def embed(ann: Announcement) -> np.ndarray:
        embedded.append(1)  # touching private data: must not happen for a refused round
        return private

    h = Holder(load_party_config(configs["holder-1"]), embed)
    h.client = Recorder()  # type: ignore[assignment]
    return h, embedded


def _ann(length: int = 5, **changes: Any) -> Announcement:
    data, shape = encode_embeddings(np.random.default_rng(1).normal(size=(length, DIM)))
    fields: dict[str, Any] = {
        "open": True,
        "round_id": "t000-abc",
        "length": length,
        "k": 2,
        "metric": "cosine",
        "bits": 8,
        "deadline_unix": time.time() + 60,
        "embeddings": data,
        "shape": shape,
    }
    return Announcement(**(fields | changes))


def test_a_matching_round_is_answered_with_bounded_shares(holder: tuple[Holder, list[int]]) -> None:
    h, embedded = holder
    h.submit(_ann())
    posts = h.client.posts  # type: ignore[attr-defined]
    assert [url.rsplit("/", 1)[1] for url, _ in posts] == ["upload", "upload"] and embedded
    leader = Upload.decode(posts[0][1])
    vdaf = vdaf_for(5, 8, 6, 2)  # the aggregators' VDAF for this holder: entries <= 6, sum <= 12
    vdaf.decode_input_share(0, leader.input_share)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"k": 8}, "k=8 (this deployment: 2)"),
        ({"metric": "l2"}, "metric='l2'"),
        ({"bits": 16}, "bits=16"),
        ({"bits": 0}, "bits=0"),  # a coordinator that does not say
        ({"length": 6}, "6 candidates (this deployment: 1..5)"),
        ({"shape": [4, DIM]}, "shape [4, 4] for 5 candidates"),
    ],
)
def test_a_mismatching_round_is_refused_and_nothing_is_sent(
    holder: tuple[Holder, list[int]], changes: dict[str, Any], message: str
) -> None:
    h, embedded = holder
    ann = _ann(**changes) if "length" not in changes else _ann(length=changes["length"])
    with pytest.raises(AnnouncementRefused, match=re.escape(message)):
        check_announcement(h.c, ann)
    with pytest.raises(AnnouncementRefused):
        h.submit(ann)
    assert h.client.posts == [] and embedded == []  # type: ignore[attr-defined]


def test_the_polling_loop_logs_a_refusal_and_goes_on(
    holder: tuple[Holder, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    h, embedded = holder
    answers = iter([_ann(k=8), Announcement(open=False, finished=True)])

    class Coordinator(Recorder):
        def get(self, url: str) -> Any:
            ann = next(answers)

            class Reply:
                status_code = 200

                @staticmethod
                def raise_for_status() -> None:
                    return None

                @staticmethod
                def json() -> Any:
                    return ann.model_dump()

            return Reply()

    h.client = Coordinator()  # type: ignore[assignment]
    h.c.poll_s = 0.01
    assert h.run(max_idle_s=5) == 0
    assert h.client.posts == [] and embedded == []  # type: ignore[attr-defined]
    assert "round t000-abc refused" in caplog.text and "k=8" in caplog.text


class Busy(Recorder):
    """An aggregator that answers 503 (busy, retry after 0.05 s) `busy` times, then accepts."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy

    def post(self, url: str, content: bytes, headers: dict[str, str]) -> Any:
        self.posts.append((url, content))
        accepted = len(self.posts) > self.busy

        class Reply:
            status_code = 200 if accepted else 503
            headers = {} if accepted else {"retry-after": "0.05"}

            @staticmethod
            def json() -> dict[str, object]:
                return {"accepted": True} if accepted else {"accepted": False, "reason": "busy"}

        return Reply()


def test_a_busy_aggregator_is_asked_again_until_it_accepts(
    holder: tuple[Holder, list[int]],
) -> None:
    h, _ = holder
    h.client = Busy(busy=3)  # type: ignore[assignment]
    h.submit(_ann())
    posts = h.client.posts  # type: ignore[attr-defined]
    # three 503s on the leader, then one upload each: the same frame every time
    assert len(posts) == 5 and len({body for _, body in posts[:4]}) == 1


def test_a_busy_aggregator_is_given_up_at_the_deadline(holder: tuple[Holder, list[int]]) -> None:
    h, _ = holder
    h.client = Busy(busy=10**6)  # type: ignore[assignment]
    start = time.monotonic()
    h.submit(_ann(deadline_unix=time.time() + 1.0))
    assert time.monotonic() - start < 3.0  # stopped asking at the round's deadline
    assert len(h.client.posts) >= 4  # type: ignore[attr-defined]


def test_candidates_of_another_embedding_size_are_refused_not_a_crash(
    holder: tuple[Holder, list[int]],
) -> None:
    """An announced embedder (or its options) that differs from the holder's: the round is
    refused with the reason, nothing is sent, and the holder keeps polling."""
    h, _ = holder
    data, shape = encode_embeddings(np.random.default_rng(2).normal(size=(5, DIM + 4)))
    with pytest.raises(AnnouncementRefused, match=f"candidates have {DIM + 4} dimensions"):
        h.submit(_ann(embeddings=data, shape=shape))
    assert h.client.posts == []  # type: ignore[attr-defined]
