"""Models for contract tests: two small fits that disagree, and a model that fails when scored.

The model files hold scikit-learn objects only, so any serving environment with scikit-learn
(a server process, MLflow's scoring server, an emulator, a container) can load them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ContractModels", "refusing_model", "two_fits"]


def refusing_model(folder: Path, like: Path, name: str = "refusing-model") -> Path:
    """Write ``<name>.joblib`` into ``folder``: ``like``'s model behind a first step that raises on any
    input (``FunctionTransformer(float)``: a table is no float), with ``like``'s schema beside it.

    It loads, validates and deploys like ``like`` and fails only when scored, so an update to it
    fails the smoke test. It holds scikit-learn objects and a builtin only, so any serving
    environment that can load ``like`` can load it (no deploykit needed there).
    """
    import joblib
    import pandas as pd
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from deploykit.artifact import load_artifact

    good = load_artifact(like)
    example = pd.DataFrame([good.example]) if good.example else pd.DataFrame(columns=good.schema.names)
    refuse = FunctionTransformer(float, validate=False).fit(example)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.joblib"
    joblib.dump(Pipeline([("refuse", refuse), ("model", good.model)]), path)
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
