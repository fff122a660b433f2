"""Checkpoint storage (medgrpo_ray/checkpoint/storage.py) against a real S3-compatible server on 127.0.0.1 and a local
directory: upload, download, the parts check that gates `latest`, and the reachability probe."""
from __future__ import annotations

import pytest

from medgrpo_ray.checkpoint import storage
from s3_server import s3_server


@pytest.fixture(scope="module")
def s3():
    with s3_server() as uri:
        yield uri


def _tree(root):
    (root / "deepspeed" / "state").mkdir(parents=True)
    (root / "deepspeed" / "state" / "mp_rank_00_model_states.pt").write_bytes(b"x" * 1000)
    (root / "rng.pt").write_bytes(b"rng")
    return {"deepspeed/state/mp_rank_00_model_states.pt": 1000, "rng.pt": 3}


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_upload_check_download_round_trip(kind, s3, tmp_path):
    uri = s3("ckpt/runs") if kind == "s3" else str(tmp_path / "shared")
    loc = storage.resolve(uri)
    expected = _tree(tmp_path / "src")
    prefix = loc.join("run", "step_000002")
    assert storage.upload_dir(tmp_path / "src", loc, prefix) == expected
    assert storage.missing_parts(loc, prefix, expected) == []
    assert storage.missing_parts(loc, prefix, {**expected, "hf/model.safetensors": 10}) == ["hf/model.safetensors"]
    assert storage.missing_parts(loc, prefix, {**expected, "rng.pt": 4}) == ["rng.pt"]  # a short part counts
    assert storage.download_dir(loc, prefix, tmp_path / "back") == 2
    assert (tmp_path / "back" / "deepspeed/state/mp_rank_00_model_states.pt").read_bytes() == b"x" * 1000
    storage.write_text(loc, loc.join("run", "latest"), "step_000002\n")
    assert storage.read_text(loc, loc.join("run", "latest")) == "step_000002\n"
    assert storage.read_text(loc, loc.join("run", "nope")) is None
    storage.delete_dir(loc, prefix)
    assert storage.list_sizes(loc, prefix) == {}
    with pytest.raises(FileNotFoundError, match="nothing under"):
        storage.download_dir(loc, prefix, tmp_path / "again")


def test_probe_names_who_and_the_setting(s3, tmp_path):
    assert storage.probe(s3("ckpt/runs"), "learner-0 on node 10.0.0.1") == "learner-0 on node 10.0.0.1"
    unreachable = s3("ckpt/runs").split("endpoint_override=")[0] + "endpoint_override=127.0.0.1:9&scheme=http"
    with pytest.raises(OSError, match=r"checkpoint\.storage 's3://ckpt/runs' is not reachable from rollout-1 on node 10\.0\.0\.2"):
        storage.probe(unreachable, "rollout-1 on node 10.0.0.2")
    blocked = tmp_path / "ro"
    blocked.write_text("a file, not a directory")
    with pytest.raises(OSError, match="not reachable from the driver"):
        storage.probe(str(blocked / "ckpts"), "the driver")
    with pytest.raises(ValueError, match="relative path"):
        storage.resolve("ckpts")
    assert storage.Location("s3://key:secret@bucket/p?region=x", None, "bucket/p").describe() == "s3://***@bucket/p"
