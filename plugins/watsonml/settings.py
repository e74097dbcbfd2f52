"""The ``watsonml:`` credentials section: IBM Cloud or Cloud Pak for Data, the space, TLS, runtime overrides.

    watsonml:                                  # IBM Cloud
      url: https://us-south.ml.cloud.ibm.com
      apikey: ${IBM_CLOUD_API_KEY}
      space_id: 6f1e...                        # or space_name: my-space
    watsonml:                                  # Cloud Pak for Data
      url: https://cpd.example.com
      username: admin
      api_key: ${CPD_API_KEY}                  # or password: ...
      version: "5.1"
      space_name: deploykit
      ca_bundle: certs/cpd-ca.pem              # the CA that signed the cluster's certificate
                                               # (relative to this file); or verify: false

``verify`` (true, false or a CA bundle path) and ``ca_bundle`` come from ``TargetSettings``;
the checks across keys (which secret goes with which platform, one space) are validators,
so their errors read like any other credentials error. The seed's flat file (``url``,
``apikey``, ``space_id`` at the top level) is read as this section.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from deploykit.settings import Retries, TargetSettings

__all__ = ["WatsonSettings"]


class WatsonSettings(TargetSettings):
    """Validated ``watsonml`` credentials. A ``username`` means Cloud Pak for Data, none means IBM Cloud."""

    section: ClassVar[str] = "watsonml"

    url: str = Field(description="Watson ML endpoint, https:// (IBM Cloud region URL or the CPD cluster URL)")
    apikey: SecretStr | None = Field(None, description="IBM Cloud IAM API key (also accepted for CPD)")
    api_key: SecretStr | None = Field(None, description="CPD API key of `username` (also accepted for IBM Cloud)")
    username: str | None = Field(None, description="CPD user; its presence selects Cloud Pak for Data")
    password: SecretStr | None = Field(None, description="CPD password, instead of api_key")
    version: str | None = Field(None, description="CPD release, e.g. '5.1' (detected when absent)")
    bedrock_url: str | None = Field(None, description="CPD foundational services URL, for password login")
    auth_url: str | None = Field(None, description="IBM Cloud IAM token URL (default: IBM's)")
    platform_url: str | None = Field(None, description="IBM Cloud platform API URL (default: derived from url)")
    instance_id: str | None = Field(None, description="legacy key of older Watson scripts; ignored by IBM Cloud")
    space_id: str | None = Field(None, description="deployment space id (a name here is looked up too)")
    space_name: str | None = Field(None, description="deployment space name, resolved to its id")
    model_type: str | None = Field(None, description="override the Watson model type, e.g. scikit-learn_1.6")
    software_spec: str | None = Field(None, description="override the software specification, e.g. runtime-25.1-py3.12")
    hardware_spec: str | None = Field(None, description="hardware specification name for online deployments")
    batch_hardware_spec: str = Field("S", description="hardware specification name for batch deployments")
    max_retries: Retries = Field(5, description="retries of a rate-limited (429) or unavailable call")

    @field_validator("url", "auth_url", "platform_url", "bedrock_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith("https://"):
            raise ValueError("must start with https:// (the ibm-watsonx-ai client refuses plain http), "
                             "e.g. https://us-south.ml.cloud.ibm.com")
        return value

    @field_validator("version", "space_id", "instance_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        # YAML reads `version: 5.1` as a float
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    def secret_key(self) -> str | None:
        """The API key (``apikey`` or ``api_key``, whichever is set) as plain text, for the client only."""
        key = self.apikey or self.api_key
        return key.get_secret_value() if key is not None else None

    @model_validator(mode="after")
    def _cross_keys(self) -> WatsonSettings:
        """Which secret goes with which platform, and one space: errors name the keys, never a secret."""
        if self.apikey is not None and self.api_key is not None \
                and self.apikey.get_secret_value() != self.api_key.get_secret_value():
            raise ValueError(
                "both 'apikey' and 'api_key' are set, to different values; keep one "
                "(apikey for IBM Cloud, api_key for Cloud Pak for Data)"
            )
        if self.username:
            if self.secret_key() is None and self.password is None:
                raise ValueError(
                    f"username = {self.username!r} selects Cloud Pak for Data, which also needs 'api_key' "
                    "or 'password'; set one (or DEPLOYKIT_WATSONML_API_KEY)"
                )
        elif self.secret_key() is None:
            extra = " ('password' needs 'username': that is Cloud Pak for Data)" if self.password is not None else ""
            raise ValueError(
                "'apikey' is missing: IBM Cloud needs url + apikey, Cloud Pak for Data needs url + "
                f"username + api_key or password{extra}; set them in credentials.yaml or DEPLOYKIT_WATSONML_APIKEY"
            )
        if not self.space_id and not self.space_name:
            raise ValueError(
                "'space_id' is missing: every model and deployment lives in a deployment space; set "
                "watsonml.space_id (or watsonml.space_name) or DEPLOYKIT_WATSONML_SPACE_ID"
            )
        if self.space_id and self.space_name:
            raise ValueError(
                f"both space_id = {self.space_id!r} and space_name = {self.space_name!r} are set; keep one"
            )
        return self
