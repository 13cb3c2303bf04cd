"""The OpenAPI document tells the truth: schemathesis drives every operation of a real server
and finds no 5xx, no undocumented status, and no answer outside its schema (docs/api.md,
"Contract test")."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

from conftest import Server
from loopback import loopback_only

# Fuzzing examples per operation. The default keeps the run near three minutes per database
# on CI's two shared cores; CONTRACT_EXAMPLES=1000 is the long run of docs/api.md.
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "50"))
SEED = int(os.environ.get("CONTRACT_SEED", "20261205"))
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the 5xx some operations answer by design
CHECKS = ",".join(
    (
        "not_a_server_error",  # no 5xx
        "status_code_conformance",  # every status is one the operation documents
        "response_schema_conformance",  # every body matches the documented model
        "content_type_conformance",  # and is the documented media type
    )
)


def _requests_sent(report_dir: Path) -> int:
    """How many requests the run made: one HAR entry each."""
    return sum(
        len(json.loads(har.read_text())["log"]["entries"]) for har in report_dir.glob("har-*.json")
    )


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is a test dependency: bin/dev test installs it"
    return found


async def test_every_operation_conforms_to_the_document(app_server: Server, tmp_path: Path) -> None:
    """schemathesis (examples, coverage, fuzzing and stateful phases) against every operation
    ends with zero failures; the generated targets are kept on loopback by the jail."""
    with loopback_only():
        proc = await asyncio.create_subprocess_exec(
            _schemathesis(),
            "--config-file",
            str(CONFIG),
            "run",
            f"{app_server.url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {app_server.token}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--report",
            "junit,har",
            "--report-dir",
            str(tmp_path),
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"},
            cwd=tmp_path,  # schemathesis keeps a .schemathesis folder where it runs
        )
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    print(text)  # the summary, in the test log of a failure or of `pytest -s`
    print(f"requests sent: {_requests_sent(tmp_path)}")  # the figure docs/api.md records
    assert proc.returncode == 0, text[-6000:]
