"""Apply: lock, execute a plan's waves, verify, record, prove convergence."""
