"""Predictions: what a model answered, the one type every protocol's response decodes into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError
from deploykit.payload.table import _NONE, _np, _pd, _short, column_array, jsonable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Predictions"]


def _plain(values: Any) -> list[Any]:
    """A model output (numpy array, Series or list) as a list of JSON-safe Python values."""
    if type(values).__name__ in ("Series", "Index"):
        values = values.to_numpy()
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        plain = list(values)
        if set(map(type, plain)) <= {str, int, bool, _NONE}:
            return plain
        return jsonable(plain)  # type: ignore[no-any-return]
    kind = dtype.kind
    if kind in "iubUS":
        return values.tolist()  # type: ignore[no-any-return]
    if kind == "f":
        np = _np()
        out = values.tolist()
        if np.isfinite(values).all():
            return out  # type: ignore[no-any-return]
        return jsonable(out)  # type: ignore[no-any-return]
    out = values.tolist()
    flat = out if values.ndim == 1 else [v for row in out for v in row]
    if set(map(type, flat)) <= {str, int, bool, _NONE}:
        return out  # type: ignore[no-any-return]
    return jsonable(out)  # type: ignore[no-any-return]


@dataclass
class Predictions:
    """What a model answered: one label per row, class probabilities if it gives them (columns
    in the order of ``classes``), and the raw response body it was read from.

    Everything is plain JSON-safe Python (no numpy scalars, NaN as None). ``encode(protocol)``
    writes the response body of any protocol; ``decode(body)`` reads any of them back.
    """

    labels: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    raw: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, rows: slice) -> Predictions:
        """The predictions of a range of rows (``preds[2:5]``), with the same classes."""
        if not isinstance(rows, slice):
            raise TypeError(f"Predictions can be sliced by rows (preds[2:5]), not indexed by {type(rows).__name__}")
        proba = None if self.probabilities is None else self.probabilities[rows]
        return Predictions(self.labels[rows], proba, self.classes)

    @property
    def class_names(self) -> list[str]:
        """Names of the probability columns: the classes, or their positions when unknown."""
        width = len(self.probabilities[0]) if self.probabilities else len(self.classes or [])
        names = self.classes if self.classes is not None and len(self.classes) == width else list(range(width))
        return [str(c) for c in names]

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per row: ``{"prediction": label, "probabilities": {class: p}}``."""
        return self.encode("records")  # type: ignore[no-any-return]

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with a ``prediction`` column and one ``probability_<class>`` column per class."""
        pd = _pd()
        frame = pd.DataFrame({"prediction": column_array(list(self.labels))})
        if self.probabilities is not None:
            for j, name in enumerate(self.class_names):
                frame[f"probability_{name}"] = column_array([p[j] for p in self.probabilities])
        return frame

    def to_dict(self) -> dict[str, Any]:
        """deploykit's own response shape: ``{"predictions": [...], "probabilities": [[...]], "classes": [...]}``."""
        return self.encode("deploykit")  # type: ignore[no-any-return]

    @classmethod
    def from_script(cls, answer: Any, rows: int) -> Predictions:
        """A scoring script's answer (any JSON): ``raw`` is the answer; the labels are its ``pred``,
        ``prediction`` or ``predictions`` value when it has one (Neomaril scripts' usual keys),
        else a list of ``rows`` answers, else the answer itself."""
        labels: list[Any] = [answer]
        if isinstance(answer, dict):
            for key in ("pred", "prediction", "predictions"):
                if key in answer:
                    value = answer[key]
                    labels = value if isinstance(value, list) else [value]
                    break
        elif isinstance(answer, list) and len(answer) == rows:
            labels = answer
        return cls(labels, raw=answer)

    @classmethod
    def from_model(cls, labels: Any, probabilities: Any = None, classes: Any = None) -> Predictions:
        """Build from the outputs of ``predict`` / ``predict_proba`` / ``classes_`` (numpy or lists)."""
        return cls(
            _plain(labels),
            None if probabilities is None else _plain(probabilities),
            None if classes is None else _plain(classes),
        )

    def encode(self, protocol: str = "deploykit") -> Any:
        """The response body of ``protocol``: ``deploykit`` (``to_dict``), ``records``
        (``to_records``), ``mlflow`` (``{"predictions": [...]}``), ``watson``, ``v2``, ``csv``, or
        any protocol a plugin registered. A request format's name means its protocol
        (``dataframe_split`` is ``mlflow``, ``input_data`` is ``watson``)."""
        from deploykit.payload.registry import encode_response

        return encode_response(self, protocol)

    @classmethod
    def decode(cls, body: Any) -> Predictions:
        """Read any protocol's response body (deploykit, records, MLflow, Watson, V2, CSV, or a
        plugin's) into Predictions."""
        from deploykit.payload.registry import decode_response

        try:
            return decode_response(body)
        except PayloadError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, StopIteration):
            raise PayloadError(f"cannot read predictions from a response of shape {_short(body)}; "
                               "expected a deploykit, MLflow, Watson, V2 or CSV response body") from None
