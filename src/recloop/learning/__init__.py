"""Consumers of the log: joiner runner, online learner, evaluators, checkpoint cadence."""
