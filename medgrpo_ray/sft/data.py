"""SFT data: answer tokens of a record and an epoch-ordered record cursor with exact-resume state."""
from __future__ import annotations

import numpy as np


def answer_token_ids(tokenizer, answer: str) -> list[int]:
    """The tokens the policy must generate for `answer`: its text as the chat template's assistant turn holds it,
    then EOS (`<|im_end|>` for Qwen-VL), which is where rollout generation stops."""
    ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    return ids + [int(tokenizer.eos_token_id)]


class EpochCursor:
    """Records in a seeded permutation per epoch (a pure function of (seed, epoch)), taken `n` at a time across
    epoch boundaries; `exclude` skips quarantined records. State: epoch, position and excluded set (JSON)."""

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("EpochCursor: no records to train on")
        self.n, self.seed = int(n), int(seed)
        self.epoch, self.pos = 0, 0
        self._excluded: set[int] = set()
        self._perm: tuple[int, np.ndarray] | None = None

    def _order(self) -> np.ndarray:
        if self._perm is None or self._perm[0] != self.epoch:
            self._perm = (self.epoch, np.random.default_rng([self.seed, 7, self.epoch]).permutation(self.n))
        return self._perm[1]

    @property
    def epochs_done(self) -> float:
        """Fractional epochs consumed (position within the current epoch over its size)."""
        return self.epoch + self.pos / self.n

    def exclude(self, indices) -> None:
        self._excluded.update(int(i) for i in indices)

    def next_batch(self, k: int) -> list[int]:
        if len(self._excluded) >= self.n:
            raise RuntimeError("every SFT record is quarantined: nothing left to train on (see quarantine.jsonl)")
        out = []
        while len(out) < k:
            i = int(self._order()[self.pos])
            self.pos += 1
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
            if i not in self._excluded:
                out.append(i)
        return out

    def state_dict(self) -> dict:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "pos": self.pos, "excluded": sorted(self._excluded)}

    def load_state_dict(self, d: dict) -> None:
        if d.get("n") != self.n or d.get("seed") != self.seed:
            raise ValueError(f"SFT cursor state is for {d.get('n')} records / seed {d.get('seed')}; this run has "
                             f"{self.n} records / seed {self.seed}: the training records or the seed changed")
        self.epoch, self.pos = int(d["epoch"]), int(d["pos"])
        self._excluded = set(int(i) for i in d.get("excluded", []))
        self._perm = None
