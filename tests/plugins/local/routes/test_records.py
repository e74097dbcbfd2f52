"""POST /predict: any format in, deploykit's shape out; a plugin's codec is served too."""

from __future__ import annotations

from typing import Any

import pandas as pd
from fastapi.testclient import TestClient

from deploykit.artifact import Artifact
from deploykit.payload import Format, Predictions, encode
from deploykit_plugins.local.app import ServerConfig, create_app
from tests.plugins.local.conftest import COLUMNS


def test_predict_takes_any_format_and_answers_deploykit_shape(client: TestClient, rows: list[dict],
                                                              expected: Predictions) -> None:
    golden = {"predictions": expected.labels, "probabilities": expected.probabilities, "classes": ["no", "yes"]}
    for fmt in ("records", "dataframe_split", "dataframe_records", "instances", "inputs", "input_data", "v2"):
        response = client.post("/predict", json=encode(rows, fmt))
        assert (response.status_code, response.json()) == (200, golden), fmt
    csv = client.post("/predict", content=encode(rows, "csv"), headers={"content-type": "text/csv"})
    assert csv.json() == golden
    one = client.post("/predict", json=rows[0])
    assert one.json()["predictions"] == expected.labels[:1]
    as_csv = client.post("/predict", json=rows, headers={"accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert Predictions.decode(as_csv.text).labels == expected.labels


class TildeRows:
    """A third-party codec plugin: ``{"tilde": "age~job\\n41~admin."}``."""

    from deploykit.hookspecs import hookimpl

    @hookimpl
    def deploykit_register_formats(self, register: Any) -> None:
        def decode(obj: dict, columns: Any = None) -> pd.DataFrame:
            head, *lines = obj["tilde"].splitlines()
            names = head.split("~")
            typed = [[int(v) if names[i] in ("age", "duration", "campaign") else
                      float(v) if names[i] == "balance" else v for i, v in enumerate(line.split("~"))]
                     for line in lines]
            return pd.DataFrame(typed, columns=names)

        register(Format("tilde", lambda o: isinstance(o, dict) and "tilde" in o, decode,
                        lambda f: {"tilde": f.to_csv(sep="~", index=False)}, "tilde-separated rows"))


def test_a_plugin_codec_is_served(artifact: Artifact, rows: list[dict], expected: Predictions) -> None:
    from deploykit import payload, plugins

    plugins.reset()
    plugin = TildeRows()
    plugins.get_plugin_manager().register(plugin, name="tilde-test")
    try:
        client = TestClient(create_app(artifact, ServerConfig(name="bank")))  # load_formats() runs here
        text = "~".join(COLUMNS) + "\n" + "\n".join("~".join(str(r[c]) for c in COLUMNS) for r in rows)
        response = client.post("/predict", json={"tilde": text})
        assert response.json()["predictions"] == expected.labels
    finally:
        plugins.get_plugin_manager().unregister(plugin)
        payload.FORMATS.pop("tilde", None)
        plugins.reset()
