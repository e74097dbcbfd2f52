"""PSI against hand-computed values, and ``deploykit drift`` on real logged traffic of a local deployment."""

from __future__ import annotations

import math
import re
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from deploykit import drift
from deploykit.errors import DriftError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import train_model


# PSI, by hand ---------------------------------------------------------------------------
def test_psi_matches_a_hand_computed_value() -> None:
    expected, actual = [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]
    by_hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.4 - 0.3) * math.log(0.4 / 0.3) + 0.0
    assert drift.psi(expected, actual) == pytest.approx(by_hand)
    assert drift.psi(expected, actual) == pytest.approx(0.051083, abs=1e-6)  # 0.1 ln 1.25 + 0.1 ln 4/3


def test_an_empty_bin_is_smoothed_with_epsilon_not_dropped() -> None:
    # 0.0 becomes 1e-4 before the log: (1e-4 - 0.5) * ln(1e-4 / 0.5) + (1 - 0.5) * ln(1 / 0.5)
    by_hand = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)
    assert drift.psi([0.5, 0.5], [0.0, 1.0]) == pytest.approx(by_hand)
    assert drift.psi([0.25] * 4, [0.25] * 4) == 0.0


def test_numbers_get_decile_edges_with_open_outer_bins_and_a_missing_bin() -> None:
    reference = pd.DataFrame({"x": [float(v) for v in range(1, 101)]})
    feature = drift.build_profile(reference)["features"]["x"]
    assert feature["edges"] == pytest.approx([10.9, 20.8, 30.7, 40.6, 50.5, 60.4, 70.3, 80.2, 90.1])
    assert feature["shares"] == pytest.approx([0.1] * 10 + [0.0])
    # out of range on both sides, on an edge, and missing: every value is counted
    counts = drift.bin_counts(feature, [-1e9, 0.0, 10.9, 10.91, 1e9, None, float("nan")])
    assert counts == [3, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2]
    # everything above the reference range: the last bin takes it all
    shares = drift.bin_shares(feature, [500.0] * 10)
    by_hand = 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + (1 - 0.1) * math.log(1 / 0.1)
    assert drift.psi(feature["shares"], shares) == pytest.approx(by_hand)


def test_categories_never_seen_in_training_count_as_other() -> None:
    reference = pd.DataFrame({"job": ["admin"] * 6 + ["student"] * 3 + [None]})
    feature = drift.build_profile(reference)["features"]["job"]
    assert feature["categories"] == ["admin", "student"]
    assert feature["shares"] == pytest.approx([0.6, 0.3, 0.0, 0.1])
    current = drift.bin_shares(feature, ["admin", "admin", "pilot", "pilot", None])
    assert current == pytest.approx([0.4, 0.0, 0.4, 0.2])
    by_hand = ((0.4 - 0.6) * math.log(0.4 / 0.6) + (1e-4 - 0.3) * math.log(1e-4 / 0.3)
               + (0.4 - 1e-4) * math.log(0.4 / 1e-4) + (0.2 - 0.1) * math.log(0.2 / 0.1))
    assert drift.psi(feature["shares"], current) == pytest.approx(by_hand)


def test_status_thresholds_and_minimum_rows() -> None:
    assert drift.status_of(0.05, 500) == "stable"
    assert drift.status_of(0.1, 500) == "moderate"
    assert drift.status_of(0.2499, 500) == "moderate"
    assert drift.status_of(0.25, 500) == "significant"
    assert drift.status_of(3.0, 99) == "insufficient data"
    assert drift.status_of(0.2, 500, significant=0.15) == "significant"


def test_a_reference_without_the_schema_columns_is_refused() -> None:
    with pytest.raises(DriftError, match=r"no column\(s\) \['balance'\].*pass a reference file"):
        drift.build_profile(pd.DataFrame({"age": [1, 2]}), ["age", "balance"])


def test_periods_split_the_logged_rows() -> None:
    reference = pd.DataFrame({"x": [float(v) for v in range(100)]})
    profile = drift.build_profile(reference)
    logged = pd.DataFrame({"x": [float(v % 100) for v in range(300)],
                           "__time": pd.to_datetime(["2026-11-02"] * 100 + ["2026-11-03"] * 200, utc=True)})
    report = drift.compute(profile, logged, period="day")
    assert [(r["period_start"][:10], r["n"], r["feature"]) for r in report.rows] == [
        ("2026-11-02", 100, "x"), ("2026-11-02", 100, "__average__"),
        ("2026-11-03", 200, "x"), ("2026-11-03", 200, "__average__")]
    assert all(r["status"] == "stable" for r in report.rows)


# the command on a real local deployment -----------------------------------------------
SHIFTED = ["balance", "job"]


@pytest.fixture
def deployed(project: Any, cli: Any, bank_model: Path) -> dict[str, Any]:
    """The bank model deployed to local with logged inputs and a reference profile, scored with
    600 rows whose ``balance`` and ``job`` are shifted."""
    reference, _ = train_model.make_data(rows=1500, seed=0)
    reference.to_csv(project.dir / "train.csv", index=False)
    project.write_credentials("local:\n  port: 0\n  log_inputs: true\n")
    done = cli("deploy", bank_model, "--name", "bank", "--reference", "train.csv", "--json")
    assert done.code == 0, done.err + done.out
    url = done.json()["url"]
    traffic, _ = train_model.make_data(rows=600, seed=11)
    traffic["balance"] = traffic["balance"] + 8000
    traffic["job"] = "student"
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
               for row in traffic.to_dict("records")]
    for i in range(0, len(records), 50):
        assert httpx.post(f"{url}/predict", json=records[i:i + 50], timeout=30).status_code == 200
    folder = project.dir / ".deploykit" / "input-logs" / "bank"
    deadline = time.monotonic() + 30
    while _logged_rows(folder) <= 600 and time.monotonic() < deadline:
        time.sleep(0.2)
    # the deploy's own smoke test scored the example row too (once per check), and it is logged
    assert 600 < _logged_rows(folder) <= 605
    return {"url": url, "folder": folder}


def _logged_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in folder.glob("inputs-*.parquet"))


def check_shifted(done: Any, shifted: list[str], least: int, most: int) -> None:
    """``deploykit drift --json`` exited 3 with exactly ``shifted`` significant (and the average),
    every other feature stable, and each period's row count within [least, most]."""
    assert done.code == 3, done.err + done.out
    report = done.json()
    assert sorted(report["significant"]) == shifted
    status = {r["feature"]: r["status"] for r in report["rows"]}
    assert status.pop("__average__") == "significant"
    assert {f for f, s in status.items() if s == "significant"} == set(shifted)
    assert all(s == "stable" for f, s in status.items() if f not in shifted), status
    assert all(least <= r["n"] <= most for r in report["rows"]), report["rows"]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_drift_reports_significant_on_exactly_the_shifted_features(deployed: dict[str, Any], cli: Any,
                                                                   project: Any) -> None:
    done = cli("drift", "bank", "--json", "--html", "drift.html")
    check_shifted(done, SHIFTED, 601, 605)

    page = (project.dir / "drift.html").read_text()
    parser = _Tags()
    parser.feed(page)
    tags = parser.tags
    assert not [t for t in tags if t[0] in ("script", "link", "iframe", "img")], "the report must be self-contained"
    # URLs only as XML namespace names (identifiers, never fetched); no href/src leaves the page
    assert not re.search(r"https?://", re.sub(r'xmlns(:\w+)?="[^"]*"', "", page)), "an external URL"
    assert all((attrs.get("href") or attrs.get("xlink:href") or "#").startswith("#") for _, attrs in tags)
    assert "@import" not in page and "url(" not in page.replace("url(#", "")
    assert sum(1 for t in tags if t[0] == "svg") == 8  # one chart per feature
    assert sum(1 for t in tags if t[0] == "path") > 100  # the charts have real content
    for feature in ("age", "balance", "job"):
        assert f"<h2>{feature}</h2>" in page


def test_drift_human_output_and_periods(deployed: dict[str, Any], cli: Any) -> None:
    done = cli("drift", "bank", "--period", "day")
    assert done.code == 3
    assert re.search(r"balance\s+\d+\.\d+\s+significant\s+\(n=60\d\)", done.out), done.out
    assert "PSI average" in done.out


def test_drift_without_a_profile_says_to_redeploy_with_reference(project: Any, cli: Any) -> None:
    done = cli("drift", "bank")
    assert done.code == 2
    assert "no reference profile for 'bank'" in done.err and "--reference train.csv" in done.err


def test_drift_without_logged_inputs_says_how_to_turn_logging_on(project: Any, cli: Any) -> None:
    drift.save_profile(project.dir / ".deploykit", "bank", pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    done = cli("drift", "bank", "--json")
    assert done.code == 2
    assert done.json()["type"] == "DriftError"
    assert "log_inputs: true" in done.json()["error"]


def test_deploy_with_a_reference_missing_schema_columns_says_which(project: Any, cli: Any, bank_model: Path) -> None:
    pd.DataFrame({"age": [30, 40]}).to_csv(project.dir / "thin.csv", index=False)
    done = cli("deploy", bank_model, "--name", "bank", "--reference", "thin.csv")
    assert done.code == 1
    assert "reference profile was not stored" in done.err and "'balance'" in done.err
    missing = cli("deploy", bank_model, "--name", "bank", "--reference", "nope.csv")
    assert missing.code == 1 and "reference file 'nope.csv' does not exist" in missing.err


def test_status_shows_live_figures_and_the_drift(deployed: dict[str, Any], cli: Any) -> None:
    assert httpx.post(f"{deployed['url']}/predict", json=[{"age": "old"}]).status_code == 422
    done = cli("status", "bank", "--json")
    assert done.code == 0, done.err
    live, shifted = done.json()["live"], done.json()["drift"]
    assert live["requests"] >= 13 and live["rejected"] == 1 and live["errors"] == 0  # 12 + 1, and smoke tests
    assert 0 < live["p50_ms"] <= live["p99_ms"]
    assert shifted["status"] == "significant" and sorted(shifted["significant"]) == SHIFTED
    human = cli("status", "bank")
    assert "scoring requests, 1 rejected (4xx), 0 errors (5xx)" in human.out, human.out
    assert "drift: significant (job, balance)" in human.out or "drift: significant (balance, job)" in human.out


def test_quantiles_interpolate_within_buckets_as_prometheus_does() -> None:
    from deploykit.monitoring import quantile

    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * (20 / 40))
    assert quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * (9 / 10))
    assert quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.99, [(0.1, 1.0), (float("inf"), 10.0)]) == 0.1  # past the last finite bound
