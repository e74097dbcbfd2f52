"""The sample target: a Deployer and Scorer whose platform is a JSON file and a folder of models."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from deploykit.artifact import Artifact, load_artifact
from deploykit.deployment import Deployment
from deploykit.errors import CredentialsError, DeployKitError, DeploymentError, ScoringError
from deploykit.target import TargetContext

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.payload import Predictions

__all__ = ["PLATFORM_KEY", "SampleSettings", "SampleTarget"]

#: the one API key the sample platform accepts
PLATFORM_KEY = "sample-key"


class SampleSettings(BaseModel):
    """The ``sample:`` section of credentials.yaml."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr = Field(description="the platform's API key")
    folder: str = Field("sample", description="the platform's folder, below the project's .deploykit/")


class SampleTarget:
    """Deployments as entries of ``<state_dir>/<folder>/deployments.json``."""

    def __init__(self, context: TargetContext) -> None:
        self.context = context
        self.settings: SampleSettings = context.settings
        self.root = context.state_dir / self.settings.folder

    # -- the "platform" -----------------------------------------------------------------------
    def _login(self) -> None:
        if self.settings.api_key.get_secret_value() != PLATFORM_KEY:
            raise CredentialsError("sample.api_key was rejected by the sample platform; set sample.api_key in "
                                   "credentials.yaml to the platform's key")

    @property
    def _index(self) -> Path:
        return self.root / "deployments.json"

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self._index.read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return {}

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._index.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, self._index)

    def _keep(self, artifact: Artifact) -> dict[str, str]:
        folder = self.root / "models" / artifact.sha256
        folder.mkdir(parents=True, exist_ok=True)
        model = folder / ("model" + "".join(artifact.path.suffixes))
        if not model.exists():
            shutil.copy2(artifact.path, model)
        schema = folder / "schema.json"
        schema.write_text(json.dumps(artifact.schema.to_dict()))
        return {"model_file": str(model), "schema_file": str(schema)}

    def _serve(self, name: str, dep_id: str, revision: int, files: dict[str, str], sha256: str | None) -> Deployment:
        entries = self._read()
        entries[name] = {"id": dep_id, "revision": revision, "sha256": sha256, **files}
        self._write(entries)
        return Deployment(name=name, target="sample", revision=revision, status="starting",
                          url=f"sample://{dep_id}", ids={"deployment_id": dep_id, **files})

    # -- Deployer --------------------------------------------------------------------------------
    def deploy(self, artifact: Artifact, name: str) -> Deployment:
        """Keep a copy of the model and add an entry for it."""
        self._login()
        return self._serve(name, f"{name}-{uuid.uuid4().hex[:8]}", 1, self._keep(artifact), artifact.sha256)

    def update(self, current: Deployment, artifact: Artifact) -> Deployment:
        """Point the entry at the new model (same id)."""
        self._login()
        return self._serve(current.name, current.ids["deployment_id"], current.revision + 1, self._keep(artifact),
                           artifact.sha256)

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        """Point the entry at ``previous``'s kept model again."""
        self._login()
        files = {k: previous.ids[k] for k in ("model_file", "schema_file") if k in previous.ids}
        if not Path(files.get("model_file", "")).is_file():
            raise DeploymentError(f"revision {previous.revision}'s kept model {files.get('model_file')!r} is gone; "
                                  "deploy that model file again instead of rolling back")
        return self._serve(current.name, current.ids["deployment_id"], previous.revision, files,
                           previous.model_sha256)

    def delete(self, current: Deployment) -> None:
        """Remove the entry (kept models stay, as a registry keeps versions)."""
        self._login()
        entries = self._read()
        if entries.get(current.name, {}).get("id") == current.ids.get("deployment_id"):
            del entries[current.name]
            self._write(entries)

    def get(self, current: Deployment) -> Deployment:
        """``ready`` when the entry exists with this deployment's id, else ``missing``."""
        self._login()
        refreshed = Deployment.from_dict(current.name, current.target, current.to_dict())
        entry = self._read().get(current.name)
        refreshed.status = "ready" if entry and entry["id"] == current.ids.get("deployment_id") else "missing"
        return refreshed

    def list(self) -> list[Deployment]:
        """Every entry on the platform."""
        self._login()
        return [Deployment(name=name, target="sample", revision=e["revision"], status="ready",
                           url=f"sample://{e['id']}", model_sha256=e["sha256"], ids={"deployment_id": e["id"]})
                for name, e in sorted(self._read().items())]

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        """The entry is written synchronously: ready once it is there."""
        if self._read().get(deployment.name, {}).get("id") != deployment.ids.get("deployment_id"):
            raise DeploymentError(f"sample deployment {deployment.name!r} vanished while starting; deploy it again")
        deployment.status = "ready"
        return deployment

    # -- Scorer ------------------------------------------------------------------------------------
    def score(self, deployment: Deployment, frame: pd.DataFrame) -> Predictions:
        """Load the entry's model and predict ``frame`` in process."""
        entry = self._read().get(deployment.name)
        if not entry or entry["id"] != deployment.ids.get("deployment_id"):
            raise ScoringError(f"sample deployment {deployment.name!r} is missing on the platform; deploy it again")
        artifact = load_artifact(entry["model_file"], entry.get("schema_file"))
        validated = artifact.schema.validate(frame) if artifact.schema.columns else frame
        try:
            return artifact.predict(validated)  # type: ignore[no-any-return]
        except DeployKitError:
            raise
        except Exception as exc:
            raise ScoringError(f"sample deployment {deployment.name!r}: the model raised "
                               f"{type(exc).__name__}: {exc}") from exc
