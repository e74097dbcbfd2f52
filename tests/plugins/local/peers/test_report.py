"""docs/protocols.md is generated from the case data and must be current."""

from __future__ import annotations

from tests.plugins.local.peers.report import DOC, render


def test_protocols_doc_is_current() -> None:
    assert DOC.read_text() == render(), "run: python -m tests.plugins.local.peers.report"


def test_protocols_doc_shows_every_case() -> None:
    from tests.plugins.local.peers import cases_mlflow, cases_v2

    text = DOC.read_text()
    for case in [*cases_mlflow.CASES, *cases_v2.CASES]:
        assert f"| {case.id} |" in text, case.id
