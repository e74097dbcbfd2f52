"""One-pass scoring: labels and probabilities from one model pass where predict is predict_proba's arg-max."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from deploykit.artifact import load_artifact
from deploykit.inference import ModelScorer


class Counting:
    """Wraps a fitted model and counts predict and predict_proba calls."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.model, name)
        if name in ("predict", "predict_proba"):
            def counted(*args: Any) -> Any:
                self.calls.append(name)
                return attr(*args)
            return counted
        return attr


def test_artifact_predict_is_one_model_pass_and_agrees_with_predict(bank_model: Path, bank_rows: list[dict]) -> None:
    artifact = load_artifact(bank_model)
    frame = artifact.schema.validate(pd.DataFrame(bank_rows))
    model = artifact.model
    preds = artifact.predict(frame)
    assert preds.labels == model.predict(frame).tolist()
    assert preds.probabilities == model.predict_proba(frame).tolist()
    assert preds.classes == artifact.classes

    scorer = ModelScorer(artifact)
    counting = Counting(model)
    scorer.model = counting
    scorer(frame, want_proba=True)
    assert counting.calls == (["predict_proba"] if scorer.argmax_classes is not None else ["predict_proba", "predict"])


def test_without_probabilities_asked_only_labels_come_back(bank_model: Path, bank_rows: list[dict]) -> None:
    artifact = load_artifact(bank_model)
    frame = artifact.schema.validate(pd.DataFrame(bank_rows))
    preds = ModelScorer(artifact)(frame, want_proba=False)
    assert preds.probabilities is None and preds.labels == artifact.model.predict(frame).tolist()
