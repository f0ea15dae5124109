"""recloop: real-time recommendation and decision making with reinforcement learning."""

from recloop.client import Loop
from recloop.core.types import Action, BehaviourEvent, Decision, JoinedExample, Reward
from recloop.streaming.service import Stream

__all__ = ["Action", "BehaviourEvent", "Decision", "JoinedExample", "Loop", "Reward", "Stream"]
__version__ = "0.1.0"
