"""MLflow model directories on SageMaker through MLflow's pyfunc serving image contract: the directory's
files at the tarball's root, ``MLFLOW_DEPLOYMENT_FLAVOR_NAME=python_function`` and
``SERVING_ENVIRONMENT=SageMaker`` in the container environment, the ``image_uri`` the user gives. The
emulator runs MLflow's own scoring server on the extracted directory (what that image's ``serve``
does), so the answers are MLflow's; without ``image_uri`` the directory is refused with the fix named."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import joblib
import pandas as pd
import pytest

import deploykit
from deploykit.errors import DeploymentError
from tests.plugins.sagemaker.conftest import BUCKET, SageMakerProject, leftovers

NAME = "bank-mlflow"
#: mlflow.types.utils warns that the example's integer columns cannot hold missing values
pytestmark = pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.1.0"


@pytest.fixture
def mlflow_dir(tmp_path: Path, bank_model: Path, bank_rows: list[dict]) -> Path:
    """The example classifier saved as an MLflow model directory with a signature."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model, frame = joblib.load(bank_model), pd.DataFrame(bank_rows)
    folder = tmp_path / NAME
    mlflow.sklearn.save_model(model, folder, serialization_format="cloudpickle", input_example=frame.head(1),
                              signature=infer_signature(frame, model.predict(frame)))
    return folder


def test_mlflow_directory_serves_through_the_pyfunc_image_contract(sm_project: SageMakerProject, mlflow_dir: Path,
                                                                    bank_model: Path, bank_rows: list[dict]) -> None:
    sm_project.write_credentials(image_uri=IMAGE)
    dep = deploykit.deploy(mlflow_dir, name=NAME, timeout=180, **sm_project.kwargs(NAME))
    assert (dep.action, dep.status, dep.ids["image_uri"]) == ("created", "ready", IMAGE)

    model = sm_project.emulator.moto("sagemaker").describe_model(ModelName=dep.ids["model_name"])["PrimaryContainer"]
    assert model["Image"] == IMAGE
    env = model["Environment"]
    assert (env["MLFLOW_DEPLOYMENT_FLAVOR_NAME"], env["SERVING_ENVIRONMENT"]) == ("python_function", "SageMaker")
    assert "SAGEMAKER_PROGRAM" not in env
    key = dep.ids["model_data_url"].removeprefix(f"s3://{BUCKET}/")
    body = sm_project.emulator.moto("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {"MLmodel", "model.pkl"} <= names and not any(n.startswith("code/") for n in names)

    predictions = deploykit.score(NAME, bank_rows, **sm_project.kwargs(NAME))
    assert predictions.labels == joblib.load(bank_model).predict(pd.DataFrame(bank_rows)).tolist()

    deploykit.delete(NAME, **sm_project.kwargs(NAME))
    assert leftovers(sm_project.emulator, NAME) == []


def test_mlflow_directory_without_image_uri_is_refused(sm_project: SageMakerProject, mlflow_dir: Path) -> None:
    with pytest.raises(DeploymentError, match="MLflow model directory.*sagemaker.image_uri.*build-and-push-container"):
        deploykit.deploy(mlflow_dir, name=NAME, timeout=60, **sm_project.kwargs(NAME))
    assert leftovers(sm_project.emulator, NAME) == []
