"""``TargetContract``: the deploy flow every target must pass, as a test class to subclass.

    from deploykit.testing import TargetContract

    class TestMyTarget(TargetContract):
        target = "mytarget"
        credentials = "mytarget:\\n  url: http://127.0.0.1:9000\\n"
        bad_credentials = "mytarget:\\n  url: ftp://nowhere\\n"
        bad_credentials_error = r"mytarget.url"

        def remove_outside_deploykit(self, contract, deployment):
            my_platform_client().delete(deployment.ids["id"])   # as an operator would

        def remote_leftovers(self, contract):               # optional: default is the target's list()
            return my_platform_client().everything_named(contract.name)

Every test goes through the public library API (``deploykit.deploy``, ``score``, ``status``,
``rollback``, ``delete``) against the target's real backend. What varies between targets comes
from class attributes and from fixtures the subclass may override: ``contract_project`` (the
project folder and credentials), ``contract_name`` (the deployment name) and ``contract_models``
(two fits, rows they disagree on, a model that fails the smoke test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

if TYPE_CHECKING:
    from deploykit.deployment import Deployment
    from deploykit.payload import Predictions
    from deploykit.testing.models import ContractModels

__all__ = ["NOT_SERVING", "Contract", "TargetContract"]

#: statuses a target may report for a deployment that does not serve; ``get`` must say one of them
NOT_SERVING = frozenset({"stopped", "missing", "failed", "unhealthy", "changed", "deleted"})


@dataclass
class Contract:
    """One contract test's deployment: the target, its name, the project and the models, with the
    library calls bound to them (``contract.deploy(model)``, ``contract.score()``...)."""

    target: str
    name: str
    project: Any
    models: ContractModels
    timeout: float = 300.0

    def deploy(self, model: Path, **kwargs: Any) -> Deployment:
        """``deploykit.deploy(model)`` to this target under this name."""
        import deploykit

        return deploykit.deploy(model, target=self.target, name=self.name, timeout=self.timeout,
                                credentials=self.project.credentials, metadata=self.project.metadata, **kwargs)

    def score(self, rows: list[dict[str, Any]] | None = None) -> Predictions:
        """``deploykit.score`` of ``rows`` (default: the contract rows) through the real endpoint."""
        import deploykit

        return deploykit.score(self.name, rows if rows is not None else self.models.rows, target=self.target,
                               credentials=self.project.credentials, metadata=self.project.metadata)

    def status(self) -> Deployment:
        """``deploykit.status``: the record with its status refreshed from the target."""
        import deploykit

        return deploykit.status(self.name, target=self.target, credentials=self.project.credentials,
                                metadata=self.project.metadata)

    def rollback(self, **kwargs: Any) -> Deployment:
        """``deploykit.rollback`` to the previous revision (or ``to=N``)."""
        import deploykit

        return deploykit.rollback(self.name, target=self.target, timeout=self.timeout,
                                  credentials=self.project.credentials, metadata=self.project.metadata, **kwargs)

    def delete(self) -> Deployment:
        """``deploykit.delete``."""
        import deploykit

        return deploykit.delete(self.name, target=self.target, credentials=self.project.credentials,
                                metadata=self.project.metadata)

    def record(self) -> dict[str, Any] | None:
        """This deployment's record as written in metadata.yaml, or None."""
        import yaml

        metadata = Path(self.project.metadata)
        if not metadata.exists():
            return None
        data = yaml.safe_load(metadata.read_text()) or {}
        found: dict[str, Any] | None = ((data.get("deployments") or {}).get(self.name) or {}).get(self.target)
        return found

    def expected(self, model: Path) -> list[Any]:
        """The labels ``model`` predicts for the contract rows, computed in this process."""
        import pandas as pd

        from deploykit.artifact import load_artifact

        return list(load_artifact(model).predict(pd.DataFrame(self.models.rows)).labels)

    def remote(self) -> list[Deployment]:
        """What the target itself reports for this name (its ``list()``), ignoring metadata.yaml."""
        from deploykit.lifecycle import open_target
        from deploykit.metadata import MetadataStore

        state_dir = MetadataStore(self.project.metadata).state_dir
        return [d for d in open_target(self.target, self.project.credentials, state_dir).list()
                if d.name == self.name]


class TargetContract:
    """The whole deploy flow, as tests a target's test module inherits (name the subclass ``Test...``).

    Set ``target``, ``bad_credentials`` and ``bad_credentials_error``; define
    ``remove_outside_deploykit``; override the ``contract_*`` fixtures where the defaults (the
    ``project`` folder with ``credentials`` written into it, two small scikit-learn fits from
    ``deploykit.testing.models``) do not fit the target.
    """

    #: the registered target name, as passed to ``deploykit.deploy(target=...)``
    target: ClassVar[str] = ""
    #: credentials.yaml text the contract's project uses; None keeps what ``contract_project`` wrote
    credentials: ClassVar[str | None] = None
    #: credentials.yaml text the target must refuse (see ``write_bad_credentials``)
    bad_credentials: ClassVar[str | None] = None
    #: a regular expression the CredentialsError for ``bad_credentials`` must match (name the key)
    bad_credentials_error: ClassVar[str] = ""
    #: seconds a deploy, update or rollback may take
    timeout: ClassVar[float] = 300.0

    # -- what the subclass supplies ----------------------------------------------------------
    @pytest.fixture
    def contract_project(self, project: Any) -> Any:
        """The project folder the contract deploys from (``dir``, ``credentials``, ``metadata``)."""
        if self.credentials is not None:
            project.write_credentials(self.credentials)
        return project

    @pytest.fixture
    def contract_name(self) -> str:
        """The deployment name (override when the backend is shared between tests)."""
        return "contract-model"

    @pytest.fixture(scope="class")
    def contract_models(self, tmp_path_factory: pytest.TempPathFactory) -> ContractModels:
        """Two fits, rows they disagree on, and a model that fails the smoke test."""
        from deploykit.testing.models import two_fits

        return two_fits(tmp_path_factory.mktemp("contract-models"))

    @pytest.fixture
    def contract(self, contract_project: Any, contract_name: str, contract_models: ContractModels) -> Contract:
        """The deployment under test, with the library calls bound to it."""
        if not self.target:
            pytest.fail(f"{type(self).__name__} must set `target` to the registered target name")
        return Contract(self.target, contract_name, contract_project, contract_models, self.timeout)

    def remove_outside_deploykit(self, contract: Contract, deployment: Deployment) -> None:
        """Kill or delete ``deployment`` on the platform without deploykit, as an operator or a crash would."""
        pytest.fail(f"{type(self).__name__} must define remove_outside_deploykit(contract, deployment)")

    def write_bad_credentials(self, contract: Contract) -> None:
        """Make the project's credentials wrong (default: write ``bad_credentials``)."""
        if self.bad_credentials is None:
            pytest.fail(f"{type(self).__name__} must set `bad_credentials` (or define write_bad_credentials)")
        Path(contract.project.credentials).write_text(self.bad_credentials)

    # -- crash safety ----------------------------------------------------------------------------
    def remote_leftovers(self, contract: Contract) -> list[Any]:
        """What exists on the platform for ``contract.name`` (processes, versions, assets...), whatever
        metadata.yaml says; default: the target's ``list()`` entries. Empty after a delete."""
        return contract.remote()

    def interrupt(self, contract: Contract, action: str, model: Path) -> None:
        """Leave ``action`` (create or update) of ``model`` as a process killed right after the target
        call would: a pending operation owned by a dead process, and what the target made."""
        from deploykit.artifact import load_artifact
        from deploykit.lifecycle import _construct, _planned, _recorder
        from deploykit.metadata import MetadataStore
        from deploykit.testing.crash import dead_owner

        store = MetadataStore(contract.project.metadata)
        artifact = load_artifact(model)
        current = store.read().find(contract.name, contract.target)
        revision = 1 if current is None else max(current.revisions) + 1
        op = store.begin(contract.name, contract.target, action=action, revision=revision,  # type: ignore[arg-type]
                         planned=_planned(artifact.sha256, artifact.schema.names,
                                          None if current is None else current.revision), owner=dead_owner())
        tgt, context = _construct(contract.target, contract.project.credentials, store.state_dir, None,
                                  contract.timeout, False)
        with context.noting(_recorder(store, op)):
            made = tgt.deploy(artifact, contract.name) if current is None else tgt.update(current, artifact)
            tgt.wait_ready(made, contract.timeout)

    def _settled(self, contract: Contract, model: Path) -> None:
        from deploykit.metadata import MetadataStore

        dep = contract.deploy(model)
        assert dep.status == "ready"
        assert MetadataStore(contract.project.metadata).pending(contract.name, contract.target) == []
        assert [d.name for d in contract.remote()] == [contract.name], "exactly one serving deployment expected"
        assert contract.score().labels == contract.expected(model)
        contract.delete()
        assert self.remote_leftovers(contract) == [], "delete left something on the platform"

    def test_reconcile_after_interrupted_create(self, contract: Contract) -> None:
        self.interrupt(contract, "create", contract.models.first)
        self._settled(contract, contract.models.first)

    def test_reconcile_after_interrupted_create_then_another_model(self, contract: Contract) -> None:
        self.interrupt(contract, "create", contract.models.first)
        self._settled(contract, contract.models.second)

    def test_reconcile_after_interrupted_update(self, contract: Contract) -> None:
        contract.deploy(contract.models.first)
        self.interrupt(contract, "update", contract.models.second)
        self._settled(contract, contract.models.second)

    def test_reconcile_after_interrupted_update_then_the_old_model(self, contract: Contract) -> None:
        contract.deploy(contract.models.first)
        self.interrupt(contract, "update", contract.models.second)
        self._settled(contract, contract.models.first)

    # -- the contract ------------------------------------------------------------------------------
    def test_models_tell_revisions_apart(self, contract: Contract) -> None:
        models = contract.models
        assert contract.expected(models.first) != contract.expected(models.second), (
            "the two contract models predict the same labels for the contract rows; pick rows they disagree on"
        )

    def test_create(self, contract: Contract) -> None:
        from deploykit.artifact import sha256_of

        dep = contract.deploy(contract.models.first)
        assert (dep.name, dep.target, dep.action, dep.revision, dep.status) == (
            contract.name, contract.target, "created", 1, "ready")
        record = contract.record()
        assert record is not None, "the deployment was not recorded in metadata.yaml"
        assert (record["revision"], record["status"], record["url"]) == (1, "ready", dep.url)
        assert record["model_sha256"] == sha256_of(contract.models.first) == dep.model_sha256
        assert contract.score().labels == contract.expected(contract.models.first)
        assert contract.status().status == "ready"
        assert [d.name for d in contract.remote()] == [contract.name]

    def test_redeploying_the_same_model_changes_nothing(self, contract: Contract) -> None:
        first = contract.deploy(contract.models.first)
        again = contract.deploy(contract.models.first)
        assert (again.action, again.revision, again.url, again.ids) == ("unchanged", 1, first.url, first.ids)
        record = contract.record()
        assert record is not None and (record["revision"], record["history"]) == (1, [])

    def test_update_serves_the_new_model_as_revision_2(self, contract: Contract) -> None:
        contract.deploy(contract.models.first)
        updated = contract.deploy(contract.models.second)
        assert (updated.name, updated.action, updated.revision, updated.status) == (
            contract.name, "updated", 2, "ready")
        assert contract.score().labels == contract.expected(contract.models.second)
        record = contract.record()
        assert record is not None and record["revision"] == 2
        assert [entry["revision"] for entry in record["history"]] == [1]

    def test_failed_smoke_test_on_update_rolls_back(self, contract: Contract) -> None:
        from deploykit.errors import SmokeTestError

        first = contract.deploy(contract.models.first)
        with pytest.raises(SmokeTestError, match=r"revision 2 .*failed.*rolled back to revision 1, which serves again"):
            contract.deploy(contract.models.failing)
        record = contract.record()
        assert record is not None
        assert (record["revision"], record["status"], record["model_sha256"]) == (1, "ready", first.model_sha256)
        assert contract.score().labels == contract.expected(contract.models.first)
        assert contract.status().status == "ready"

    def test_rollback_serves_the_previous_revision(self, contract: Contract) -> None:
        first = contract.deploy(contract.models.first)
        contract.deploy(contract.models.second)
        back = contract.rollback()
        assert (back.action, back.revision, back.status, back.model_sha256) == (
            "rolled-back", 1, "ready", first.model_sha256)
        assert contract.score().labels == contract.expected(contract.models.first)
        record = contract.record()
        assert record is not None and record["revision"] == 1
        assert [entry["revision"] for entry in record["history"]] == [2]

    def test_delete_removes_the_record_and_the_deployment(self, contract: Contract) -> None:
        from deploykit.errors import NotDeployedError

        contract.deploy(contract.models.first)
        gone = contract.delete()
        assert (gone.action, gone.status) == ("deleted", "deleted")
        assert contract.record() is None
        with pytest.raises(NotDeployedError, match=f"no deployment named '{contract.name}'"):
            contract.status()
        assert contract.remote() == []

    def test_status_after_removal_outside_deploykit(self, contract: Contract) -> None:
        from deploykit.errors import DeployKitError

        dep = contract.deploy(contract.models.first)
        self.remove_outside_deploykit(contract, dep)
        status = contract.status()
        assert status.status != "ready" and status.status in NOT_SERVING, (
            f"status of a removed deployment is {status.status!r}; say one of {sorted(NOT_SERVING)}"
        )
        with pytest.raises(DeployKitError):
            contract.score()

    def test_bad_credentials_are_named(self, contract: Contract) -> None:
        from deploykit.errors import CredentialsError

        if not self.bad_credentials_error:
            pytest.fail(f"{type(self).__name__} must set `bad_credentials_error` to what the error must name")
        self.write_bad_credentials(contract)
        with pytest.raises(CredentialsError, match=self.bad_credentials_error):
            contract.deploy(contract.models.first)
        assert contract.record() is None
