"""The thing deployed: a loaded model plus its facts (sha256, framework, schema, example row)."""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import ArtifactError
from deploykit.schema import Column, Schema

__all__ = ["Artifact", "load_artifact", "sha256_of"]

_LOADERS_HINT = "a joblib/pickle file of a fitted model (e.g. model.joblib) or an MLflow model directory"


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, or of every file (names and bytes, sorted) below a directory."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        if path.is_dir():
            digest.update(str(item.relative_to(path)).encode() + b"\0")
        with item.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Artifact:
    """A fitted model ready to deploy.

    ``framework`` is the distribution the model comes from (``scikit-learn``, ``xgboost``, ...)
    and ``framework_version`` its installed version; targets map them to their own model types
    (Watson: ``scikit-learn_1.x``). ``schema`` is the input schema, ``source`` where it came from.
    """

    path: Path
    sha256: str
    model: Any
    framework: str
    framework_version: str | None
    schema: Schema
    flavor: str = "joblib"
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A default deployment name: the file name without its suffix (``bank-model.joblib`` -> ``bank-model``)."""
        return self.path.name.split(".")[0] if self.path.is_file() else self.path.name

    @property
    def example(self) -> dict[str, Any]:
        """One input row (column -> value) used for docs and the smoke test."""
        return self.schema.example

    @property
    def classes(self) -> list[Any] | None:
        """Class labels of a classifier, in predict_proba's column order."""
        classes = getattr(self.model, "classes_", None)
        if classes is None:
            return None
        from deploykit.payload import jsonable

        return jsonable(list(classes))  # type: ignore[no-any-return]

    def predict(self, frame: Any) -> Any:
        """Score a validated DataFrame in process (labels and probabilities in one model pass
        where the model allows it); returns Predictions."""
        from deploykit.inference import ModelScorer

        return ModelScorer(self)(frame, want_proba=True)


def _framework_of(model: Any) -> tuple[str, str | None]:
    top = type(model).__module__.split(".")[0]
    dist = {"sklearn": "scikit-learn", "xgboost": "xgboost", "lightgbm": "lightgbm",
            "catboost": "catboost"}.get(top, top)
    try:
        from importlib.metadata import version

        return dist, version(dist)
    except Exception:  # not an installed distribution (a user's own class)
        return dist, None


def _load_pickle(path: Path) -> tuple[Any, str]:
    head = path.read_bytes()[:2]
    try:
        import joblib

        return joblib.load(path), "joblib"
    except ModuleNotFoundError as exc:
        raise ArtifactError(
            f"model file {str(path)!r} needs the Python package {exc.name!r} to load; install it"
        ) from None
    except Exception as exc:
        if head[:1] != b"\x80":
            raise ArtifactError(
                f"{str(path)!r} is not a joblib/pickle file (it starts with {head!r}); pass {_LOADERS_HINT}"
            ) from None
        try:
            with path.open("rb") as fh:
                return pickle.load(fh), "pickle"
        except Exception:
            raise ArtifactError(
                f"{str(path)!r} could not be unpickled ({type(exc).__name__}: {exc}); pass {_LOADERS_HINT}"
            ) from None


def infer_schema(model: Any) -> Schema:
    """Best-effort schema from a fitted estimator: names from ``feature_names_in_``, types and an
    example from fitted encoders (categories -> string) and scalers (mean -> float)."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        n = getattr(model, "n_features_in_", None)
        if n is None:
            return Schema([])
        cols = [Column(f"f{i}", "float") for i in range(int(n))]
        return Schema(cols, {c.name: 0.0 for c in cols})
    types: dict[str, str] = {}
    example: dict[str, Any] = {}
    _walk_transformers(model, types, example)
    cols = [Column(str(n), types.get(str(n), "float")) for n in names]
    for c in cols:
        example.setdefault(c.name, 0.0 if c.type == "float" else None)
    from deploykit.payload import jsonable

    return Schema(cols, jsonable({c.name: example[c.name] for c in cols}))


def _walk_transformers(est: Any, types: dict[str, str], example: dict[str, Any]) -> None:
    for step in getattr(est, "steps", []) or []:  # Pipeline
        _walk_transformers(step[1], types, example)
    for name, trans, cols in getattr(est, "transformers_", []) or []:  # ColumnTransformer
        if not isinstance(cols, (list, tuple)) or not cols or not isinstance(cols[0], str):
            continue
        last = trans.steps[-1][1] if hasattr(trans, "steps") else trans
        first = trans.steps[0][1] if hasattr(trans, "steps") else trans
        cats = getattr(last, "categories_", None) or getattr(first, "categories_", None)
        means = getattr(last, "mean_", None)
        for i, col in enumerate(cols):
            if cats is not None and i < len(cats):
                kind = cats[i].dtype.kind
                types[col] = "string" if kind in "OUS" else "integer" if kind in "iu" else "float"
                example[col] = cats[i][0].item() if hasattr(cats[i][0], "item") else cats[i][0]
            elif means is not None and i < len(means):
                types[col] = "float"
                example[col] = round(float(means[i]), 3)


def load_artifact(source: str | Path, schema: str | Path | Schema | None = None,
                  credentials: str | Path | None = None) -> Artifact:
    """Load a model file (joblib/pickle) or an MLflow model directory and gather its facts.

    The schema comes from ``schema`` (a Schema or a schema.json path), else a sidecar
    ``<model>.schema.json`` or ``schema.json`` beside the model, else an MLflow signature,
    else what the fitted estimator reveals (``feature_names_in_``, encoders, scalers).
    ``credentials`` is read (its ``mlflow`` section) only for ``models:/`` and ``runs:/`` URIs.
    """
    text = str(source)
    if text.startswith(("models:/", "runs:/")):
        from deploykit_plugins.mlflow.artifact import load_registry_artifact

        return load_registry_artifact(text, schema, credentials)
    path = Path(source).expanduser()
    if not path.exists():
        raise ArtifactError(f"model file {text!r} does not exist; pass {_LOADERS_HINT}")
    if path.is_dir():
        if (path / "MLmodel").is_file():
            from deploykit_plugins.mlflow.artifact import load_mlflow_dir

            return load_mlflow_dir(path, schema)
        raise ArtifactError(f"{text!r} is a directory without an MLmodel file; pass {_LOADERS_HINT}")
    try:
        digest = sha256_of(path)
    except OSError as exc:
        raise ArtifactError(f"model file {text!r} cannot be read ({exc.strerror}); check its permissions") from None
    model, flavor = _load_pickle(path)
    if not callable(getattr(model, "predict", None)):
        raise ArtifactError(
            f"{text!r} holds a {type(model).__module__}.{type(model).__name__}, which has no predict() method; "
            f"pass {_LOADERS_HINT}"
        )
    framework, version = _framework_of(model)
    resolved, origin = _resolve_schema(path, schema, model)
    return Artifact(path.resolve(), digest, model, framework, version, resolved, flavor, origin)


def _resolve_schema(path: Path, schema: str | Path | Schema | None, model: Any) -> tuple[Schema, str]:
    if isinstance(schema, Schema):
        return schema, "given"
    if schema is not None:
        return Schema.read(schema), str(schema)
    for candidate in (path.with_name(path.name.split(".")[0] + ".schema.json"), path.with_name("schema.json")):
        if candidate.is_file():
            return Schema.read(candidate), str(candidate)
    return infer_schema(model), "inferred from the model"
