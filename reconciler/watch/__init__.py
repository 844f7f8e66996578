"""`csync watch`: continuous reconciliation over warm SSH sessions, with Prometheus metrics.

- `loop`: the cycle (reload, probe and plan, compare, metrics, heal) and the wait between;
- `connections`: `WarmPool`, one session per host kept open, reconnected with backoff;
- `backoff`: when to try again (reconnects, heals);
- `snapshot`: what a cycle saw, and the changes from the cycle before (pure);
- `readiness`: failover-ready now: yes, no or unknown (pure);
- `heal`: `--heal`: key actions only, as an apply under the site lock;
- `source`: the desired state, and when its files changed;
- `metrics`: the metrics and the /metrics and /healthz server;
- `log`: one line per event, text or JSON.
"""
