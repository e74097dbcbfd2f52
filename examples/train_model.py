"""Train the bank-marketing example classifier on synthetic data and save it with joblib.

    python examples/train_model.py                       # -> examples/bank-model.joblib (+ .schema.json)
    python examples/train_model.py --seed 1 --out m.joblib   # a different model (a new revision)

The model is one sklearn Pipeline: OneHotEncoder on job/marital/education/housing and
StandardScaler on age/balance/duration/campaign, then a RandomForest. Beside it the script
writes ``<name>.schema.json`` (columns, exact types, one example row), which deploykit reads
to enforce types (an int column refuses 41.7).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CATEGORICAL = ["job", "marital", "education", "housing"]
NUMERIC = ["age", "balance", "duration", "campaign"]
COLUMNS = ["age", "job", "marital", "education", "balance", "housing", "duration", "campaign"]
JOBS = ["admin.", "blue-collar", "entrepreneur", "management", "retired", "services", "student", "technician"]


def make_data(rows: int = 5000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic bank-marketing rows and a 'subscribed' label that depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 90, rows),
        "job": rng.choice(JOBS, rows),
        "marital": rng.choice(["married", "single", "divorced"], rows, p=[0.6, 0.3, 0.1]),
        "education": rng.choice(["primary", "secondary", "tertiary"], rows, p=[0.2, 0.5, 0.3]),
        "balance": rng.normal(1500, 3000, rows).round(2),
        "housing": rng.choice(["yes", "no"], rows),
        "duration": rng.integers(0, 3000, rows),
        "campaign": rng.integers(1, 20, rows),
    })[COLUMNS]
    score = (frame["duration"] / 600 + (frame["balance"] > 2000) + (frame["job"] == "student")
             + (frame["age"] > 60) - frame["campaign"] / 10 + rng.normal(0, 0.5, rows))
    return frame, np.where(score > 1.8, "yes", "no")


def train(rows: int = 5000, seed: int = 0, n_estimators: int = 50) -> tuple[Pipeline, pd.DataFrame]:
    """Fit the pipeline; returns it with its training frame."""
    X, y = make_data(rows, seed)
    model = Pipeline([
        ("prep", ColumnTransformer([
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
            ("num", StandardScaler(), NUMERIC),
        ])),
        ("clf", RandomForestClassifier(n_estimators=n_estimators, max_depth=8, n_jobs=1, random_state=seed)),
    ])
    model.fit(X, y)
    return model, X


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("bank-model.joblib")))
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-estimators", type=int, default=50)
    args = parser.parse_args()
    model, X = train(args.rows, args.seed, args.n_estimators)
    out = Path(args.out)
    joblib.dump(model, out)
    from deploykit.schema import Schema

    schema = Schema.from_frame(X)
    out.with_name(out.name.split(".")[0] + ".schema.json").write_text(json.dumps(schema.to_dict(), indent=2) + "\n")
    # the training sample, for 'deploykit deploy ... --reference' (the drift reference profile)
    sample = out.with_name(out.name.split(".")[0] + ".train.csv")
    X.to_csv(sample, index=False)
    print(f"trained on {len(X)} rows, saved {out}, its schema and its training sample {sample.name}")


if __name__ == "__main__":
    main()
