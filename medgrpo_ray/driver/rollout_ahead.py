"""One step's prompts as a `Batch`, and the rollout kept one step ahead of the learner (`algorithm.rollout_ahead=1`).

With rollout ahead, step t's driver launches the rollout of step t+1 in a background thread just before the
learner call of step t, so generation (rollout workers) and learning (learner group) run at the same time; the
rollout uses the weights of step t-1's update (one step stale; the learner corrects with a truncated importance
weight, grpo/loss.py). The driver waits for the rollout before it syncs new weights: actors run one call at a
time and the sync must not land in the middle of a generation.

At a step's end the next batch's finished groups are held here; a checkpoint stores them
(`pending_rollout.json`), so a resumed run trains on exactly the groups the uninterrupted run did, neither
generating them again nor losing them.
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

PENDING_FILE = "pending_rollout.json"


@dataclass
class Batch:
    """One step's prompts: the records drawn (indices into the training records), their rollout items, and once
    rolled out the groups, the number of learner steps in the weights that generated them, and the time it took."""

    step: int  # the step (0-based) this batch trains at
    idx: list[int]
    items: list  # RolloutItem per drawn record, in order
    groups: dict | None = None  # group id -> RolloutGroup
    policy_step: int = 0  # learner steps in the weights that generated the groups
    workers_resynced: int = 0  # rollout workers re-sent weights before this rollout (they had restarted)
    span: tuple[float, float] = (0.0, 0.0)  # perf_counter at the rollout's start and end (this process only)

    @property
    def rollout_s(self) -> float:
        """Seconds the rollout took (0 for a batch restored from a checkpoint)."""
        return self.span[1] - self.span[0]

    def to_json(self) -> dict:
        """A plain-JSON form (records by index, so the file holds no copies of them)."""
        return {"step": self.step, "idx": list(self.idx), "policy_step": self.policy_step,
                "workers_resynced": self.workers_resynced,
                "items": [{"group_id": it.group_id, "seed": it.seed} for it in self.items],
                "groups": [dataclasses.asdict(self.groups[it.group_id]) for it in self.items]}

    @classmethod
    def from_json(cls, d: dict, records) -> "Batch":
        """Inverse of to_json; `records` are the trainer's training records (the indices refer to them)."""
        from medgrpo_ray.rollout.types import Completion, RolloutGroup, RolloutItem

        idx = [int(k) for k in d["idx"]]
        if any(not 0 <= k < len(records) for k in idx):
            raise ValueError(f"{PENDING_FILE}: record indices outside the {len(records)} training records; the "
                             "checkpoint was written for another data.train_path / data.tasks / data.datasets")
        items = [RolloutItem(group_id=int(it["group_id"]), record=records[k].shared_dict(), seed=it["seed"])
                 for it, k in zip(d["items"], idx)]
        groups = {}
        for g in d["groups"]:
            g = dict(g)
            g["completions"] = [Completion(**c) for c in g["completions"]]
            groups[int(g["group_id"])] = RolloutGroup(**g)
        return cls(step=int(d["step"]), idx=idx, items=items, groups=groups, policy_step=int(d["policy_step"]),
                   workers_resynced=int(d.get("workers_resynced", 0)))


@dataclass
class RolloutAhead:
    """The next step's rollout: in flight (a future) or finished and waiting for its step (`ready`)."""

    ready: Batch | None = None
    _future: Future | None = None
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def in_flight(self) -> bool:
        return self._future is not None

    def launch(self, run, batch: Batch) -> None:
        """Start `run(batch)` (it fills the batch's groups) in the background; one rollout at a time."""
        if self._future is not None or self.ready is not None:
            raise RuntimeError("a rollout is already ahead of the learner; take it before launching another")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout-ahead")
        self._future = self._pool.submit(run, batch)

    def wait(self) -> float:
        """Block until the rollout in flight is done (re-raising its error); returns the seconds blocked."""
        if self._future is None:
            return 0.0
        t0 = time.perf_counter()
        future, self._future = self._future, None
        self.ready = future.result()
        return time.perf_counter() - t0

    def take(self) -> Batch | None:
        """The finished batch for the coming step (None when nothing was rolled out ahead)."""
        self.wait()
        batch, self.ready = self.ready, None
        return batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
