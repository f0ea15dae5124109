"""recloop: real-time recommendation and decision making with reinforcement learning."""

from recloop.client import Loop
from recloop.core.types import Action, Decision, JoinedExample, Reward

__all__ = ["Action", "Decision", "JoinedExample", "Loop", "Reward"]
__version__ = "0.1.0"
