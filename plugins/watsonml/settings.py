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
      verify: /etc/ssl/cpd-ca.pem              # true, false or a CA bundle path

The seed's flat file (``url``, ``apikey``, ``space_id`` at the top level) is read as this section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from deploykit.errors import CredentialsError

__all__ = ["WatsonSettings"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class WatsonSettings(BaseModel):
    """Validated ``watsonml`` credentials. A ``username`` means Cloud Pak for Data, none means IBM Cloud."""

    model_config = ConfigDict(extra="forbid")

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
    verify: bool | str = Field(True, description="TLS check: true, false, or the path of a CA bundle (PEM)")
    model_type: str | None = Field(None, description="override the Watson model type, e.g. scikit-learn_1.6")
    software_spec: str | None = Field(None, description="override the software specification, e.g. runtime-25.1-py3.12")
    hardware_spec: str | None = Field(None, description="hardware specification name for online deployments")
    batch_hardware_spec: str = Field("S", description="hardware specification name for batch deployments")
    max_retries: int = Field(5, ge=0, le=20, description="retries of a rate-limited (429) or unavailable call")

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

    @field_validator("verify", mode="before")
    @classmethod
    def _verify(cls, value: Any) -> Any:
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            path = Path(value).expanduser()
            if not path.exists():
                raise ValueError("is neither true/false nor an existing file; give the path of the CA bundle (PEM) "
                                 "that signed the server's certificate")
            return str(path.resolve())
        return value

    def secret_key(self) -> str | None:
        """The API key (``apikey`` or ``api_key``, whichever is set) as plain text, for the client only."""
        key = self.apikey or self.api_key
        return key.get_secret_value() if key is not None else None

    def check(self) -> None:
        """Cross-key checks, raising CredentialsError that names the keys (no secret values)."""
        if self.apikey is not None and self.api_key is not None \
                and self.apikey.get_secret_value() != self.api_key.get_secret_value():
            raise CredentialsError(
                "watsonml: both 'apikey' and 'api_key' are set, to different values; keep one "
                "(apikey for IBM Cloud, api_key for Cloud Pak for Data)"
            )
        if self.username:
            if self.secret_key() is None and self.password is None:
                raise CredentialsError(
                    f"watsonml: username = {self.username!r} selects Cloud Pak for Data, which also needs 'api_key' "
                    "or 'password'; set one (or DEPLOYKIT_WATSONML_API_KEY)"
                )
        elif self.secret_key() is None:
            extra = " ('password' needs 'username': that is Cloud Pak for Data)" if self.password is not None else ""
            raise CredentialsError(
                "watsonml: 'apikey' is missing: IBM Cloud needs url + apikey, Cloud Pak for Data needs url + "
                f"username + api_key or password{extra}; set them in credentials.yaml or DEPLOYKIT_WATSONML_APIKEY"
            )
        if not self.space_id and not self.space_name:
            raise CredentialsError(
                "watsonml: 'space_id' is missing: every model and deployment lives in a deployment space; set "
                "watsonml.space_id (or watsonml.space_name) or DEPLOYKIT_WATSONML_SPACE_ID"
            )
        if self.space_id and self.space_name:
            raise CredentialsError(
                f"watsonml: both space_id = {self.space_id!r} and space_name = {self.space_name!r} are set; keep one"
            )
