"""SAM CLI and cfn-lint accept template.yaml, and the stored SAM-generated schedule event is
what SAM CLI prints.

The linters run as subprocesses from the separate .venv-sam virtualenv (aws-sam-cli pins
its own boto3); `make test` installs it and passes the binaries in through the
environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"


def _linter(env_var: str, name: str) -> Path:
    configured = os.environ.get(env_var)
    path = Path(configured) if configured else REPO_ROOT / ".venv-sam" / "bin" / name
    if not path.is_file():
        pytest.fail(
            f"{name} not found at {path} (set {env_var} or run `make test`, "
            f"which installs it into .venv-sam)"
        )
    return path


@pytest.fixture(scope="module")
def sam_app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SAM CLI config directory whose weekly update check has just run.

    Without it `sam` may ask PyPI for a newer version, which a unit test must not do.
    """
    app_dir = tmp_path_factory.mktemp("sam-app-dir")
    metadata = {"lastVersionCheck": time.time(), "telemetryEnabled": False}
    (app_dir / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    return app_dir


def _run(command: list[str], sam_app_dir: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        # SAM CLI's own override of its config directory (~/.aws-sam by default).
        "__SAM_CLI_APP_DIR": str(sam_app_dir),
    }
    return subprocess.run(  # noqa: S603 (fixed arguments, no shell)
        command,
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_sam_validate_lint_accepts_the_template(sam_app_dir: Path) -> None:
    # Given the SAM CLI from .venv-sam
    sam = _linter("MATCHSTATS_SAM_BIN", "sam")

    # When validating the template with its linter
    result = _run([str(sam), "validate", "--lint", "--template", str(TEMPLATE)], sam_app_dir)

    # Then it passes
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_sam_generated_schedule_event_is_what_sam_cli_prints(sam_app_dir: Path) -> None:
    # Given the SAM CLI from .venv-sam, and the sample event stored from it
    sam = _linter("MATCHSTATS_SAM_BIN", "sam")
    stored = REPO_ROOT / "events" / "scheduled-refresh-sam-generated.json"

    # When SAM CLI generates a scheduled event, as a person trying the function would
    command = [str(sam), "local", "generate-event", "cloudwatch", "scheduled-event"]
    result = _run(command, sam_app_dir)

    # Then the stored event is that event, so the tests try what a person sends
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == json.loads(stored.read_text(encoding="utf-8"))


def test_cfn_lint_accepts_the_template(sam_app_dir: Path) -> None:
    # Given cfn-lint from .venv-sam
    cfn_lint = _linter("MATCHSTATS_CFN_LINT_BIN", "cfn-lint")

    # When linting the template
    result = _run([str(cfn_lint), str(TEMPLATE)], sam_app_dir)

    # Then it reports nothing
    assert result.returncode == 0, result.stdout + result.stderr
