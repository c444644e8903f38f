"""matchstats: the shared code of the matchstats Lambda functions (the Lambda layer)."""
