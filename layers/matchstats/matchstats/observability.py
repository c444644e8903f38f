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
# Patch only botocore (the SQS and Secrets Manager calls). Auto-patching makes the X-Ray
# SDK import every library it can trace, psycopg included, into the API and schedule
# functions that never touch the database: a slower cold start for nothing.
tracer = Tracer(service=SERVICE, patch_modules=["botocore"])
