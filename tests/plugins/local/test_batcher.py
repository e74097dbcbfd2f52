"""Micro-batching: concurrent requests share one predict call, each caller gets exactly its own
rows back, and a request the model rejects fails alone."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from deploykit.artifact import Artifact, load_artifact
from deploykit.payload import Predictions, encode
from deploykit.testing.servers import running
from deploykit_plugins.local.app import ServerConfig, create_app
from deploykit_plugins.local.batcher import Batcher, ModelError


class Recorder:
    """A scorer that answers each row with its own value, records batch sizes, and refuses 'poison'."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, frame: pd.DataFrame, want_proba: bool) -> Predictions:
        with self.lock:
            self.batches.append(len(frame))
        values = frame["x"].tolist()
        if "poison" in values:
            raise ValueError("this model refuses 'poison'")
        return Predictions([f"label-{v}" for v in values], [[0.5, 0.5]] * len(values), ["a", "b"])


def columns(*values: str) -> dict[str, Any]:
    return {"x": np.array(values, dtype=object)}


async def submit_all(batcher: Batcher, requests: list[tuple[str, ...]]) -> list[Any]:
    return await asyncio.gather(*(batcher.score(columns(*r), len(r), True) for r in requests),
                                return_exceptions=True)


def test_concurrent_requests_share_predict_calls_and_get_their_own_rows() -> None:
    scorer = Recorder()
    requests = [tuple(f"r{i}-{j}" for j in range(1 + i % 3)) for i in range(20)]
    results = asyncio.run(submit_all(Batcher(scorer, wait_s=0.05, max_rows=1000), requests))
    for request, preds in zip(requests, results):
        assert preds.labels == [f"label-{v}" for v in request]
        assert preds.probabilities == [[0.5, 0.5]] * len(request)
    assert len(scorer.batches) < len(requests)
    assert sum(scorer.batches) == sum(map(len, requests))


def test_a_request_the_model_rejects_fails_alone() -> None:
    scorer = Recorder()
    requests = [("a",), ("b", "c"), ("poison",), ("d",), ("e", "f")]
    results = asyncio.run(submit_all(Batcher(scorer, wait_s=0.05, max_rows=1000), requests))
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == 1 and isinstance(results[2], ModelError)
    assert str(results[2]) == "ValueError: this model refuses 'poison'"
    for request, preds in zip(requests, results):
        if request != ("poison",):
            assert preds.labels == [f"label-{v}" for v in request]


def test_batches_stay_within_max_rows() -> None:
    scorer = Recorder()
    requests = [(f"r{i}a", f"r{i}b") for i in range(12)]
    results = asyncio.run(submit_all(Batcher(scorer, wait_s=0.05, max_rows=5), requests))
    assert all(isinstance(r, Predictions) for r in results)
    assert max(scorer.batches) <= 5
    big = asyncio.run(submit_all(Batcher(scorer, wait_s=0.05, max_rows=5), [tuple("abcdefgh")]))
    assert big[0].labels == [f"label-{v}" for v in "abcdefgh"]  # one request larger than a batch goes alone


def test_wait_zero_turns_batching_off() -> None:
    scorer = Recorder()
    requests = [(f"r{i}",) for i in range(6)]
    results = asyncio.run(submit_all(Batcher(scorer, wait_s=0, max_rows=1000), requests))
    assert [r.labels for r in results] == [[f"label-r{i}"] for i in range(6)]
    assert scorer.batches == [1] * 6


def test_a_lone_request_does_not_wait_for_company() -> None:
    async def lone() -> Predictions:
        # wait_s is far longer than the test's own limit: only an adaptive batcher finishes in time
        return await asyncio.wait_for(Batcher(Recorder(), wait_s=60, max_rows=1000).score(columns("a"), 1, True), 30)

    assert asyncio.run(lone()).labels == ["label-a"]


def test_the_batcher_waits_for_clients_that_were_just_answered() -> None:
    """Four clients were active a moment ago: a request from one of them waits for the other three."""
    scorer = Recorder()

    async def main() -> list[Any]:
        batcher = Batcher(scorer, wait_s=30, max_rows=1000)
        await asyncio.gather(*(batcher.score(columns(f"warm-{c}"), 1, True, client=c) for c in "abcd"))
        first = asyncio.ensure_future(batcher.score(columns("a1"), 1, True, client="a"))
        await asyncio.sleep(0.05)  # the other clients are a little slower
        rest = [batcher.score(columns(f"{c}1"), 1, True, client=c) for c in "bcd"]
        return await asyncio.wait_for(asyncio.gather(first, *rest), 20)

    results = asyncio.run(main())
    assert [r.labels for r in results] == [["label-a1"], ["label-b1"], ["label-c1"], ["label-d1"]]
    assert scorer.batches[-1] == 4  # one predict call for the four, not one for "a" then three


def test_a_model_that_answers_the_wrong_number_of_rows_fails_every_caller() -> None:
    def short(frame: pd.DataFrame, want_proba: bool) -> Predictions:
        return Predictions(["only one"])

    results = asyncio.run(submit_all(Batcher(short, wait_s=0.05, max_rows=1000), [("a", "b"), ("c",)]))
    assert str(results[0]) == "the model returned 1 predictions for 2 rows"
    assert isinstance(results[1], Predictions)  # alone, the one-row request is fine


class CountingModel:
    """The example pipeline, recording the rows of each call and refusing age 999.

    ``hold_first`` (a condition): if the first call is a lone small request, it stays busy until
    the condition holds (and a moment more), so other requests pile up behind it however fast
    this machine is. The server scores on its event loop, so they queue in their sockets.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.feature_names_in_ = inner.feature_names_in_
        self.classes_ = inner.classes_
        self.calls: list[int] = []
        self.hold_first: Any = None

    def _check(self, X: pd.DataFrame) -> None:
        self.calls.append(len(X))
        hold, self.hold_first = self.hold_first, None
        if hold is not None and len(X) <= 3:
            deadline = time.monotonic() + 30
            while not hold() and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05)
        if (X["age"] == 999).any():
            raise ValueError("age 999 is a sentinel this model refuses")

    def predict(self, X: pd.DataFrame) -> Any:
        self._check(X)
        return self.inner.predict(X)

    def predict_proba(self, X: pd.DataFrame) -> Any:
        self._check(X)
        return self.inner.predict_proba(X)


@pytest.fixture(scope="module")
def counting(bank_model: Path) -> Artifact:
    artifact = load_artifact(bank_model)
    return dataclasses.replace(artifact, model=CountingModel(artifact.model))


def test_concurrent_clients_each_get_exactly_their_rows(counting: Artifact, bank_rows: list[dict]) -> None:
    model = counting.model
    expected = model.inner.predict(pd.DataFrame(bank_rows)).tolist()
    proba = model.inner.predict_proba(pd.DataFrame(bank_rows)).tolist()
    # 30 requests of 1-3 rows over three protocols, one of them poisoned
    plan = [(i, [(i + k) % len(bank_rows) for k in range(1 + i % 3)], ("/predict", "/invocations", "/v2")[i % 3])
            for i in range(30)]
    poisoned = 7

    async def send(client: httpx.AsyncClient, url: str, i: int, picks: list[int], route: str) -> httpx.Response:
        rows = [dict(bank_rows[p]) for p in picks]
        if i == poisoned:
            rows[0]["age"] = 999
        if route == "/predict":
            return await client.post(f"{url}/predict", json=rows)
        if route == "/invocations":
            return await client.post(f"{url}/invocations", json=encode(rows, "dataframe_split"))
        return await client.post(f"{url}/v2/models/bank/infer", json=encode(rows, "v2"))

    started = [0]

    async def count(request: httpx.Request) -> None:
        started[0] += 1

    async def main(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=30, max_keepalive_connections=30)
        async with httpx.AsyncClient(limits=limits, timeout=60, event_hooks={"request": [count]}) as client:
            return await asyncio.gather(*(send(client, url, *p) for p in plan))

    app = create_app(counting, ServerConfig(name="bank", batch_wait_ms=50, max_batch_rows=64))
    model.calls.clear()
    model.hold_first = lambda: started[0] >= 10
    with running(app) as url:
        responses = asyncio.run(main(url))

    for (i, picks, route), response in zip(plan, responses):
        if i == poisoned:
            assert response.status_code == 422
            assert "the model rejected the input: ValueError: age 999 is a sentinel this model refuses" in response.text
            continue
        assert response.status_code == 200, response.text
        want = [expected[p] for p in picks]
        body = response.json()
        if route == "/predict":
            assert body == {"predictions": want, "probabilities": [proba[p] for p in picks], "classes": ["no", "yes"]}
        elif route == "/invocations":
            assert body == {"predictions": want}
        else:
            assert body["outputs"][0]["data"] == want
    assert max(model.calls) > 3  # more rows than any one request: requests were scored together


def test_requests_naming_other_columns_are_not_mixed_in_one_batch() -> None:
    """Without a schema, requests may carry other columns: they are scored in separate calls."""
    seen: list[list[str]] = []

    def scorer(frame: pd.DataFrame, want_proba: bool) -> Predictions:
        seen.append(list(frame.columns))
        return Predictions([",".join(map(str, r)) for r in frame.itertuples(index=False)])

    async def main() -> list[Any]:
        batcher = Batcher(scorer, wait_s=0.05, max_rows=1000)
        requests = [{"a": np.array([1])}, {"b": np.array([2])}, {"a": np.array([3])}, {"a": np.array([4]),
                                                                                     "b": np.array([5])}]
        return await asyncio.gather(*(batcher.score(r, 1, False) for r in requests))

    results = asyncio.run(main())
    assert [r.labels for r in results] == [["1"], ["2"], ["3"], ["4,5"]]
    assert seen == [["a"], ["b"], ["a", "b"]]  # the two requests naming only "a" shared one call


def test_a_poisoned_batch_is_bisected_not_rescored_request_by_request() -> None:
    scorer = Recorder()
    requests = [(f"r{i}",) for i in range(32)]
    requests[13] = ("poison",)
    results = asyncio.run(submit_all(Batcher(scorer, wait_s=0.05, max_rows=1000), requests))
    assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == [13]
    assert str(results[13]) == "ValueError: this model refuses 'poison'"
    assert all(results[i].labels == [f"label-r{i}"] for i in range(32) if i != 13)
    # one batch of 32, then two calls per level of the bisection (2*log2(32) = 10), not 32 calls alone
    assert scorer.batches[0] == 32
    assert len(scorer.batches) <= 1 + 2 * 5



def test_a_client_the_model_rejected_is_scored_alone_and_last_until_it_scores_again() -> None:
    calls: list[list[str]] = []

    def scorer(frame: pd.DataFrame, want_proba: bool) -> Predictions:
        calls.append(frame["x"].tolist())
        return Recorder()(frame, want_proba)

    async def main() -> list[tuple[list[list[str]], list[Any]]]:
        batcher = Batcher(scorer, wait_s=0.05, max_rows=1000)
        rounds = []
        for sent in ("poison", "poison", "good", "good"):
            values = [sent if i == 3 else f"r{i}" for i in range(8)]
            calls.clear()
            batcher.recent.clear()  # no client counts as "the only one of late", however slow the machine
            answers = await asyncio.gather(*(batcher.score(columns(v), 1, True, client=("c", i))
                                             for i, v in enumerate(values)), return_exceptions=True)
            rounds.append((calls[:], answers))
        return rounds

    first, second, healed, back = asyncio.run(main())
    assert sum(map(len, first[0])) > 8  # the first rejection costs a bisection: rows scored again
    # then the rejected client's request is a call of its own, and nobody else's is scored twice
    assert ["poison"] in second[0] and sum(map(len, second[0])) == 8
    assert second[0][-1] == ["poison"]  # and it waits its penalty: the others are answered first
    assert [i for i, r in enumerate(second[1]) if isinstance(r, Exception)] == [3]
    assert ["good"] in healed[0] and not any(isinstance(r, Exception) for r in healed[1])
    assert ["good"] not in back[0]  # its request scored again: it rejoins the batches
    assert [r.labels for r in back[1]] == [[f"label-{v}"] for v in ["r0", "r1", "r2", "good", "r4", "r5", "r6", "r7"]]
