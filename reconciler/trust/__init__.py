"""Failover readiness: the trust matrix predicted from facts, and proven live."""
