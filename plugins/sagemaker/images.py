"""The scikit-learn framework container's image URI: the ECR account per region and the inference versions.

Vendored from sagemaker-core's ``image_uri_config/sklearn.json`` (inference scope; see
shared/reference/sagemaker.md §1.2) instead of depending on the SageMaker SDK, which pulls in
half of PyPI. A pickle must be loaded by the scikit-learn it was written with, so the image is
picked by the model's scikit-learn major.minor; a version with no image is refused with the
list, unless ``sagemaker.image_uri`` names an image explicitly.
"""

from __future__ import annotations

from deploykit.errors import DeploymentError

__all__ = ["REGISTRIES", "VERSIONS", "image_uri", "supported_versions"]

#: sklearn major.minor -> the container's inference version tag.
VERSIONS: dict[str, str] = {
    "0.23": "0.23-1",
    "1.0": "1.0-1",
    "1.2": "1.2-1",
    "1.4": "1.4-2-py312",
    "1.9": "1.9-0",
}

#: region -> the AWS account that publishes sagemaker-scikit-learn there (the same for every version).
REGISTRIES: dict[str, str] = {
    "us-east-1": "683313688378", "us-east-2": "257758044811", "us-west-1": "746614075791",
    "us-west-2": "246618743249", "ap-northeast-1": "354813040037", "ap-south-1": "720646828776",
    "sa-east-1": "737474898029", "eu-west-1": "141502667606", "eu-west-2": "764974769150",
    "eu-central-1": "492215442770", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    "ca-central-1": "341280168497", "cn-north-1": "450853457545",
}


def supported_versions() -> str:
    """The scikit-learn versions with a container, for messages (``0.23, 1.0, ...``)."""
    return ", ".join(VERSIONS)


def _host(region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"dkr.ecr.{region}.{suffix}"


def image_uri(region: str, sklearn_version: str | None) -> str:
    """The sagemaker-scikit-learn inference image for ``region`` and the model's scikit-learn version.

    DeploymentError names the version (or region) seen, the supported ones, and the
    ``sagemaker.image_uri`` override.
    """
    if region not in REGISTRIES:
        raise DeploymentError(
            f"deploykit knows no scikit-learn container account for region {region!r} (known: "
            f"{', '.join(sorted(REGISTRIES))}); set sagemaker.image_uri to the image to use there")
    parts = (sklearn_version or "").split(".")
    minor = ".".join(parts[:2]) if len(parts) >= 2 else ""
    tag = VERSIONS.get(minor)
    if tag is None:
        raise DeploymentError(
            f"the model was written with scikit-learn {sklearn_version or 'of an unknown version'}, and SageMaker's "
            f"scikit-learn container exists for {supported_versions()} only; refit the model with one of those "
            "versions, or set sagemaker.image_uri to an image whose scikit-learn loads it")
    return f"{REGISTRIES[region]}.{_host(region)}/sagemaker-scikit-learn:{tag}-cpu-py3"
