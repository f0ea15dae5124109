"""How many threads PyTorch gets in each of ``recloop serve``'s processes.

Serving scores small networks (one request's candidates), where PyTorch's intra-op threads
(one per core by default) buy nothing; and while another process holds a core (the
pipeline's training), every operation waits for its second thread to be scheduled.
Serving DRN with a core busy elsewhere was about twice as fast on one thread as on two
(README, "Measurements behind the code"). So the serving processes run PyTorch on one
thread, and the pipeline process, which trains, on every core but one.

Through ``OMP_NUM_THREADS``, read when PyTorch loads (lazily, with the first model that
needs it): OpenMP's thread count is per thread once set, so ``torch.set_num_threads`` in
the tick thread that loads a model would leave the threads that answer requests as they
were. A value the user set is left alone, in both processes.
"""

from __future__ import annotations

import os

ENV = "OMP_NUM_THREADS"
_OURS = "RECLOOP_SET_OMP_NUM_THREADS"
"""Marks ``OMP_NUM_THREADS`` as recloop's choice (inherited by child processes), so that
the pipeline process can tell it from the user's."""


def _users_choice() -> str | None:
    if ENV in os.environ and _OURS not in os.environ:
        return os.environ[ENV]
    return None


def serve_on_one_thread() -> None:
    """For a serving process, before anything imports PyTorch."""
    if _users_choice() is None:
        os.environ[ENV] = "1"
        os.environ[_OURS] = "1"


def train_on_all_cores_but_one() -> None:
    """For the pipeline process, before anything imports PyTorch: its major updates would
    otherwise take the serving process's core too (README, "Measurements behind the
    code")."""
    if _users_choice() is None:
        os.environ[ENV] = str(max(1, (os.cpu_count() or 2) - 1))
        os.environ[_OURS] = "1"
