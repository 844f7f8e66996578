"""csync: a GitOps reconciler for DSAU configuration synchronization."""

__version__ = "0.1.0"
