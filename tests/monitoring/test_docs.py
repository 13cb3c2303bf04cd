"""docs/metrics.md: its alert rules parse and name only metrics loadbell serves."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from loadbell.monitoring.registry import Metrics

DOC = Path(__file__).parents[2] / "docs" / "metrics.md"


def test_alert_rules_parse_and_use_real_metrics() -> None:
    """The YAML block is a Prometheus rule file whose expressions use served metrics, and
    the table lists every metric the registry has."""
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None
    rules = yaml.safe_load(block.group(1))["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {"LoadbellBacklogGrowing", "LoadbellChannelKindFailing"}
    served = {m.name for m in Metrics("test").registry.collect()}
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "for", "annotations"}
        used = set(re.findall(r"loadbell_[a-z_]+", rule["expr"]))
        assert used and used <= {*served, *(n + "_total" for n in served)}, rule["expr"]
    for name in served:
        shown = name + "_total" if f"`{name}_total`" in DOC.read_text() else name
        assert f"`{shown}`" in DOC.read_text(), name
