"""Pure helpers of the Ray plumbing: chunking and rank order over placement-group bundles."""
import ray

from medgrpo_ray.driver.cluster import actor_env, bundles_by_node, split


def test_split_near_equal_and_never_empty():
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split([1, 2], 5) == [[1], [2]]
    assert split([], 3) == []


def test_ranks_follow_nodes(monkeypatch):
    """Bundles 0..3 placed on nodes B, A, B, A: ranks 0, 1 go to node A's bundles (1, 3), ranks 2, 3 to B's."""
    table = {"bundles": {0: {}, 1: {}, 2: {}, 3: {}}, "bundles_to_node_id": {0: "B", 1: "A", 2: "B", 3: "A"}}
    monkeypatch.setattr(ray.util, "placement_group_table", lambda pg: table)
    assert bundles_by_node(object()) == [1, 3, 0, 2]


def test_actor_env_defers_to_user_settings(monkeypatch):
    from medgrpo_ray.config import load_config

    cfg = load_config(None, ["rollout.kv_cache_space_gib=3", "ray.env_vars.OMP_NUM_THREADS=4"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = actor_env(cfg)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3" and env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert env["OMP_NUM_THREADS"] == "4"  # the user's value wins over the default thread count
    assert env["HF_HUB_OFFLINE"] == "1"


def test_each_actor_gets_the_threads_its_cpus_pay_for():
    from medgrpo_ray.config import load_config
    from medgrpo_ray.driver.cluster import actor_options, actor_threads

    assert (actor_threads(8), actor_threads(0), actor_threads(None), actor_threads(4, 2), actor_threads(0.5)) == \
        (8, 1, 1, 2, 1)
    cfg = load_config(None, [])
    env = lambda **kw: actor_options(cfg, "a", **kw)["runtime_env"]["env_vars"]["OMP_NUM_THREADS"]  # noqa: E731
    assert (env(num_cpus=8), env(num_cpus=0), env(num_cpus=4, threads=2)) == ("8", "1", "2")
    user = load_config(None, ["ray.env_vars.OMP_NUM_THREADS=3"])
    assert actor_options(user, "a", num_cpus=8)["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "3"


def test_video_decode_uses_the_actors_threads(monkeypatch):
    from medgrpo_ray.data.video import decode_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert decode_threads() == 6
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert decode_threads() == 1
