"""The systemd units and environment file in deploy/ (docs/deploy.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import LOADBELL_BIN
from loadbell.settings import Settings

DEPLOY = Path(__file__).parents[1] / "deploy"
UNITS = {  # unit file -> an instance to verify it as
    "loadbell-serve@.service": "loadbell-serve@8081.service",
    "loadbell-worker@.service": "loadbell-worker@1.service",
}
INSTALLED_BIN = "/opt/loadbell/.venv/bin/loadbell"
ENV_FILE = "/etc/loadbell/loadbell.env"
REQUESTS_GRACE = 10  # seconds: cli/server.py REQUESTS_GRACE


def _directives(unit: str) -> dict[str, str]:
    text = (DEPLOY / unit).read_text()
    return dict(re.findall(r"^(\w+)=(.*)$", text, flags=re.MULTILINE))


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_stops_with_sigterm_and_waits_long_enough(unit: str) -> None:
    """Each unit stops its process with SIGTERM and waits longer than a graceful stop can
    take with the default lease (requests, then attempts, then result writes)."""
    d = _directives(unit)
    assert d["KillSignal"] == "SIGTERM"
    lease = Settings.model_fields["lease_seconds"].default
    assert float(d["TimeoutStopSec"]) > REQUESTS_GRACE + 2 * lease
    assert d["ExecStart"].startswith(INSTALLED_BIN + " ")
    assert d["EnvironmentFile"] == ENV_FILE


def test_environment_example_names_real_settings() -> None:
    """The environment file example sets the production settings, each one a real setting."""
    text = (DEPLOY / "loadbell.env.example").read_text()
    names = re.findall(r"^#?(LOADBELL_\w+)=", text, flags=re.MULTILINE)
    fields = {f"LOADBELL_{name.upper()}" for name in Settings.model_fields}
    assert set(names) <= fields, set(names) - fields
    values = dict(re.findall(r"^(LOADBELL_\w+)=(.*)$", text, flags=re.MULTILINE))
    assert values["LOADBELL_LOG_FORMAT"] == "json"
    assert values["LOADBELL_DATABASE_URL"].startswith("postgresql://")
    assert {"LOADBELL_SECRET_KEY", "LOADBELL_PUBLIC_URL"} <= values.keys()


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts both units, with this venv's loadbell as ExecStart
    and nothing to say about them (an unknown key is only a warning, so warnings fail)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    env_file = tmp_path / "loadbell.env"
    shutil.copy(DEPLOY / "loadbell.env.example", env_file)
    for unit, instance in UNITS.items():
        text = (DEPLOY / unit).read_text()
        text = text.replace(INSTALLED_BIN, LOADBELL_BIN).replace(ENV_FILE, str(env_file))
        (tmp_path / instance).write_text(text)
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / i) for i in UNITS.values())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    about_ours = [line for line in done.stderr.splitlines() if "loadbell" in line]
    assert done.returncode == 0 and not about_ours, done.stderr
