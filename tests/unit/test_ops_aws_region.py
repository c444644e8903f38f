"""The operator command finds its AWS region where the README and its help say: --region,
then AWS_REGION (which botocore alone does not read), then AWS_DEFAULT_REGION."""

from __future__ import annotations

import pytest

from ops.aws import Aws


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> pytest.MonkeyPatch:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/no-config")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return monkeypatch


@pytest.mark.parametrize(
    ("argument", "environment", "expected"),
    [
        (None, {"AWS_REGION": "eu-central-1"}, "eu-central-1"),
        (None, {"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ("us-west-2", {"AWS_REGION": "eu-central-1"}, "us-west-2"),
    ],
)
def test_the_region_comes_from_the_argument_then_aws_region_then_the_default(
    no_aws_environment: pytest.MonkeyPatch,
    argument: str | None,
    environment: dict[str, str],
    expected: str,
) -> None:
    for name, value in environment.items():
        no_aws_environment.setenv(name, value)
    assert Aws(region=argument).events.meta.region_name == expected
