"""Ray actors: thin shells around the core (rollout workers, policy learners, reward and judge workers)."""
