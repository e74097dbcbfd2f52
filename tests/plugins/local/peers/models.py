"""The models the peer replays run on, each saved once as an MLflow model directory.

- ``mixed``: the named, typed table MLflow's iris KNN stands for: a KNN behind OneHot and
  StandardScaler on ``age`` (long), ``income`` (double), ``city`` (string), ``member`` (boolean),
  labels ``bronze``/``silver``/``gold``; its signature declares one datetime param, ``param1``,
  as MLflow's ``test_serving_model_with_param_schema`` does.
- ``iris``: a LogisticRegression on iris with named columns (KServe's e2e rows are class 1).
- ``echo``: a pyfunc model (models from code) that answers ``x * scale`` with a ``scale`` param,
  so a test can see that params reach ``predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIXED_COLUMNS = ["age", "income", "city", "member"]
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
#: KServe's e2e iris rows (test/e2e/data/iris_input_v2.json); both are class 1.
IRIS_ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]


def mixed_frame(rows: int = 120, seed: int = 3) -> Any:
    """Deterministic rows of the mixed table with a label column ``tier``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, rows).astype("int64"),
        "income": np.round(rng.normal(42_000, 12_000, rows), 2),
        "city": rng.choice(["Paris", "Lyon", "Nice"], rows),
        "member": rng.random(rows) < 0.4,
    })
    score = frame["income"] / 10_000 + frame["age"] / 20 + frame["member"] * 2 + (frame["city"] == "Paris")
    frame["tier"] = np.where(score > 9, "gold", np.where(score > 7, "silver", "bronze"))
    return frame


def mixed_rows(n: int = 3) -> list[dict[str, Any]]:
    """``n`` input rows as records with plain Python values."""
    frame = mixed_frame(rows=40, seed=11)[MIXED_COLUMNS].head(n)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict("records")]


def save_mixed(path: Path) -> Path:
    """Fit and save the mixed model (sklearn flavour, cloudpickle) with a signature and a params schema."""
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from mlflow.types import DataType, ParamSchema, ParamSpec
    from sklearn.compose import ColumnTransformer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = mixed_frame()
    X, y = frame[MIXED_COLUMNS], frame["tier"]
    model = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                                    ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                    ("flag", "passthrough", ["member"])])),
        ("knn", KNeighborsClassifier(n_neighbors=5)),
    ]).fit(X, y)
    signature = infer_signature(X, model.predict(X))
    signature.params = ParamSchema([ParamSpec("param1", DataType.datetime, np.datetime64("2023-07-01"))])
    mlflow.sklearn.save_model(model, path, signature=signature, serialization_format="cloudpickle")
    return path


def save_iris(path: Path) -> Path:
    """Fit and save the iris LogisticRegression with named columns."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    X = data.data.set_axis(IRIS_COLUMNS, axis=1)
    model = LogisticRegression(max_iter=1000).fit(X, data.target)
    mlflow.sklearn.save_model(model, path, signature=infer_signature(X, model.predict(X)),
                              serialization_format="cloudpickle")
    return path


ECHO_MODEL = '''"""x * scale: a pyfunc model whose answer shows which params reached predict."""
import mlflow
from mlflow.pyfunc import PythonModel


class Echo(PythonModel):
    def predict(self, context, model_input, params=None):
        scale = (params or {}).get("scale", 1.0)
        return [float(x) * scale for x in model_input["x"]]


mlflow.models.set_model(Echo())
'''


def save_echo(path: Path) -> Path:
    """Save the echo pyfunc model (from code, so the server needs no importable test module)."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    code = path.parent / f"{path.name}_code.py"
    code.write_text(ECHO_MODEL)
    signature = ModelSignature(Schema([ColSpec(DataType.long, "x")]), Schema([ColSpec(DataType.double)]),
                               ParamSchema([ParamSpec("scale", DataType.double, 1.0),
                                            ParamSpec("tag", DataType.string, "none")]))
    mlflow.pyfunc.save_model(path, python_model=str(code), signature=signature)
    return path
