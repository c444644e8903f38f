"""checkov, an independent infrastructure scanner, finds no failed check in template.yaml.

Every check that does not apply to this design is skipped in the template itself, on the
resource it concerns, with the reason a security reviewer would ask for (Metadata:
checkov: skip: [{id, comment}]). Nothing is skipped globally, so a new resource is
scanned against every check.

checkov runs as a subprocess from .venv-checkov (its exact boto3 pin disagrees with
aws-sam-cli's, so it cannot share .venv-sam); `make test` installs it and passes the
binary in through MATCHSTATS_CHECKOV_BIN. Run outside make without it, the scan is
skipped with a reason rather than failed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.template import load_template

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
# A reason is a sentence or two; "n/a" or "false positive" is not one.
MIN_REASON_CHARS = 80
CHECK_ID = re.compile(r"^CKV2?_AWS_\d+$")
# Where checkov reads options from when no --config-file is given.
CHECKOV_CONFIG_FILES = (".checkov.yaml", ".checkov.yml")


def _checkov() -> Path:
    configured = os.environ.get("MATCHSTATS_CHECKOV_BIN")
    if configured:
        path = Path(configured)
        if not path.is_file():
            pytest.fail(
                f"MATCHSTATS_CHECKOV_BIN={configured} does not exist (`make test` installs it)"
            )
        return path
    path = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
    if not path.is_file():
        pytest.skip(
            "checkov is not installed: run `make test` (which builds .venv-checkov), "
            "or set MATCHSTATS_CHECKOV_BIN"
        )
    return path


def scan(template: Path, checkov: Path, work_dir: Path) -> dict[str, Any]:
    """checkov's JSON report of `template`: {"summary": {...}, "results": {...}}.

    Offline by construction: no Prisma Cloud download (--skip-download, BC_SKIP_MAPPING)
    and no PyPI version check (CKV_SKIP_PACKAGE_UPDATE_CHECK).
    """
    environment = {
        **os.environ,
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
        "BC_SKIP_MAPPING": "TRUE",
        "CKV_CACHE_DIR": str(work_dir / "checkov-cache"),
    }
    result = subprocess.run(  # noqa: S603 (fixed arguments, no shell)
        [
            str(checkov),
            *("--file", str(template)),
            *("--framework", "cloudformation"),
            "--skip-download",
            *("--output", "json"),
        ],
        cwd=work_dir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    # checkov exits 1 when a check fails; anything it cannot parse is a broken run.
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov exited {result.returncode} without a report:\n{result.stderr}")
    if not isinstance(report, dict):
        pytest.fail(f"expected one cloudformation report, got {type(report).__name__}")
    return report


def failures(report: dict[str, Any]) -> list[str]:
    """One line per failed check: id, resource, name and where it is in the file."""
    return [
        f"{check['check_id']} {check['resource']} ({check['check_name']}, "
        f"lines {check['file_line_range'][0]}-{check['file_line_range'][1]})"
        for check in report["results"]["failed_checks"]
    ]


def template_skips(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(logical id, skip entry) for every checkov skip written in the template."""
    return [
        (logical_id, skip)
        for logical_id, resource in template["Resources"].items()
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return scan(TEMPLATE, _checkov(), tmp_path_factory.mktemp("checkov"))


def test_checkov_finds_no_failed_check_in_the_template(report: dict[str, Any]) -> None:
    # Given checkov's report on template.yaml
    summary = report["summary"]

    # When listing the checks that failed
    failed = failures(report)

    # Then there are none, and the scanner saw every resource and passed real checks
    assert failed == [], "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] == len(load_template(TEMPLATE)["Resources"])
    assert summary["passed"] > 0


def test_checkov_skips_exactly_what_the_template_skips(report: dict[str, Any]) -> None:
    # Given the skips written in the template and the checks checkov reports as skipped
    written = {(skip["id"], logical_id) for logical_id, skip in template_skips(load_template())}
    reported = {
        (check["check_id"], check["resource"].split(".", 1)[1])
        for check in report["results"]["skipped_checks"]
    }

    # When comparing them, Then each skip names a check that applies to its resource
    # (a skip of a check that never runs there is a reason nobody reviews)
    assert written
    assert reported == written


def test_every_skip_is_on_one_resource_with_a_reason() -> None:
    # Given every checkov skip in the template
    skips = template_skips(load_template())

    # When checking each one's check id and reason
    vague = [
        f"{logical_id}: {skip.get('id')!r}"
        for logical_id, skip in skips
        if not CHECK_ID.match(str(skip.get("id", "")))
        or len(" ".join(str(skip.get("comment", "")).split())) < MIN_REASON_CHARS
    ]

    # Then each names one check and says why, and no configuration file skips checks
    # for every resource at once
    assert skips
    assert vague == []
    for name in CHECKOV_CONFIG_FILES:
        config = REPO_ROOT / name
        if config.exists():
            options = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
            assert not {"skip-check", "skip_check"} & set(options), f"{name} skips checks"


def test_a_removed_skip_fails_the_scan_and_names_the_check_and_resource(
    tmp_path: Path,
) -> None:
    # Given a copy of the template without the skip on PointsQueue's encryption check
    text = TEMPLATE.read_text(encoding="utf-8")
    start = text.index("  PointsQueue:\n")
    metadata = text.index("    Metadata:\n", start)
    properties = text.index("    Properties:\n", start)
    planted = tmp_path / "template.yaml"
    planted.write_text(text[:metadata] + text[properties:], encoding="utf-8")

    # When checkov scans the copy
    failed = failures(scan(planted, _checkov(), tmp_path))

    # Then that check fails, and the failure names the check and the resource
    assert len(failed) == 1, failed
    assert failed[0].startswith("CKV_AWS_27 AWS::SQS::Queue.PointsQueue (")
