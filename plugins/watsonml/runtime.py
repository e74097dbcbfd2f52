"""Which Watson model type and software specification serve an artifact, and the archive Watson stores.

Watson runs a stored model on a fixed runtime ("software specification") whose scikit-learn
version is part of the model type (``scikit-learn_1.6`` on ``runtime-25.1-py3.12``). A pickle is
only guaranteed to load in the scikit-learn version that wrote it, so the artifact's version is
mapped to the nearest runtime that is not older than it (older pickles load in newer
scikit-learn far more often than the reverse); a version newer than every runtime gets the
newest one, with a warning. ``model_type`` and ``software_spec`` in the credentials override
either half.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import DeploymentError

if TYPE_CHECKING:
    from deploykit.artifact import Artifact

__all__ = ["RUNTIMES", "Runtime", "model_archive", "resolve_runtime"]

#: (framework, (major, minor)) -> (Watson model type, software specification name), from IBM's
#: "Supported frameworks and software specifications" table for watsonx.ai Runtime.
RUNTIMES: dict[tuple[str, tuple[int, int]], tuple[str, str]] = {
    ("scikit-learn", (1, 3)): ("scikit-learn_1.3", "runtime-24.1-py3.11"),
    ("scikit-learn", (1, 6)): ("scikit-learn_1.6", "runtime-25.1-py3.12"),
}

#: The file name the ibm-watsonx-ai client itself gives a scikit-learn model inside the archive.
ARCHIVE_MEMBER = "scikit_model.pkl"


@dataclass(frozen=True)
class Runtime:
    """A Watson model type with the software specification that runs it, and why they were chosen."""

    model_type: str
    software_spec: str
    note: str = ""


def _version(text: str | None) -> tuple[int, int] | None:
    parts = (text or "").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def _spec_for_type(model_type: str) -> str | None:
    return next((spec for (mtype, spec) in RUNTIMES.values() if mtype == model_type), None)


def _type_for_spec(software_spec: str, framework: str) -> str | None:
    return next((mtype for (fw, _), (mtype, spec) in RUNTIMES.items() if spec == software_spec and fw == framework), None)


def resolve_runtime(artifact: Artifact, model_type: str | None = None, software_spec: str | None = None) -> Runtime:
    """The model type and software specification for ``artifact``; the two arguments override the table.

    Raises DeploymentError naming the framework when neither the table nor the overrides say
    how Watson should run the model.
    """
    known = sorted(v for (fw, v) in RUNTIMES if fw == artifact.framework)
    if model_type and software_spec:
        return Runtime(model_type, software_spec, "set in the credentials")
    if not known:
        raise DeploymentError(
            f"Watson has no built-in model type for a {artifact.framework} {artifact.framework_version or ''} model "
            f"({artifact.path.name}); deploykit maps scikit-learn only. Set watsonml.model_type and "
            "watsonml.software_spec in credentials.yaml (e.g. model_type: xgboost_2.1, "
            "software_spec: runtime-25.1-py3.12) to the pair Watson lists for your framework"
        )
    have = _version(artifact.framework_version)
    note = ""
    if have is None:
        chosen = known[-1]
        note = f"{artifact.framework} version unknown; using the newest runtime"
    else:
        newer = [v for v in known if v >= have]
        chosen = newer[0] if newer else known[-1]
        if chosen != have:
            fw = artifact.framework
            note = (f"{fw} {artifact.framework_version} has no Watson runtime of its own; using "
                    f"{RUNTIMES[(fw, chosen)][0]} on {RUNTIMES[(fw, chosen)][1]}")
            if not newer:
                note += (f". The model was pickled by a newer {fw} than that runtime has and may not load: "
                         f"train it with {fw} {chosen[0]}.{chosen[1]}, or set watsonml.model_type and "
                         "watsonml.software_spec")
    default_type, default_spec = RUNTIMES[(artifact.framework, chosen)]
    if model_type:
        return Runtime(model_type, _spec_for_type(model_type) or default_spec, "model_type set in the credentials")
    if software_spec:
        return Runtime(_type_for_spec(software_spec, artifact.framework) or default_type, software_spec,
                       "software_spec set in the credentials")
    return Runtime(default_type, default_spec, note)


@contextlib.contextmanager
def model_archive(artifact: Artifact, folder: Path) -> Iterator[Path]:
    """A ``.tar.gz`` holding the model as ``scikit_model.pkl``, removed afterwards.

    The model file is archived byte for byte (the bytes whose sha256 deploykit records);
    a model without a single file (an MLflow directory) is serialised with joblib.
    Uploading an archive also keeps the client on its httpx path, which honours ``verify``
    (its object upload path does not in IBM Cloud mode).
    """
    if artifact.flavor == "mlflow":
        raise DeploymentError(
            f"{artifact.path.name} is an MLflow python_function model; Watson stores framework models "
            "(scikit-learn pickles), not MLflow wrappers: deploy the MLflow model saved with mlflow.sklearn, "
            "or its joblib file"
        )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="watsonml-", dir=folder))
    try:
        archive = tmp / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            if artifact.path.is_file() and artifact.flavor in ("joblib", "pickle"):
                tar.add(str(artifact.path), arcname=ARCHIVE_MEMBER)
            else:
                data = _joblib_bytes(artifact.model)
                info = tarfile.TarInfo(ARCHIVE_MEMBER)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        yield archive
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _joblib_bytes(model: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()
