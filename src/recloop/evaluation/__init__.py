"""Off-policy evaluation: estimators and the online evaluators of a loop."""
