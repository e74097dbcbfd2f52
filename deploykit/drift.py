"""Data drift: a compact reference profile per feature, and the PSI of logged inputs against it.

The profile (stored at deploy time with ``--reference``, in ``.deploykit/profiles/<name>.json``)
keeps no training rows, only, per feature:

- a number: the reference deciles as bin edges, with open outer bins (-inf, q1] ... (q9, +inf)
  (tied deciles share a bin), a bin for NaN/missing, and the reference share of each bin;
- anything else: the shares of the ``top_k`` most frequent values, ``__other__`` and
  ``__missing__``.

PSI = sum((a - e) * ln(a / e)) over those bins, ``e`` the reference share and ``a`` the logged
share, each zero share replaced by ``EPSILON`` (1e-4). Values outside the reference range land
in the open outer bins and categories never seen in training in ``__other__``: counted, never
dropped. Status: ``stable`` below ``moderate`` (0.1), ``moderate`` below ``significant``
(0.25), else ``significant``; ``insufficient data`` when a period has fewer than ``min_rows``
rows. These are practitioner conventions; PSI grows with sample size, so tune the thresholds
for your volumes (docs/monitoring.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import DriftError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EPSILON",
    "MISSING",
    "OTHER",
    "DriftReport",
    "bin_shares",
    "build_profile",
    "compute",
    "feature_chart",
    "html_report",
    "inputs_dir",
    "load_profile",
    "psi",
    "read_logged_inputs",
    "read_reference",
    "save_profile",
    "status_of",
]

EPSILON = 1e-4
MISSING = "__missing__"
OTHER = "__other__"
AVERAGE = "__average__"
PERIODS = {"day": "D", "week": "W", "month": "M"}
_TIME = "__time"


# profile --------------------------------------------------------------------------------
def build_profile(frame: pd.DataFrame, columns: list[str] | None = None, top_k: int = 20) -> dict[str, Any]:
    """The reference profile of ``frame``'s ``columns`` (default: all of them) as a JSON-able dict."""
    import numpy as np
    import pandas as pd

    columns = list(frame.columns) if not columns else columns
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DriftError(f"the reference data has no column(s) {missing} of the model's schema (it has "
                         f"{list(frame.columns)}); pass a reference file with every schema column")
    features: dict[str, Any] = {}
    for name in columns:
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = series.to_numpy(dtype=float)
            present = values[~np.isnan(values)]
            edges = sorted({float(q) for q in np.quantile(present, np.arange(1, 10) / 10)}) if len(present) else []
            feature: dict[str, Any] = {"kind": "number", "edges": edges}
        else:
            counts = series.dropna().astype(str).value_counts()
            feature = {"kind": "category", "categories": [str(c) for c in counts.index[:top_k]]}
        feature["shares"] = bin_shares(feature, series)
        features[name] = feature
    return {"version": 1, "rows": len(frame), "features": features}


def bin_labels(feature: dict[str, Any]) -> list[str]:
    """A name for each bin of ``feature`` (for tables and charts)."""
    if feature["kind"] == "category":
        return [*feature["categories"], OTHER, MISSING]
    edges = feature["edges"]
    bounds = ["-inf", *(f"{e:.4g}" for e in edges), "+inf"]
    return [f"({lo}, {hi}]" for lo, hi in zip(bounds[:-1], bounds[1:])] + [MISSING]


def bin_counts(feature: dict[str, Any], values: Any) -> list[int]:
    """How many of ``values`` fall in each bin of ``feature`` (nothing is dropped)."""
    import numpy as np
    import pandas as pd

    series = pd.Series(values)
    if feature["kind"] == "number":
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        nan = np.isnan(numbers)
        # right-closed bins: a value equal to an edge belongs to the bin the edge closes
        index = np.searchsorted(np.asarray(feature["edges"], dtype=float), numbers[~nan], side="left")
        counts = np.bincount(index, minlength=len(feature["edges"]) + 1).tolist()
        return [int(c) for c in counts] + [int(nan.sum())]
    categories = feature["categories"]
    position = {c: i for i, c in enumerate(categories)}
    counts = [0] * (len(categories) + 2)
    for value in series.tolist():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            counts[-1] += 1
        else:
            counts[position.get(str(value), len(categories))] += 1
    return counts


def bin_shares(feature: dict[str, Any], values: Any) -> list[float]:
    """The share of ``values`` in each bin of ``feature`` (zeros when there are no values)."""
    counts = bin_counts(feature, values)
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def psi(expected: list[float], actual: list[float], epsilon: float = EPSILON) -> float:
    """PSI = sum((a - e) * ln(a / e)), each zero share replaced by ``epsilon``."""
    if len(expected) != len(actual):
        raise ValueError(f"PSI needs shares over the same bins; got {len(expected)} and {len(actual)}")
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = e or epsilon, a or epsilon
        total += (a - e) * math.log(a / e)
    return total


def status_of(value: float | None, rows: int, min_rows: int = 100, moderate: float = 0.1,
              significant: float = 0.25) -> str:
    """``stable``, ``moderate``, ``significant``, or ``insufficient data`` below ``min_rows``."""
    if rows < min_rows or value is None:
        return "insufficient data"
    if value < moderate:
        return "stable"
    return "moderate" if value < significant else "significant"


# files ----------------------------------------------------------------------------------
def profile_path(state_dir: Path, name: str) -> Path:
    """Where ``name``'s profile is stored: ``<state_dir>/profiles/<name>.json``."""
    return state_dir / "profiles" / f"{name}.json"


def inputs_dir(state_dir: Path, name: str) -> Path:
    """Where the local server logs ``name``'s inputs by default (``local.log_inputs``)."""
    return state_dir / "input-logs" / name


def read_reference(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A reference table from a CSV or Parquet file, or a DataFrame as it is."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    if not path.is_file():
        raise DriftError(f"reference file {str(path)!r} does not exist; pass the training data as CSV or Parquet")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    raise DriftError(f"reference file {str(path)!r} must end in .csv or .parquet so its format is known")


def save_profile(state_dir: Path, name: str, reference: str | Path | pd.DataFrame,
                 columns: list[str] | None = None) -> Path:
    """Profile ``reference`` on ``columns`` (the model's schema) and store it for ``name``."""
    from deploykit.files import atomic_write

    profile = build_profile(read_reference(reference), columns)
    path = profile_path(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(profile, indent=1).encode())
    return path


def load_profile(state_dir: Path, name: str) -> dict[str, Any]:
    """``name``'s stored profile."""
    path = profile_path(state_dir, name)
    if not path.is_file():
        raise DriftError(f"no reference profile for {name!r} (looked for {path}); redeploy with "
                         f"'deploykit deploy MODEL --name {name} --reference train.csv' (CSV or Parquet)")
    try:
        profile: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise DriftError(f"the reference profile {path} is not valid JSON ({exc}); redeploy with --reference "
                         "to write it again") from None
    return profile


def read_logged_inputs(folder: Path, since: Any = None) -> pd.DataFrame:
    """Every logged row in ``folder`` (the local server's Parquet files, or JSON Lines), from ``since``."""
    import pandas as pd

    files = sorted(folder.glob("inputs-*.parquet")) if folder.is_dir() else []
    lines = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files and not lines:
        raise DriftError(f"no logged inputs in {folder}; turn logging on with 'log_inputs: true' in the local: "
                         "section of credentials.yaml, redeploy, and score some requests")
    parts = [pd.read_parquet(f) for f in files] + [pd.read_json(f, lines=True) for f in lines]
    frame = pd.concat(parts, ignore_index=True)
    if _TIME in frame:
        frame[_TIME] = pd.to_datetime(frame[_TIME], utc=True)
        if since is not None:
            frame = frame[frame[_TIME] >= pd.Timestamp(since, tz="UTC")]
    return frame


# the report -----------------------------------------------------------------------------
@dataclass
class DriftReport:
    """PSI per feature and period: ``rows`` is the long table (``period_start, n, feature, psi,
    status``, with one ``__average__`` row per period), ``shares`` the logged bin shares."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    shares: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    thresholds: tuple[float, float] = (0.1, 0.25)

    @property
    def latest(self) -> list[dict[str, Any]]:
        """The rows of the most recent period."""
        if not self.rows:
            return []
        last = max(r["period_start"] for r in self.rows)
        return [r for r in self.rows if r["period_start"] == last]

    @property
    def significant(self) -> list[str]:
        """Features with a significant shift in the most recent period."""
        return [r["feature"] for r in self.latest if r["status"] == "significant" and r["feature"] != AVERAGE]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (``deploykit drift --json``)."""
        return {"thresholds": {"moderate": self.thresholds[0], "significant": self.thresholds[1]},
                "rows": self.rows, "significant": self.significant}


def compute(profile: dict[str, Any], logged: pd.DataFrame, period: str | None = None, min_rows: int = 100,
            moderate: float = 0.1, significant: float = 0.25) -> DriftReport:
    """PSI of ``logged`` against ``profile``, per feature and ``period`` (day, week, month, or
    None: one period over every row)."""
    import pandas as pd

    if significant <= moderate:
        raise DriftError(f"the significant threshold ({significant}) must be above the moderate one ({moderate})")
    features = profile["features"]
    absent = [name for name in features if name not in logged.columns]
    if absent:
        raise DriftError(f"the logged inputs have no column(s) {absent} of the profile; they were logged by "
                         "another model: redeploy with --reference for this model's training data")
    if period is not None and period not in PERIODS:
        raise DriftError(f"period {period!r} is not one of {sorted(PERIODS)}")
    times = logged[_TIME] if _TIME in logged else pd.Series(pd.Timestamp.now(tz="UTC"), index=logged.index)
    if period is None:
        groups = [(times.min(), logged)]
    else:
        starts = times.dt.tz_localize(None).dt.to_period(PERIODS[period]).dt.start_time
        groups = [(start.tz_localize("UTC"), part) for start, part in logged.groupby(starts)]
    report = DriftReport(thresholds=(moderate, significant))
    for start, part in groups:
        label = pd.Timestamp(start).isoformat()
        values = []
        for name, feature in features.items():
            shares = bin_shares(feature, part[name])
            value = psi(feature["shares"], shares)
            report.shares.setdefault(name, {})[label] = shares
            values.append(value)
            report.rows.append({"period_start": label, "n": len(part), "feature": name, "psi": round(value, 6),
                                "status": status_of(value, len(part), min_rows, moderate, significant)})
        average = sum(values) / len(values) if values else 0.0
        report.rows.append({"period_start": label, "n": len(part), "feature": AVERAGE, "psi": round(average, 6),
                            "status": status_of(average, len(part), min_rows, moderate, significant)})
    return report


def feature_chart(report: DriftReport, feature: dict[str, Any], name: str) -> Any:
    """A matplotlib ``Figure`` for one feature: PSI per period with the thresholds, beside the
    reference and latest share per bin."""
    from matplotlib.figure import Figure

    moderate, significant = report.thresholds
    rows = [r for r in report.rows if r["feature"] == name]
    figure = Figure(figsize=(10, 3.2))
    over_time, shares = figure.subplots(1, 2)
    over_time.plot([r["period_start"][:10] for r in rows], [r["psi"] for r in rows], marker="o")
    over_time.axhline(moderate, color="orange", linestyle="--", label=f"moderate {moderate}")
    over_time.axhline(significant, color="red", linestyle="--", label=f"significant {significant}")
    over_time.set_title(f"{name}: PSI per period")
    over_time.legend(fontsize=7)
    labels = bin_labels(feature)
    latest = report.shares[name][rows[-1]["period_start"]] if rows else [0.0] * len(labels)
    positions = range(len(labels))
    shares.bar([p - 0.2 for p in positions], feature["shares"], width=0.4, label="reference")
    shares.bar([p + 0.2 for p in positions], latest, width=0.4, label="latest period")
    shares.set_xticks(list(positions), labels, rotation=45, ha="right", fontsize=6)
    shares.set_title(f"{name}: share per bin")
    shares.legend(fontsize=7)
    figure.tight_layout()
    return figure


def html_report(report: DriftReport, profile: dict[str, Any], title: str) -> str:
    """One self-contained HTML page: the latest table, and per feature an inline SVG chart of PSI
    over time beside the reference and latest distributions (matplotlib; no script, font or URL)."""
    import html
    import io

    moderate, significant = report.thresholds
    table = "".join(f"<tr class='{r['status'].replace(' ', '-')}'><td>{html.escape(r['feature'])}</td>"
                    f"<td>{r['psi']:.4f}</td><td>{r['status']}</td><td>{r['n']}</td></tr>" for r in report.latest)
    charts = []
    for name, feature in profile["features"].items():
        out = io.StringIO()
        # no metadata block: it would only add namespace URLs to a page that must stand alone
        feature_chart(report, feature, name).savefig(out, format="svg", metadata={
            "Creator": None, "Date": None, "Format": None, "Type": None})
        svg = out.getvalue()
        charts.append(f"<section><h2>{html.escape(name)}</h2>{svg[svg.index('<svg'):]}</section>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}.significant{background:#fdd}.moderate{background:#ffd}"
            "</style></head><body><h1>" + html.escape(title) + "</h1>"
            f"<p>PSI thresholds: moderate {moderate}, significant {significant}.</p>"
            "<table><tr><th>feature</th><th>PSI</th><th>status</th><th>rows</th></tr>" + table + "</table>"
            + "".join(charts) + "</body></html>")
