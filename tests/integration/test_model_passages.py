"""The model engines get the right passages: every answerable question of every evaluation
profile, asked through the service with ENGINE=responses against the fake Responses API, sends
the model a grounding message that holds the expected fact, often enough (issue 14, item 5).

The floors sit a little under the measured rates (docs/evaluation.md, "Model engines"), so a
change that starves the model of the right passage fails here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evaluation.evaluate import Profile, profiles
from evaluation.model_passages import grounding_documents, measure, rates
from testing.fake_responses_api import FakeResponsesAPI, RunningFake, run_fake_responses_api

FLOORS = {"overall": 0.8, "cross_language": 0.7}
"""Lexical search: measured 0.944 / 0.867 / 0.867 overall, 1.000 / 0.824 / 0.833 across
languages (sample, jaehyun_oh, yujin_han)."""
FLOOR_WITH_FAKE_EMBEDDINGS = 0.7
"""Semantic search on, with the fake's hashed-word vectors (not meanings): measured 0.875 /
0.800 / 0.844."""


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFake]:
    with run_fake_responses_api(FakeResponsesAPI()) as running:
        yield running


@pytest.mark.parametrize("profile", profiles(), ids=lambda p: p.name)
def test_the_passage_holding_the_fact_reaches_the_model(
    profile: Profile, fake: RunningFake
) -> None:
    sent = measure(profile, fake=fake)
    measured = rates(sent)
    assert measured.questions >= 40
    assert measured.overall is not None
    assert measured.overall >= FLOORS["overall"], [
        s.question.id for s in sent if not s.fact_sent and not s.declined
    ]
    assert measured.cross_language is None or measured.cross_language >= FLOORS["cross_language"]
    # Every question that was not declined reached the model with a grounding block.
    assert all(s.documents for s in sent if not s.declined)


@pytest.mark.parametrize("profile", profiles(), ids=lambda p: p.name)
def test_semantic_search_on_keeps_the_passages_coming(profile: Profile, fake: RunningFake) -> None:
    measured = rates(measure(profile, semantic=True, fake=fake))
    assert measured.overall is not None
    assert measured.overall >= FLOOR_WITH_FAKE_EMBEDDINGS
    assert any(r["path"].endswith("/embeddings") for r in fake.api.requests)


def test_only_the_documents_block_counts_not_the_contact() -> None:
    body = {
        "input": [
            {
                "role": "developer",
                "content": '<profile_documents>\n<document id="1">Tom &amp; Jerry</document>\n'
                "</profile_documents>\n<contact>\nEmail: a@example.com\n</contact>",
            },
            {"role": "user", "content": "Where?"},
        ]
    }
    documents = grounding_documents(body)
    assert "Tom & Jerry" in documents
    assert "a@example.com" not in documents
