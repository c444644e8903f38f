"""A stand-in for the Lambda context object, for local invocations and tests.

It carries the attributes Powertools reads (the Logger's ``inject_lambda_context``
uses function_name, memory_limit_in_mb, invoked_function_arn and aws_request_id)
and a real countdown, so code that budgets its work with
``get_remaining_time_in_millis()`` behaves as it would under the function timeout.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_REGION = "us-east-1"


def function_arn(
    function_name: str, region: str = LOCAL_REGION, account_id: str = LOCAL_ACCOUNT_ID
) -> str:
    return f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"


@dataclass
class LambdaContext:
    function_name: str = "test"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = field(default_factory=lambda: function_arn("test"))
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/test"
    log_stream_name: str = "local"
    timeout_s: float = 3.0
    # Monotonic, so a wall-clock step (NTP, suspend) cannot stretch or cut the budget.
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def for_invocation(
        cls,
        function_name: str,
        timeout_s: float,
        *,
        memory_limit_in_mb: int = 128,
        region: str = LOCAL_REGION,
        account_id: str = LOCAL_ACCOUNT_ID,
    ) -> LambdaContext:
        """A fresh context as Lambda builds one per invocation: new request id, full budget."""
        return cls(
            function_name=function_name,
            memory_limit_in_mb=memory_limit_in_mb,
            invoked_function_arn=function_arn(function_name, region, account_id),
            log_group_name=f"/aws/lambda/{function_name}",
            timeout_s=timeout_s,
        )

    @property
    def deadline(self) -> float:
        """When the invocation times out, on the ``time.monotonic()`` clock."""
        return self.started_at + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))
