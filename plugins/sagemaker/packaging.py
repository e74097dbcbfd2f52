"""``model.tar.gz`` for SageMaker's scikit-learn container: the model, its schema, deploykit's handlers.

Layout (extracted by SageMaker into ``/opt/ml/model``)::

    model.joblib              the model file, byte for byte (its sha256 is in deploykit.json)
    schema.json               the input schema the handlers enforce
    deploykit.json            manifest: model file name, sha256, classes
    code/inference.py         model_fn / input_fn / predict_fn / output_fn (deploykit_plugins.sagemaker.inference)
    code/_dkserve/...         deploykit's codecs and schema check, vendored (imports renamed)

The container has no deploykit, so what ``inference.py`` needs is shipped under ``code/``:
deploykit's ``errors``, ``schema``, ``inference`` and ``payload`` modules with every
``deploykit.`` import renamed to ``_dkserve.``, and a stand-in for the plugin hook marker. No
``requirements.txt`` is written: nothing is installed at start, so network isolation works.
The archive is deterministic (sorted entries, zero mtimes), so the same model gives the same bytes.

A scoring-script bundle (``artifact.flavor == "script"``, see ``deploykit.bundle``) is packed as::

    bundle/...                the staged bundle folder, file for file (the script, model file,
                              extras, schema, manifest; ``.env`` with mode 0600): ``base_path``
    deploykit.json            manifest: ``{"bundle": <the bundle's manifest>, "bundle_sha256": ...}``
    code/inference.py         the same handlers; model_fn builds deploykit's ScriptModel on bundle/
    code/_dkserve/bundle.py   deploykit.bundle, vendored like the codecs
    code/requirements.txt     the bundle's requirements file, which the container pip-installs at start

The env file travels only inside the tarball (never in the model's Environment or a tag):
``model_fn`` reads it in the container and sets its variables there, with ``modelFileName``.

An MLflow model directory (an ``MLmodel`` file inside) is packed for MLflow's pyfunc serving image
instead (``mlflow sagemaker build-and-push-container``): the directory's files at the archive's
root, as ``mlflow.sagemaker`` packs them, so ``/opt/ml/model/MLmodel`` is what the image's
``serve`` entry point loads; no deploykit code is added (MLflow's scoring server answers).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploykit.artifact import Artifact

__all__ = ["BUNDLE_DIR", "VENDORED", "build_model_tarball", "code_files", "is_bundle", "is_mlflow_model"]

#: deploykit modules shipped inside the tarball (paths relative to the deploykit package), besides
#: every module of ``deploykit/payload`` (the codecs register each other on import, so a codec added
#: there must travel too).
VENDORED = ("errors.py", "schema.py", "inference.py", "bundle.py")
_PACKAGE = "_dkserve"
#: The folder of the tarball (of ``/opt/ml/model``) a bundle's files are in: the script's ``base_path``.
BUNDLE_DIR = "bundle"
_PRIVATE = 0o600
_IMPORT = re.compile(r"\bdeploykit\.(?=[a-z_])(?!(?:yaml|json)\b)")  # modules, not deploykit.yaml/.json files
_SHIMS = {
    "__init__.py": '"""deploykit\'s codecs and schema check, vendored for the SageMaker container (no deploykit there)."""\n',
    "hookspecs.py": ('"""Stand-in for deploykit.hookspecs: the codecs register directly, no plugin manager."""\n\n'
                     "from typing import Any\n\n\ndef hookimpl(function: Any = None, **_: Any) -> Any:\n"
                     '    """Return the function unchanged (pluggy is not in the container)."""\n'
                     "    return function if function is not None else (lambda f: f)\n"),
}


def code_files() -> dict[str, bytes]:
    """Every file under ``code/`` in the tarball: name -> bytes."""
    import deploykit

    root = Path(deploykit.__file__).parent
    files = {"code/inference.py": (Path(__file__).parent / "inference.py").read_bytes()}
    for name, text in _SHIMS.items():
        files[f"code/{_PACKAGE}/{name}"] = text.encode()
    payload = sorted(f"payload/{p.name}" for p in (root / "payload").glob("*.py"))
    for rel in (*VENDORED, *payload):
        source = (root / rel).read_text(encoding="utf-8")
        files[f"code/{_PACKAGE}/{rel}"] = _IMPORT.sub(f"{_PACKAGE}.", source).encode()
    return files


def is_mlflow_model(artifact: Artifact) -> bool:
    """True when ``artifact`` is an MLflow model directory (packed for MLflow's pyfunc serving image)."""
    return artifact.path.is_dir() and (artifact.path / "MLmodel").is_file()


def is_bundle(artifact: Artifact) -> bool:
    """True when ``artifact`` is a scoring-script bundle (``deploykit.bundle``)."""
    return artifact.flavor == "script"


def _mlflow_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def build_model_tarball(artifact: Artifact, dest: Path) -> tuple[Path, str]:
    """Write ``dest`` (model.tar.gz) for ``artifact``; return its path and sha256 hex."""
    private: set[str] = set()
    if is_bundle(artifact):
        files, private = _bundle_files(artifact)
    elif is_mlflow_model(artifact):
        files = _mlflow_files(artifact.path)
    else:
        files = _sklearn_files(artifact)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), _PRIVATE if name in private else 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return dest, hashlib.sha256(dest.read_bytes()).hexdigest()


def _sklearn_files(artifact: Artifact) -> dict[str, bytes]:
    """The scikit-learn container's layout: the model file, schema, manifest and ``code/``."""
    suffix = artifact.path.suffix if artifact.path.suffix in (".joblib", ".pkl", ".pickle") else ".joblib"
    model_file = f"model{suffix}"
    manifest = {"model_file": model_file, "model_sha256": artifact.sha256, "classes": artifact.classes,
                "framework": artifact.framework, "framework_version": artifact.framework_version,
                "source": artifact.path.name}
    files = {model_file: artifact.path.read_bytes(),
             "schema.json": json.dumps(artifact.schema.to_dict(), indent=1, default=str).encode(),
             "deploykit.json": json.dumps(manifest, indent=1, default=str).encode(), **code_files()}
    return files


def _bundle_files(artifact: Artifact) -> tuple[dict[str, bytes], set[str]]:
    """A bundle's layout: its staged folder under ``bundle/``, the manifest, ``code/`` and the
    requirements as ``code/requirements.txt``; and the names to pack with mode 0600 (the env file)."""
    manifest = dict(artifact.extra["bundle"])
    folder = artifact.path
    files = {f"{BUNDLE_DIR}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    private = {f"{BUNDLE_DIR}/{manifest['env']}"} if manifest.get("env") else set()
    files["deploykit.json"] = json.dumps({"bundle": manifest, "bundle_sha256": artifact.sha256,
                                          "bundle_dir": BUNDLE_DIR}, indent=1, sort_keys=True).encode()
    files.update(code_files())
    if manifest.get("requirements"):
        files["code/requirements.txt"] = (folder / manifest["requirements"]).read_bytes()
    return files, private
