"""Policies: map a context and candidate actions to scores (higher is better)."""
