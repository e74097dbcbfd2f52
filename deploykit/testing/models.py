"""Models for contract tests: two small fits that disagree, and a model that refuses to predict.

Everything here is importable wherever deploykit is installed, so a server process, MLflow's
scoring server or an emulator can unpickle these models too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin  # this module loads only where models are built or read

__all__ = ["ContractModels", "RefusingModel", "refusing_model", "two_fits"]

#: what RefusingModel.predict raises; a test can look for it in an error message
REFUSAL = "RefusingModel refuses to predict (deploykit.testing's model for a failing smoke test)"


class RefusingModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A fitted-looking classifier whose ``predict`` always raises, to make a smoke test fail.

    It carries the columns (``feature_names_in_``) and classes of the model it stands in for,
    so it loads, validates and deploys like that model and fails only when scored.
    """

    def __init__(self, columns: list[str] | None = None, classes: list[Any] | None = None) -> None:
        import numpy as np

        self.columns = columns
        self.classes = classes
        self.feature_names_in_ = np.array(columns or [], dtype=object)
        self.n_features_in_ = len(columns or [])
        self.classes_ = np.array(classes if classes is not None else [0, 1])

    def fit(self, X: Any, y: Any = None) -> RefusingModel:
        """Nothing to learn."""
        return self

    def predict(self, X: Any) -> Any:
        """Raise ValueError: this model never scores."""
        raise ValueError(REFUSAL)

    def predict_proba(self, X: Any) -> Any:
        """Raise ValueError, like ``predict``."""
        raise ValueError(REFUSAL)


def refusing_model(folder: Path, like: Path, name: str = "refusing-model") -> Path:
    """Write ``<name>.joblib`` into ``folder``: a model with ``like``'s schema whose predict raises.

    It is wrapped in a one-step scikit-learn Pipeline, so targets that map scikit-learn models to
    a runtime (Watson ML, MLflow's sklearn flavor) take it like the model it stands in for.
    """
    import joblib
    from sklearn.pipeline import Pipeline

    from deploykit.artifact import load_artifact

    good = load_artifact(like)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.joblib"
    joblib.dump(Pipeline([("refuse", RefusingModel(good.schema.names, good.classes))]), path)
    (folder / f"{name}.schema.json").write_text(json.dumps(good.schema.to_dict()))
    return path


@dataclass
class ContractModels:
    """What ``TargetContract`` deploys: two different fits of one pipeline, rows to score, a failing model.

    ``rows`` must hold at least one row on which ``first`` and ``second`` predict different labels,
    so a test can tell which revision serves.
    """

    first: Path
    second: Path
    rows: list[dict[str, Any]]
    failing: Path


def _data(rows: int, seed: int) -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 90, rows).astype("int64"),
                          "balance": rng.normal(1000.0, 800.0, rows).round(2),
                          "channel": rng.choice(["web", "phone", "branch"], rows)})
    score = (frame["age"] - 50) / 20 + (frame["balance"] - 1000) / 600 + rng.normal(0, 1.0, rows)
    return frame, np.where(score > 0, "yes", "no")


def _fit(folder: Path, seed: int) -> Path:
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from deploykit.schema import Schema

    frame, labels = _data(400, seed)
    model = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), ["age", "balance"]),
                                    ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"])])),
        ("clf", LogisticRegression(C=0.05 if seed else 10.0, max_iter=500)),
    ]).fit(frame, labels)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "contract-model.joblib"
    joblib.dump(model, path)
    (folder / "contract-model.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
    return path


def two_fits(folder: Path) -> ContractModels:
    """Two fits of a small scikit-learn pipeline (different seeds and regularisation), rows they disagree
    on, and a refusing model with their schema, written below ``folder``."""
    import joblib

    first, second = _fit(folder / "v1", seed=0), _fit(folder / "v2", seed=1)
    frame, _ = _data(500, seed=7)
    differ = joblib.load(first).predict(frame) != joblib.load(second).predict(frame)
    picked = frame[differ].head(6)
    if picked.empty:
        raise AssertionError("the two contract fits agree on every row; change their seeds")
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in picked.to_dict("records")]
    return ContractModels(first, second, rows, refusing_model(folder / "failing", first))
