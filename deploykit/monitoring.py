"""Live figures of a deployment for ``deploykit status``: its ``/metrics`` read back, and its drift.

``live_figures`` scrapes a server that speaks deploykit's metrics (the local target) and sums
them since the server started: scoring requests, 4xx rejections, 5xx errors, and p50/p99 of
the scoring routes' latency, interpolated within the histogram's buckets as Prometheus'
``histogram_quantile`` does. ``drift_status`` is the latest period's PSI average status when a
reference profile and logged inputs exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["drift_status", "live_figures", "quantile"]

_SCORING = ("deploykit", "mlflow", "v2", "watson")


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``[(upper bound, count), ...]`` (sorted, +Inf
    last), linear within the bucket; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bound: its value is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def live_figures(url: str, token: str | None = None, verify: bool | str = True,
                 timeout: float = 3.0) -> dict[str, Any]:
    """Totals since start from ``url``/metrics: ``requests``, ``rejected`` (4xx), ``errors`` (5xx)
    of the scoring routes, ``p50_ms``/``p99_ms``, and the model ``revision`` it reports.
    Raises OSError (unreachable) or ValueError (no deploykit metrics there)."""
    import urllib3
    from prometheus_client.parser import text_string_to_metric_families

    pool = urllib3.PoolManager(cert_reqs="CERT_NONE" if verify is False else "CERT_REQUIRED",
                               ca_certs=verify if isinstance(verify, str) else None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = pool.request("GET", url.rstrip("/") + "/metrics", headers=headers, timeout=timeout, retries=False)
    except urllib3.exceptions.HTTPError as exc:
        raise OSError(f"{url}/metrics did not answer ({exc})") from None
    if answer.status != 200:
        raise ValueError(f"{url}/metrics answered {answer.status}")
    figures: dict[str, Any] = {"requests": 0, "rejected": 0, "errors": 0}
    buckets: dict[float, float] = {}
    seen = False
    for family in text_string_to_metric_families(answer.data.decode()):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "deploykit_requests_total" and labels.get("protocol") in _SCORING:
                seen = True
                status = int(labels.get("status", "0"))
                figures["requests"] += int(sample.value)
                if 400 <= status < 500:
                    figures["rejected"] += int(sample.value)
                elif status >= 500:
                    figures["errors"] += int(sample.value)
            elif sample.name == "deploykit_request_duration_seconds_bucket" and labels.get("protocol") in _SCORING:
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == "deploykit_model_info":
                seen = True
                figures["revision"] = int(labels.get("revision", "0"))
    if not seen:
        raise ValueError(f"{url}/metrics has no deploykit metrics")
    ordered = sorted(buckets.items())
    for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
        value = quantile(q, ordered)
        figures[name] = None if value is None else round(value * 1000, 2)
    return figures


def drift_status(state_dir: Path, name: str) -> dict[str, Any] | None:
    """The latest period's drift (``status`` of the PSI average, ``significant`` features, ``n``),
    or None when there is no profile or no logged input yet."""
    from deploykit import drift
    from deploykit.errors import DriftError

    if not drift.profile_path(state_dir, name).is_file():
        return None
    try:
        profile = drift.load_profile(state_dir, name)
        report = drift.compute(profile, drift.read_logged_inputs(drift.inputs_dir(state_dir, name)))
    except DriftError:
        return None
    average = next(r for r in report.latest if r["feature"] == drift.AVERAGE)
    return {"status": average["status"], "psi_average": average["psi"], "n": average["n"],
            "significant": report.significant}
