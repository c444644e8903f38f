"""One Logger, Metrics and Tracer for every function.

Named by the POWERTOOLS_* variables that template.yaml sets; the defaults keep a
local run or a test that imports a handler before setting them from failing.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "matchstats")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Matchstats")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)
