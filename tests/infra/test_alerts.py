"""Alert rules and Prometheus config (infra/prometheus/) with Debian's promtool: they load, and
each alert fires on a sick input and stays quiet on a healthy one (alerts.test.yml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import need_binary

PROMETHEUS = Path(__file__).resolve().parents[2] / "infra" / "prometheus"

pytestmark = pytest.mark.engine


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need_binary("promtool"), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def test_rules_and_config_load() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0 and "SUCCESS: 9 rules found" in rules.stdout, rules.stdout + rules.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    cases = [case for test in yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
             for case in test["alert_rule_test"]]
    alerts = {rule["alert"] for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
              for rule in group["rules"]}
    assert alerts == {case["alertname"] for case in cases if case["exp_alerts"]}, "an alert never fires in the test"
    assert alerts == {case["alertname"] for case in cases if not case["exp_alerts"]}, "an alert is never tested quiet"
