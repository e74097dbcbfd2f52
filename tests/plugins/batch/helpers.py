"""Reading part files back and the in-process answer they must equal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deploykit.artifact import load_artifact


def read_parts(folder: Path) -> pd.DataFrame:
    """Every part in ``folder`` as one frame sorted by id (duplicates kept, so a test can see them)."""
    parts = sorted(folder.glob("part-*"))
    assert parts, f"no part files in {folder}"
    frames = [pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p) for p in parts]
    return pd.concat(frames, ignore_index=True).sort_values("id", kind="stable").reset_index(drop=True)


def assert_scored(folder: Path, model_path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The parts hold exactly ``frame``'s ids once each, with predict/predict_proba's answers."""
    got = read_parts(folder)
    model = load_artifact(model_path).model
    X = frame[list(model.feature_names_in_)]
    assert got["id"].tolist() == frame["id"].tolist(), "every input row exactly once"
    assert got["prediction"].tolist() == model.predict(X).tolist()
    proba = model.predict_proba(X)
    for j, cls in enumerate(model.classes_):
        np.testing.assert_allclose(got[f"probability_{cls}"], proba[:, j], rtol=1e-12)
    return got
