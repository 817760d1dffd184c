"""The chart's metrics, alerts and dashboard: the Service and ServiceMonitor reach the operator's
metrics port, the real promtool accepts the alerts and shows each firing when it should and quiet
when it should not (tests/alerts/rules.test.yaml), each alert links a runbook the README has, and
the alerts and the dashboard query only metrics the operator exports.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from stan_controlplane import build

from .test_chart import CHART, container, find, helm, render, sets

ENABLED = {
    "metrics.serviceMonitor.enabled": "true",
    "metrics.prometheusRule.enabled": "true",
    "metrics.dashboard.enabled": "true",
}
RULE_TESTS = Path(__file__).parent / "alerts" / "rules.test.yaml"

OPERATOR_METRICS: dict[str, str] = {
    "stan_task_start_delay_seconds": "histogram",
    "stan_task_runs_total": "counter",
    "stan_task_ticks_missed_total": "counter",
    "stan_task_claims_lost_total": "counter",
    "stan_task_consecutive_failures_max": "gauge",
    "stan_tasks_known": "gauge",
    "stan_tasks_scheduled": "gauge",
    "stan_tick_heap_depth": "gauge",
    "stan_leader": "gauge",
    "stan_heartbeat_healthy": "gauge",
    "stan_heartbeat_check_status": "gauge",
    "stan_heartbeat_run_duration_seconds": "histogram",
    "stan_notifications_total": "counter",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
}
"""The metrics the chart's alerts and dashboard may query, by the name PromQL gives them (a counter's
with ``_total``, a histogram's without its ``_bucket``, ``_sum`` and ``_count``), and their types. This
is the contract with the operator: the operator's scrape test compares it with a real operator's
/metrics."""
SCRAPE_SERIES = {"up"}
"""What Prometheus itself records of each scrape."""


def queryable() -> set[str]:
    histograms = [name for name, kind in OPERATOR_METRICS.items() if kind == "histogram"]
    return {
        *OPERATOR_METRICS,
        *SCRAPE_SERIES,
        *(f"{name}_{part}" for name in histograms for part in ("bucket", "sum", "count")),
    }


_NOT_NAMES = re.compile(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)')
"""Label matchers, ranges, strings and label lists: what in PromQL holds identifiers that name no metric."""
_IDENTIFIER = re.compile(r"\b([A-Za-z_:][\w:]*)\b(?!\s*\()")
"""An identifier that no ``(`` follows: a function or an aggregation would."""
_OPERATORS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects."""
    return {name for name in _IDENTIFIER.findall(_NOT_NAMES.sub(" ", expression)) if name.lower() not in _OPERATORS}


def test_metric_names_are_read_from_promql() -> None:
    expression = 'sum by (le) (rate(a_bucket{job=~"$job", x="y z"}[5m])) / on (pod) group_left () b offset 5m > bool 1'
    assert metric_names(expression) == {"a_bucket", "b"}
    assert metric_names('absent(up{job="x"} == 1) or max(stan_leader) < 1') == {"up", "stan_leader"}


@pytest.fixture(scope="module")
def promtool() -> Path:
    build.ensure_built((build.PROMTOOL,))
    return build.binary_path("promtool")


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return render(ENABLED)


@pytest.fixture(scope="module")
def rules(docs: list[dict]) -> dict:
    """The PrometheusRule's spec: a Prometheus rule file."""
    return find(docs, "PrometheusRule")["spec"]


@pytest.fixture(scope="module")
def dashboard(docs: list[dict]) -> dict:
    return json.loads(find(docs, "ConfigMap", "-dashboard")["data"]["stan.json"])


def alerts(rules: dict) -> list[dict]:
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_everything_enabled_lints() -> None:
    lint = helm("lint", "--strict", str(CHART), *sets(ENABLED))
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_monitoring_is_opt_in() -> None:
    """Their kinds need the Prometheus Operator, which a cluster may lack; the dashboard, Grafana."""
    defaults = render({})
    assert not {doc["kind"] for doc in defaults} & {"ServiceMonitor", "PrometheusRule"}
    assert [doc for doc in defaults if doc["metadata"]["name"].endswith("-dashboard")] == []


def test_the_service_monitor_scrapes_each_operators_metrics_port(docs: list[dict]) -> None:
    service, monitor = find(docs, "Service", "-metrics"), find(docs, "ServiceMonitor")
    selected = [
        doc
        for doc in docs
        if doc["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= doc["metadata"]["labels"].items()
    ]
    assert selected == [service], "the webhook's Service carries the operator's labels too"
    pod_labels = find(docs, "Deployment", "-operator")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {port["name"]: port["containerPort"] for port in container(docs, "operator")["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] == monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert {"name": "STAN_METRICS_PORT", "value": str(ports["metrics"])} in container(docs, "operator")["env"]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True, "the tenant's `namespace` label must survive"


def test_the_network_policy_admits_scrapes() -> None:
    def metrics_rule(values: dict[str, str]) -> dict:
        ingress = find(render(values), "NetworkPolicy", "-operator")["spec"]["ingress"]
        return next(rule for rule in ingress if rule["ports"] == [{"port": 9090, "protocol": "TCP"}])

    assert "from" not in metrics_rule({}), "any source by default"
    assert "from" not in metrics_rule({"webhook.enabled": "false"})
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    restricted = {
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name": "monitoring"
    }
    assert metrics_rule(restricted)["from"] == [monitoring]


def test_promtool_accepts_the_rules_and_each_alert_fires_when_it_should(
    promtool: Path, rules: dict, tmp_path: Path
) -> None:
    """The unit tests get the rules without annotations: they say when each alert fires, the
    annotations' templates are checked by `check rules`."""
    (tmp_path / "checked.yaml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run([promtool, "check", "rules", tmp_path / "checked.yaml"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    unannotated = [
        {
            **group,
            "rules": [{key: value for key, value in rule.items() if key != "annotations"} for rule in group["rules"]],
        }
        for group in rules["groups"]
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": unannotated}))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    tested = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_and_links_its_runbook(rules: dict) -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    headings = re.findall(r"^#+ (.+)$", (CHART / "README.md").read_text(), re.MULTILINE)
    anchors = {re.sub(r"[^\w-]", "", heading.lower().replace(" ", "-")) for heading in headings}
    for alert in alerts(rules):
        assert alert["alert"] in tested
        assert {"summary", "description", "runbook_url"} <= alert["annotations"].keys()
        assert alert["annotations"]["runbook_url"].split("#")[1] in anchors, alert["alert"]


def test_alerts_and_dashboard_query_only_the_operators_metrics(rules: dict, dashboard: dict) -> None:
    expressions = [alert["expr"] for alert in alerts(rules)]
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [
        re.sub(r"^label_values\((.+), *\w+\)$", r"\1", variable["query"])
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    queried = {name for expression in expressions for name in metric_names(expression)}
    assert queried - queryable() == set()


def test_the_dashboard_queries_the_chosen_data_source(dashboard: dict) -> None:
    assert [variable["name"] for variable in dashboard["templating"]["list"]] == ["datasource", "job"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert {target["datasource"]["uid"] for target in panel["targets"]} == {"${datasource}"}
