"""The watsonml target end to end: IBM's real ibm-watsonx-ai client against the Watson emulator over HTTPS.

TestWatsonTarget runs the TargetContract in both modes (Cloud Pak for Data and IBM Cloud); the other
tests check what only Watson has (asset revisions, batch deployments, spaces, legacy files)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

import deploykit
from deploykit.testing import TargetContract
from deploykit_plugins.watsonml.batch import score_batch
from tests.plugins.watsonml.conftest import WatsonProject, expected


class TestWatsonTarget(TargetContract):
    target = "watsonml"
    bad_credentials_error = r"(?s)rejected.*watsonml\.api_?key|watsonml\.api_?key.*rejected"

    @pytest.fixture
    def contract_project(self, watson_project: WatsonProject) -> WatsonProject:
        return watson_project

    @pytest.fixture
    def contract_models(self, bank_contract_models):
        return bank_contract_models

    def write_bad_credentials(self, contract) -> None:
        key = "api_key" if contract.project.mode == "cpd" else "apikey"
        contract.project.write_credentials(**{key: "wrong-key-123"})

    def remove_outside_deploykit(self, contract, deployment) -> None:
        from deploykit.lifecycle import open_target

        project = contract.project
        target = open_target("watsonml", project.credentials, project.dir / ".deploykit")
        dep_id = deployment.ids["deployment_uid"]
        target.session.call("deleting by hand", lambda client: client.deployments.delete(dep_id))
        assert dep_id not in project.emulator.deployments


def test_deploy_score_update_rollback_delete(watson_project: WatsonProject, bank_model, bank_model_v2, bank_rows,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    emu = watson_project.emulator
    created = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert (created.action, created.revision, created.status) == ("created", 1, "ready")
    ids = created.ids
    assert ids["space_id"] == emu.space_id and ids["model_rev"] == "1"
    assert ids["model_type"] == "scikit-learn_1.6" and ids["software_spec"] == "runtime-25.1-py3.12"
    assert set(emu.models) == {ids["model_uid"]} and set(emu.deployments) == {ids["deployment_uid"]}
    assert created.url == f"{emu.url}/ml/v4/deployments/{ids['deployment_uid']}/predictions"
    assert emu.deployments[ids["deployment_uid"]].doc["entity"]["asset"] == {"id": ids["model_uid"], "rev": "1"}

    labels, probabilities = expected(bank_model, bank_rows)
    scored = deploykit.score("bank-model", bank_rows)
    assert scored.labels == labels
    assert sum(scored.probabilities, []) == pytest.approx(sum(probabilities, []))
    assert scored.classes == ["no", "yes"]
    one = deploykit.score("bank-model", {"input_data": [{"fields": list(bank_rows[0]), "values": [list(bank_rows[0].values())]}]})
    assert one.labels == labels[:1]

    stored_models = len(emu.calls("POST", r"^/ml/v4/models$"))
    again = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert (again.action, again.revision) == ("unchanged", 1)
    assert len(emu.calls("POST", r"^/ml/v4/models$")) == stored_models

    updated = deploykit.deploy(bank_model_v2, target="watsonml", name="bank-model")
    assert (updated.action, updated.revision, updated.url) == ("updated", 2, created.url)
    assert updated.ids["deployment_uid"] == ids["deployment_uid"] and updated.ids["model_uid"] == ids["model_uid"]
    assert updated.ids["model_rev"] == "2"
    labels_v2, probabilities_v2 = expected(bank_model_v2, bank_rows)
    assert probabilities_v2 != probabilities  # so the answers tell the revisions apart
    scored_v2 = deploykit.score("bank-model", bank_rows)
    assert scored_v2.labels == labels_v2
    assert sum(scored_v2.probabilities, []) == pytest.approx(sum(probabilities_v2, []))

    back = deploykit.rollback("bank-model")
    assert (back.action, back.revision, back.url) == ("rolled-back", 1, created.url)
    assert back.ids["model_rev"] == "1" and back.ids["deployment_uid"] == ids["deployment_uid"]
    after_rollback = deploykit.score("bank-model", bank_rows)
    assert after_rollback.labels == labels and after_rollback.classes == ["no", "yes"]
    assert sum(after_rollback.probabilities, []) == pytest.approx(sum(probabilities, []))

    record = watson_project.record()
    assert record["revision"] == 1 and record["model_sha256"] == created.model_sha256
    assert [entry["revision"] for entry in record["history"]] == [2]
    assert record["history"][0]["ids"]["model_rev"] == "2"
    assert "test-api-key" not in watson_project.metadata.read_text()
    assert deploykit.status("bank-model").status == "ready"

    deploykit.delete("bank-model")
    assert emu.models == {} and emu.deployments == {}
    assert yaml.safe_load(watson_project.metadata.read_text())["deployments"] == {}
    assert capsys.readouterr().out == ""  # the client's prints never reach our stdout


def test_batch_scoring_from_a_frame_and_a_csv_file(watson_project: WatsonProject, bank_model, bank_rows) -> None:
    emu = watson_project.emulator
    deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    labels, probabilities = expected(bank_model, bank_rows)

    from_frame = score_batch("bank-model", pd.DataFrame(bank_rows))
    assert from_frame.labels == labels
    assert sum(from_frame.probabilities, []) == pytest.approx(sum(probabilities, []))
    batch_id = watson_project.record()["ids"]["batch_deployment_uid"]
    assert "batch" in emu.deployments[batch_id].doc["entity"]

    csv = watson_project.dir / "rows.csv"
    pd.DataFrame(bank_rows[:5]).to_csv(csv, index=False)
    assert score_batch("bank-model", csv).labels == labels[:5]
    assert watson_project.record()["ids"]["batch_deployment_uid"] == batch_id  # reused, not created again
    assert emu.jobs == {}  # each job is removed once read

    deploykit.delete("bank-model")
    assert emu.models == {} and emu.deployments == {}


def test_batch_deployment_follows_an_update(cpd_project: WatsonProject, bank_model, bank_model_v2, bank_rows) -> None:
    deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert score_batch("bank-model", bank_rows).labels == expected(bank_model, bank_rows)[0]
    deploykit.deploy(bank_model_v2, target="watsonml", name="bank-model")
    probabilities = score_batch("bank-model", bank_rows).probabilities
    assert sum(probabilities, []) == pytest.approx(sum(expected(bank_model_v2, bank_rows)[1], []))


def test_space_name_is_resolved_to_its_id(cpd_project: WatsonProject, bank_model) -> None:
    emu = cpd_project.emulator
    emu.add_space("someone-else")
    cpd_project.write_credentials(space_id=None, space_name=emu.space_name)
    dep = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert dep.ids["space_id"] == emu.space_id


def test_status_and_list_report_watson_state(cpd_project: WatsonProject, bank_model) -> None:
    from deploykit.lifecycle import open_target

    emu = cpd_project.emulator
    dep = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    target = open_target("watsonml", cpd_project.credentials, cpd_project.dir / ".deploykit")
    listed = target.list()
    assert [(d.name, d.status, d.ids["deployment_uid"]) for d in listed] == [("bank-model", "ready", dep.ids["deployment_uid"])]

    gets = len(emu.calls("GET", r"^/ml/v4/deployments/"))
    assert target.get(dep).status == "ready"
    assert len(emu.calls("GET", r"^/ml/v4/deployments/")) == gets + 1  # get() is one GET

    dep_id, model_uid = dep.ids["deployment_uid"], dep.ids["model_uid"]

    def switch_outside_deploykit(client):  # someone points the deployment at another revision by hand
        rev = client.repository.create_model_revision(model_uid)["metadata"]["rev"]
        asset = {client.deployments.ConfigurationMetaNames.ASSET: {"id": model_uid, "rev": rev}}
        return client.deployments.update(dep_id, asset, background_mode=True)

    target.session.call("switching by hand", switch_outside_deploykit)
    assert target.get(dep).status == "changed"
    target.session.call("deleting by hand", lambda client: client.deployments.delete(dep_id))
    assert deploykit.status("bank-model").status == "missing"


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # the raw client's own warnings
def test_flat_legacy_files_of_an_older_watson_script_keep_working(project, watson_emulator, watson_client, bank_model,
                                                                   bank_model_v2, bank_rows) -> None:
    """A seed-era project: flat credentials.yaml and flat model_uid/deployment_uid in metadata.yaml."""
    import joblib

    emu = watson_emulator
    client = watson_client("cloud")
    names = client.repository.ModelMetaNames
    details = client.repository.store_model(joblib.load(bank_model), {
        names.NAME: "bank-model", names.TYPE: "scikit-learn_1.6",
        names.SOFTWARE_SPEC_ID: client.software_specifications.get_id_by_name("runtime-25.1-py3.12")})
    model_uid = client.repository.get_model_id(details)
    meta = client.deployments.ConfigurationMetaNames
    deployment_uid = client.deployments.get_id(
        client.deployments.create(model_uid, {meta.NAME: "bank-model", meta.ONLINE: {}}, background_mode=True))
    creds = emu.credentials("cloud")
    project.credentials.write_text(yaml.safe_dump({
        "url": creds["url"], "apikey": creds["api_key"], "space_id": emu.space_id,
        "platform_url": creds["platform_url"], "auth_url": creds["auth_url"], "verify": creds["verify"]}))
    project.metadata.write_text(yaml.safe_dump({"model_uid": model_uid, "deployment_uid": deployment_uid,
                                                "space_id": emu.space_id}))

    dep = deploykit.deploy(bank_model_v2, target="watsonml", name="bank-model")
    assert dep.action == "updated" and dep.ids["deployment_uid"] == deployment_uid
    probabilities = deploykit.score("bank-model", bank_rows).probabilities
    assert sum(probabilities, []) == pytest.approx(sum(expected(bank_model_v2, bank_rows)[1], []))
    flat = yaml.safe_load(project.metadata.read_text())
    assert (flat["model_uid"], flat["deployment_uid"]) == (dep.ids["model_uid"], deployment_uid)


def test_a_new_model_type_goes_into_a_new_asset_and_rollback_returns(cpd_project: WatsonProject, bank_model,
                                                                     bank_model_v2, bank_rows) -> None:
    emu = cpd_project.emulator
    cpd_project.write_credentials(model_type="scikit-learn_1.3")
    first = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert (first.ids["model_type"], first.ids["software_spec"]) == ("scikit-learn_1.3", "runtime-24.1-py3.11")

    cpd_project.write_credentials()  # back to the mapping: scikit-learn_1.6, which a stored model cannot change to
    second = deploykit.deploy(bank_model_v2, target="watsonml", name="bank-model")
    assert second.ids["model_uid"] != first.ids["model_uid"] and second.ids["deployment_uid"] == first.ids["deployment_uid"]
    assert set(emu.models) == {first.ids["model_uid"], second.ids["model_uid"]}

    back = deploykit.rollback("bank-model")
    assert (back.ids["model_uid"], back.ids["model_rev"]) == (first.ids["model_uid"], "1")
    probabilities = deploykit.score("bank-model", bank_rows).probabilities
    assert sum(probabilities, []) == pytest.approx(sum(expected(bank_model, bank_rows)[1], []))

    deploykit.delete("bank-model")
    assert emu.models == {} and emu.deployments == {}
