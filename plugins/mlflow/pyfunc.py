"""The pyfunc wrapper deploykit logs a non-scikit-learn model with: any object with ``predict``."""

from typing import Any

import mlflow.pyfunc
import pandas as pd

__all__ = ["Predictor"]


class Predictor(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Serves ``model.predict(frame)`` through MLflow's pyfunc interface.

    deploykit logs it with this module pickled by value, so the scoring server needs the
    model's own packages but not deploykit.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    # MLflow reads these hints at runtime: a DataFrame hint means "no type-hint schema", so the
    # signature deploykit builds from the artifact's schema is the one that applies.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """The wrapped model's predictions for ``model_input`` (a DataFrame)."""
        return self.model.predict(model_input)
