"""The pyfunc model a scoring-script bundle is logged as: MLflow's scoring server runs the user's script.

Vendored: this file is shipped with every bundle version (``code_paths``, as the top-level module
``deploykit_bundle_model``) and imports only the standard library, mlflow and pandas, so the
registered version serves wherever MLflow does (``mlflow models serve`` on a machine without
deploykit, an env-manager virtualenv built from the model's requirements.txt, MLflow's SageMaker
image). The pickled :class:`BundleModel` holds no state and no code, only a reference to this
module; the bundle folder is the model's ``bundle`` artifact.

It keeps Neomaril's sync contract exactly as ``deploykit.bundle.ScriptModel`` does (a test holds
the two in step): ``load_context`` sets ``modelFileName`` and the env file's variables in this
process, puts the bundle folder on ``sys.path`` and imports the entrypoints; ``predict`` calls
``process(data, base_path)`` (if any) and ``score(data, base_path)`` once per request row, with
the row as JSON text and ``base_path`` ending with ``/``, and answers one table row per call.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

__all__ = ["ARTIFACT", "BundleModel", "read_env_file"]

#: The name of the bundle folder in the model's ``artifacts``.
ARTIFACT = "bundle"
_MANIFEST = "deploykit.yaml"
_BAD_INPUT = (ValueError, KeyError, TypeError, IndexError)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines, ``#`` comments, optional ``export`` and quotes (as ``deploykit.bundle``).
    A bad line names its number, never its content (values may be secrets)."""
    variables: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise ValueError(f"the env file of the bundle has a line that is not KEY=value (line {number})")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[key] = value
    return variables


def plain(value: Any) -> Any:
    """``value`` as JSON-safe Python: numpy scalars and arrays, pandas values and NaN converted."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if value is None or isinstance(value, (str, int, bool)):
        return value
    module = type(value).__module__.split(".")[0]
    if module in ("numpy", "pandas"):
        if hasattr(value, "tolist"):  # numpy arrays and scalars, pandas Series and arrays
            return plain(value.tolist())
        if hasattr(value, "isoformat"):  # pandas Timestamp
            return value.isoformat()
        if value is pd.NaT or value is pd.NA:
            return None
        if hasattr(value, "item"):
            return plain(value.item())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class BundleModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """The user's sync scoring script behind MLflow's pyfunc interface."""

    def load_context(self, context: Any) -> None:
        """Read the manifest, set the script's environment variables, import its entrypoints."""
        import importlib.util

        import yaml

        folder = Path(context.artifacts[ARTIFACT])
        manifest = yaml.safe_load((folder / _MANIFEST).read_text(encoding="utf-8"))
        variables = {}
        if manifest.get("model_file"):
            variables["modelFileName"] = str(manifest["model_file"])
        if manifest.get("env"):
            variables.update(read_env_file(folder / manifest["env"]))
        os.environ.update(variables)
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))  # extra modules beside the script import by name
        self.base_path = str(folder) + os.sep

        def entry(text: str) -> Any:
            file, func = text.split(":")
            spec = importlib.util.spec_from_file_location(Path(file).stem, folder / file)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(spec.name, module)
            try:
                spec.loader.exec_module(module)
            except BaseException as exc:
                raise ImportError(f"importing the script {file!r} failed: {type(exc).__name__}: {exc}; "
                                  "fix the script and deploy again") from exc
            return getattr(module, func)

        self._score = entry(str(manifest["entrypoint"]))
        self._pre = entry(str(manifest["preprocess"])) if manifest.get("preprocess") else None

    def score_row(self, data: str) -> Any:
        """One call of the script: ``process`` (if any), then ``score``; the JSON-safe answer
        (a returned JSON string is parsed). Raises what the script raised."""
        if self._pre is not None:
            pre = self._pre(data, self.base_path)
            data = pre if isinstance(pre, str) else json.dumps(plain(pre))
        result = self._score(data, self.base_path)
        if isinstance(result, bytes):
            result = result.decode("utf-8")
        if isinstance(result, str):
            try:
                return json.loads(result)
            except ValueError:
                raise ValueError(f"the script returned text that is not JSON: {result[:80]!r}") from None
        return plain(result)

    # MLflow reads these hints at runtime: a DataFrame hint means "no type-hint schema".
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Score each request row with the script: one table row per row, the script's keys as columns
        (an answer that is not an object goes in a ``prediction`` column)."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import BAD_REQUEST, INTERNAL_ERROR

        rows = [plain(row) for row in model_input.to_dict(orient="records")]
        answers = []
        for row in rows:
            try:
                answer = self.score_row(json.dumps(row))
            except Exception as exc:
                print(traceback.format_exc(), file=sys.stderr, flush=True)  # the server log keeps the traceback
                raise MlflowException(f"the scoring script raised {type(exc).__name__}: {exc}",
                                      error_code=BAD_REQUEST if isinstance(exc, _BAD_INPUT)
                                      else INTERNAL_ERROR) from None
            answers.append(answer if isinstance(answer, dict) else {"prediction": answer})
        return pd.DataFrame.from_records(answers) if answers else pd.DataFrame({"prediction": []})
