"""Who holds a colocated GPU's memory when (placement=colocated, rollout.colocated_memory=sleep).

A learner rank and its engine share one GPU. Under `static` both stay resident and every call here is a no-op.
Under `sleep` they take turns, in this order within a step (the driver calls the phase hooks; this class turns
them into actor calls, and tracks the learner's states so they move only when they must):

    before_rollout   learner states off the GPU (optimizer states, gradients, master weights: offload_states);
                     engine awake: everything, or only its KV cache when the weights woke for the last sync
    (rollout)
    after_rollout    engine to sleep (vLLM sleep level 1: weights to host memory, KV cache freed)
    before_update    learner states back on the GPU (reload_states)
    (update)
    before_sync      engine weights back (wake_up(tags=["weights"])): the hand-over copies into them; the KV
                     cache stays freed until the next rollout
    (hand-over)

Engines are not tracked here: each engine knows what of it sleeps (a wake-up of what is awake, or a sleep of what
sleeps, is a no-op: actors/rollout_worker.py), because one that restarted comes up asleep on its own (an engine
puts itself to sleep once loaded, so it never holds its share while the learner does) whatever the others do.
The learner ranks never restart: their state is tracked, so states move only when they must. `engines` and
`learners` are callables `(method, *args)` that run the method on every engine / learner rank and wait: the
driver passes Ray calls, the tests recording stand-ins. No Ray here.
"""
from __future__ import annotations

from typing import Any, Callable

Call = Callable[..., Any]
SLEEP_LEVEL = 1  # level 1 keeps the weights (host memory): frozen ones are never re-sent, so level 2 would lose them


class MemoryPhases:
    def __init__(self, mode: str, engines: Call, learners: Call) -> None:
        if mode not in ("static", "sleep"):
            raise ValueError(f"rollout.colocated_memory = {mode!r}: choose static or sleep")
        self.mode, self.engines, self.learners = mode, engines, learners
        self.learner = "resident"  # resident | offloaded (learner ranks never restart: tracked here)

    @property
    def active(self) -> bool:
        return self.mode == "sleep"

    def before_rollout(self) -> None:
        if not self.active:
            return
        if self.learner == "resident":
            self.learners("offload_states")
            self.learner = "offloaded"
        self.engines("wake_up", None)  # what is asleep wakes (only the KV cache after a sync's weights wake-up)

    def after_rollout(self) -> None:
        if self.active:
            self.engines("sleep", SLEEP_LEVEL)

    def before_update(self) -> None:
        if self.active and self.learner == "offloaded":
            self.learners("reload_states")
            self.learner = "resident"

    def before_sync(self) -> None:
        """Before weights are handed to the engines (after an update, on resume, or to a restarted engine)."""
        if not self.active:
            return
        if self.learner == "offloaded":  # the hand-over reads the learner's weights on the GPU
            self.learners("reload_states")
            self.learner = "resident"
        self.engines("wake_up", ["weights"])
