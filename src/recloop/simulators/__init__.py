"""Synthetic populations and simulator adapters that play against a loop."""
