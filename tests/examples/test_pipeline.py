"""examples/model_deploy_pipeline.py as CI runs it: deploy-or-update, ids in metadata.yaml, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "model_deploy_pipeline.py"


def _run(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=180)


def test_two_argument_form_deploys_then_noops(project, bank_model, cli) -> None:
    first = _run(bank_model, project.credentials, "--json", cwd=project.dir)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert (out["action"], out["revision"], out["target"]) == ("created", 1, "local")
    assert out["smoke_prediction"]["prediction"] in ("yes", "no")
    recorded = yaml.safe_load(project.metadata.read_text())["deployments"]["bank-model"]["local"]
    assert recorded["ids"]["pid"] == out["ids"]["pid"] and recorded["model_sha256"] == out["model_sha256"]
    again = _run(bank_model, project.credentials, cwd=project.dir)
    assert again.returncode == 0 and "unchanged, revision 1" in again.stdout
    assert cli("delete", "bank-model").code == 0


def test_legacy_three_argument_form_uses_project_dir(project, bank_model, cli, tmp_path_factory) -> None:
    proj = tmp_path_factory.mktemp("legacy-project")
    result = _run(bank_model, proj, project.credentials, cwd=project.dir)
    assert result.returncode == 0, result.stderr
    assert "bank-model" in yaml.safe_load((proj / "metadata.yaml").read_text())["deployments"]
    assert not project.metadata.exists()
    assert cli("delete", "bank-model", "--metadata", proj / "metadata.yaml").code == 0


def test_failure_exits_1_with_the_reason(project) -> None:
    result = _run("missing.joblib", project.credentials, cwd=project.dir)
    assert result.returncode == 1 and "'missing.joblib' does not exist" in result.stderr
    usage = _run("only-one-arg", cwd=project.dir)
    assert usage.returncode == 2
