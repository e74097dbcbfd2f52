"""The pyfunc loader of a scikit-learn classifier deploykit logs: labels AND class probabilities.

Vendored: shipped in the model's ``code/`` folder as the top-level module
``deploykit_sklearn_proba`` and named as the ``python_function`` flavor's ``loader_module``, so
MLflow's scoring server answers ``{"predictions": [{"prediction": "yes", "probability_no": 0.2,
"probability_yes": 0.8}, ...]}`` (one ``probability_<class>`` column per class, in ``classes_``
order, as deploykit's CSV responses name them). It imports only mlflow, pandas and numpy. The
``sklearn`` flavor is left as MLflow wrote it, so ``mlflow.sklearn.load_model`` (and deploykit's
``models:/`` loading) still get the estimator itself.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProbabilityModel"]


class ProbabilityModel:
    """``predict`` answers a table: the ``prediction`` column, then one ``probability_<class>`` per class."""

    def __init__(self, model: Any) -> None:
        self.model = model
        # the same input the local server gives the model: a frame when it was fitted on one
        self.use_frame = getattr(model, "feature_names_in_", None) is not None

    def get_raw_model(self) -> Any:
        """The scikit-learn estimator (MLflow's own sklearn wrapper offers the same)."""
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Labels from ``predict`` and probabilities from ``predict_proba`` for the rows of ``data``."""
        import pandas as pd

        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        X = frame if self.use_frame else frame.to_numpy()
        labels = self.model.predict(X)
        proba = self.model.predict_proba(X)
        out = pd.DataFrame({"prediction": labels})
        for j, label in enumerate(self.model.classes_):
            out[f"probability_{label}"] = proba[:, j]
        return out


def _load_pyfunc(path: str, model_config: Any = None) -> ProbabilityModel:
    """MLflow's loader hook: the sklearn flavor's estimator (``path`` is the model folder), wrapped."""
    import mlflow.sklearn

    return ProbabilityModel(mlflow.sklearn.load_model(path))
