"""Scoring-script bundles for tests: Neomaril's documented scripts, verbatim in shape, with their files.

Each builder writes a folder holding the script, its model file(s), an example request
(``example.json``) and a ``deploykit.yaml`` naming them, and returns a :class:`Bundle`;
deploy it as the folder (``deploykit.deploy(bundle.folder)``) or as a Script
(``bundle.script()``). ``expected`` answers what the script answers for a request, computed from
the pickles directly (the test process never imports the user's script).

- :func:`sync_bundle`: ``score(data, base_path)`` loading ``base_path + "/model.pkl"`` and
  returning ``{"pred": int(...), "proba": float(...)}``; ``raw_numpy=True`` returns the numpy
  values themselves (which the server must convert); ``env`` adds an env file whose
  ``API_SECRET`` the script reads (it answers the secret's sha256 prefix, never the secret);
  ``extra_module`` adds ``labels.py`` importing ``inflection`` (``requirements``).
- :func:`two_pickle_bundle`: ``ohe.pkl`` and ``model.pkl`` glued in the script, the model
  found as ``base_path + os.getenv("modelFileName")``.
- :func:`async_bundle`: ``score(data_path, model_path)`` reading ``data_path + "/" +
  os.getenv("inputFileName")`` and writing ``output.csv`` beside it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Bundle", "async_bundle", "secret_digest", "sync_bundle", "two_pickle_bundle"]

_SYNC = '''\
import json
import os
import pickle

import numpy as np
import pandas as pd

_model = None


def score(data, base_path):
    global _model
    if _model is None:
        with open(base_path + "/model.pkl", "rb") as fh:
            _model = pickle.load(fh)
    df = pd.DataFrame(data=json.loads(data), index=[0])
    proba = _model.predict_proba(df[["age", "balance"]])[0]
    pred = np.argmax(proba)
{answer}
'''
_ANSWER = '''\
    answer = {"pred": int(pred), "proba": float(proba[1])}
'''
_RAW_ANSWER = '''\
    answer = {"pred": pred, "proba": proba[1], "probas": proba}
'''
_SECRET = '''\
    import hashlib
    answer["secret"] = hashlib.sha256(os.environ["API_SECRET"].encode()).hexdigest()[:12]
    answer["threshold"] = float(os.getenv("THRESHOLD", "nan"))
'''
_LABEL = '''\
    from labels import label
    answer["label"] = label("bank_customer")
'''
_LABELS_MODULE = '''\
import inflection


def label(text):
    return inflection.titleize(text)
'''
_TWO_PICKLES = '''\
import json
import os
import pickle

import numpy as np
import pandas as pd


def score(data, base_path):
    with open(base_path + "/ohe.pkl", "rb") as fh:
        ohe = pickle.load(fh)
    with open(base_path + os.getenv("modelFileName"), "rb") as fh:
        model = pickle.load(fh)
    df = pd.DataFrame(data=json.loads(data), index=[0])
    X = np.hstack([ohe.transform(df[["job"]]), df[["age"]].to_numpy(dtype=float)])
    return {"pred": int(model.predict(X)[0]), "proba": float(model.predict_proba(X)[0, 1])}
'''
_ASYNC = '''\
import os
import pickle

import pandas as pd


def score(data_path, model_path):
    with open(model_path + os.getenv("modelFileName"), "rb") as fh:
        model = pickle.load(fh)
    df = pd.read_csv(data_path + "/" + os.getenv("inputFileName"))
    df["pred"] = model.predict(df[["age", "balance"]])
    df["proba"] = model.predict_proba(df[["age", "balance"]])[:, 1]
    output = data_path + "/output.csv"
    df.to_csv(output, index=False)
    return output
'''


@dataclass
class Bundle:
    """A bundle folder written by a builder: its files, an example request, and its in-process answer."""

    folder: Path
    entrypoint: str
    model_file: str
    example: dict[str, Any]
    extra: list[str] = field(default_factory=list)
    requirements: str | None = None
    env: str | None = None
    mode: str = "sync"
    kind: str = "sync"

    def script(self, **changes: Any) -> Any:
        """The same bundle as a ``deploykit.Script`` (keyword arguments override its fields)."""
        from deploykit.bundle import Script

        values: dict[str, Any] = {"entrypoint": self.entrypoint, "model_file": self.model_file,
                                  "extra": list(self.extra), "requirements": self.requirements, "env": self.env,
                                  "schema": "example.json", "mode": self.mode, "root": self.folder}
        values.update(changes)
        return Script(**values)

    def rows(self, n: int = 5, seed: int = 11) -> list[dict[str, Any]]:
        """``n`` requests like the example one."""
        import numpy as np

        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            row: dict[str, Any] = {"age": int(rng.integers(18, 90))}
            if self.kind == "two-pickle":
                row["job"] = str(rng.choice(_JOBS))
            else:
                row["balance"] = round(float(rng.normal(1000, 800)), 2)
            out.append(row)
        return out

    def expected(self, request: dict[str, Any]) -> dict[str, Any]:
        """What the script answers for ``request`` (without the env-file and extra-module keys)."""
        import numpy as np
        import pandas as pd

        def load(name: str) -> Any:
            with (self.folder / name).open("rb") as fh:
                return pickle.load(fh)

        model = load(self.model_file)
        df = pd.DataFrame([request])
        if self.kind == "two-pickle":
            X = np.hstack([load("ohe.pkl").transform(df[["job"]]), df[["age"]].to_numpy(dtype=float)])
            return {"pred": int(model.predict(X)[0]), "proba": float(model.predict_proba(X)[0, 1])}
        proba = model.predict_proba(df[["age", "balance"]])[0]
        answer: dict[str, Any] = {"pred": int(np.argmax(proba)), "proba": float(proba[1])}
        if self.kind == "raw":
            answer["probas"] = [float(p) for p in proba]
        return answer


_JOBS = ["admin.", "technician", "services", "management"]


def _fit(seed: int) -> Any:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.integers(18, 90, 400), "balance": rng.normal(1000.0, 800.0, 400).round(2)})
    y = ((X["age"] > 50) ^ (X["balance"] > 1200 + 100 * seed)).astype(int)
    return LogisticRegression(max_iter=500).fit(X, y)


def _dump(obj: Any, path: Path) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh)


def _manifest(bundle: Bundle) -> None:
    import yaml

    data: dict[str, Any] = {"entrypoint": bundle.entrypoint, "model_file": bundle.model_file,
                            "schema": "example.json", "mode": bundle.mode}
    for key in ("requirements", "env"):
        if getattr(bundle, key):
            data[key] = getattr(bundle, key)
    if bundle.extra:
        data["extra"] = bundle.extra
    (bundle.folder / "deploykit.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (bundle.folder / "example.json").write_text(json.dumps(bundle.example), encoding="utf-8")


def secret_digest(secret: str) -> str:
    """What a :func:`sync_bundle` script with an env file answers under ``"secret"`` for ``secret``."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def sync_bundle(folder: Path, *, seed: int = 0, raw_numpy: bool = False, env: dict[str, str] | None = None,
                extra_module: bool = False, requirements: list[str] | None = None) -> Bundle:
    """Neomaril's sync script with ``model.pkl`` (see the module docstring); ``seed`` changes the fit."""
    folder.mkdir(parents=True, exist_ok=True)
    _dump(_fit(seed), folder / "model.pkl")
    answer = _RAW_ANSWER if raw_numpy else _ANSWER
    if env is not None:
        answer += _SECRET
    if extra_module:
        answer += _LABEL
    (folder / "app.py").write_text(_SYNC.format(answer=answer + "    return answer"), encoding="utf-8")
    bundle = Bundle(folder, "app.py:score", "model.pkl", {"age": 41, "balance": 1520.5},
                    kind="raw" if raw_numpy else "sync")
    if env is not None:
        (folder / ".env").write_text("# secrets of the scoring script\n" +
                                     "".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        bundle.env = ".env"
    if extra_module:
        (folder / "labels.py").write_text(_LABELS_MODULE, encoding="utf-8")
        bundle.extra.append("labels.py")
    if requirements is not None:
        (folder / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements), encoding="utf-8")
        bundle.requirements = "requirements.txt"
    _manifest(bundle)
    return bundle


def two_pickle_bundle(folder: Path) -> Bundle:
    """The FastAPI-course case: ``ohe.pkl`` (a OneHotEncoder of ``job``) and ``model.pkl`` glued in the script."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"job": rng.choice(_JOBS, 400), "age": rng.integers(18, 90, 400)})
    ohe = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(frame[["job"]])
    X = np.hstack([ohe.transform(frame[["job"]]), frame[["age"]].to_numpy(dtype=float)])
    y = ((frame["job"] == "management") | (frame["age"] > 60)).astype(int)
    _dump(ohe, folder / "ohe.pkl")
    _dump(LogisticRegression(max_iter=500).fit(X, y), folder / "model.pkl")
    (folder / "app.py").write_text(_TWO_PICKLES, encoding="utf-8")
    bundle = Bundle(folder, "app.py:score", "model.pkl", {"job": "management", "age": 33}, extra=["ohe.pkl"],
                    kind="two-pickle")
    _manifest(bundle)
    return bundle


def async_bundle(folder: Path) -> Bundle:
    """Neomaril's async script: reads the uploaded CSV, writes ``output.csv`` with ``pred`` and ``proba``."""
    folder.mkdir(parents=True, exist_ok=True)
    _dump(_fit(0), folder / "model.pkl")
    (folder / "app.py").write_text(textwrap.dedent(_ASYNC), encoding="utf-8")
    bundle = Bundle(folder, "app.py:score", "model.pkl", {"age": 41, "balance": 1520.5}, mode="async",
                    kind="async")
    _manifest(bundle)
    return bundle
