"""One-pass model scoring: labels, and class probabilities when asked for, from one model pass.

:class:`ModelScorer` is what ``Artifact.predict`` and the local server call. For estimators
whose ``predict`` is exactly the arg-max of ``predict_proba`` (scikit-learn forests and trees)
the labels are read off the probabilities, so labels with probabilities cost one model pass,
not two. numpy and scikit-learn are imported when a scorer is built, never at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.artifact import Artifact
    from deploykit.payload import Predictions

__all__ = ["ModelScorer"]


def _final_step(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if isinstance(steps, list) and steps else model


def _labels_from_proba(model: Any) -> Any:
    """``classes_`` when the model's ``predict`` is exactly the arg-max of ``predict_proba``
    (scikit-learn forests and trees), so one ``predict_proba`` call gives both; else None."""
    final = _final_step(model)
    if not type(final).__module__.startswith("sklearn.") or getattr(final, "n_outputs_", 1) != 1:
        return None
    import numpy as np
    from sklearn.ensemble._forest import ForestClassifier
    from sklearn.tree._classes import BaseDecisionTree

    predict = getattr(type(final), "predict", None)
    if predict not in (ForestClassifier.predict, BaseDecisionTree.predict) or not hasattr(final, "classes_"):
        return None
    return np.asarray(final.classes_)


class ModelScorer:
    """Calls the model: labels, and class probabilities when asked for.

    For estimators whose ``predict`` is the arg-max of ``predict_proba`` the labels are taken
    from the probabilities, so a request with probabilities costs one model pass, not two.
    """

    def __init__(self, artifact: Artifact) -> None:
        self.model = artifact.model
        self.flavor = artifact.flavor
        self.classes = artifact.classes
        self.use_frame = getattr(self.model, "feature_names_in_", None) is not None or self.flavor == "mlflow"
        self.has_proba = callable(getattr(self.model, "predict_proba", None)) and self.flavor != "mlflow"
        self.argmax_classes = _labels_from_proba(self.model) if self.has_proba else None

    def __call__(self, frame: pd.DataFrame, want_proba: bool = True) -> Predictions:
        """Score a validated frame."""
        from deploykit.payload import Predictions

        X = frame if self.use_frame else frame.to_numpy()
        proba = None
        if self.has_proba and (want_proba or self.argmax_classes is not None):
            try:
                proba = self.model.predict_proba(X)
            except (AttributeError, NotImplementedError):  # e.g. SVC(probability=False)
                self.has_proba = False
                self.argmax_classes = None
        if proba is not None and self.argmax_classes is not None:
            import numpy as np

            labels = self.argmax_classes.take(np.argmax(proba, axis=1))
        else:
            labels = self.model.predict(X)
        if type(labels).__name__ == "DataFrame":  # an MLflow pyfunc may answer with a table
            labels = labels.iloc[:, 0] if labels.shape[1] == 1 else labels.to_dict("records")
        if proba is None or not want_proba:
            return Predictions.from_model(labels)
        return Predictions.from_model(labels, proba, self.classes)

    def check_shortcut(self, frame: pd.DataFrame) -> None:
        """Turn the one-pass shortcut off if it disagrees with ``predict`` on ``frame``."""
        if self.argmax_classes is None:
            return
        from deploykit.payload import Predictions

        X = frame if self.use_frame else frame.to_numpy()
        expected = Predictions.from_model(self.model.predict(X)).labels
        if self(frame, want_proba=False).labels != expected:
            self.argmax_classes = None
