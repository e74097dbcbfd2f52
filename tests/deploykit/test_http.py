"""deploykit.http.base_url: the URL a client on this machine uses, IPv6 bracketed, wildcards to loopback."""

from __future__ import annotations

import pytest

from deploykit.http import base_url


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", "http://127.0.0.1:8000"),
    ("localhost", "http://localhost:8000"),
    ("::1", "http://[::1]:8000"),
    ("fe80::1", "http://[fe80::1]:8000"),
    ("[::1]", "http://[::1]:8000"),
    ("0.0.0.0", "http://127.0.0.1:8000"),
    ("::", "http://[::1]:8000"),
    ("", "http://127.0.0.1:8000"),
])
def test_base_url(host: str, expected: str) -> None:
    assert base_url("http", host, 8000) == expected


def test_base_url_scheme_and_string_port() -> None:
    assert base_url("https", "::1", "8443") == "https://[::1]:8443"  # type: ignore[arg-type]


def test_an_ipv6_local_host_is_recorded_with_brackets_and_serves(project, bank_model, bank_rows) -> None:
    import yaml

    import deploykit

    project.write_credentials('local:\n  host: "::1"\n  port: 0\n')
    dep = deploykit.deploy(bank_model, name="bank-v6")
    try:
        port = dep.ids["port"]
        assert dep.url == f"http://[::1]:{port}"
        assert yaml.safe_load(project.metadata.read_text())["deployments"]["bank-v6"]["local"]["url"] == dep.url
        assert len(deploykit.score("bank-v6", bank_rows).labels) == len(bank_rows)
    finally:
        deploykit.delete("bank-v6")
