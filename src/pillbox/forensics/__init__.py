"""Crash evidence: captured in the child (blackbox), decoded in the supervisor (classify,
faultlog)."""
