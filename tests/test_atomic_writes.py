"""Atomic writes (medgrpo_ray/io/atomic.py) and a process SIGKILLed in the middle of writing the two files later runs
read: the normalization statistics (every later GRPO run loads them) and the pipeline's stage markers (a rerun reads
them to skip finished stages). The kill is injected below any writer's own code: the child process replaces
`open` so that the first write into the target directory writes half its bytes, flushes them, and SIGKILLs the
process, whatever idiom the writer uses."""
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medgrpo_ray.io.atomic import TMP_PREFIX, atomic_path, atomic_write_json, atomic_write_text
from medgrpo_ray.rewards.normalization import NormStats, load_stats, save_stats
from medgrpo_ray.workflows.pipeline import PipelinePaths, Stage, read_marker, run_stages

ROOT = Path(__file__).resolve().parents[1]

KILL_ON_WRITE = textwrap.dedent('''
    import builtins, io, os, signal, sys
    TARGET = os.path.realpath(sys.argv[1])
    _open = io.open

    class _DiesOnWrite:
        """A file whose first write lands half its bytes on disk, then kills the process (no cleanup can run)."""
        def __init__(self, f):
            self._f = f
        def write(self, data):
            self._f.write(data[: max(1, len(data) // 2)])
            self._f.flush()
            os.fsync(self._f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self._f.close()
        def __getattr__(self, name):
            return getattr(self._f, name)

    def _open_that_dies(file, mode="r", *args, **kwargs):
        f = _open(file, mode, *args, **kwargs)
        writing = any(c in mode for c in "wax+")
        if writing and not isinstance(file, int) and os.path.realpath(os.fspath(file)).startswith(TARGET + os.sep):
            return _DiesOnWrite(f)
        return f

    io.open = builtins.open = _open_that_dies
''')


def run_killed_mid_write(target_dir: Path, code: str) -> subprocess.CompletedProcess:
    """Run `code` in a child whose first write into `target_dir` is cut in half by a SIGKILL."""
    script = KILL_ON_WRITE + "\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script, str(target_dir)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_atomic_write_replaces_whole_and_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "first\n")
    assert target.read_text() == "first\n"
    atomic_write_json(target, {"a": 1}, indent=None)
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target, suffix=".txt") as tmp:
            assert tmp.name.startswith(TMP_PREFIX) and tmp.suffix == ".txt" and tmp.parent == target.parent
            tmp.write_text("half")
            raise RuntimeError("disk on fire")
    assert json.loads(target.read_text()) == {"a": 1}
    assert leftovers(target.parent) == []


def test_a_kill_while_the_statistics_file_is_written_leaves_the_previous_file(tmp_path):
    stats_dir = tmp_path / "stats"
    path = stats_dir / "norm_stats.json"
    old = {("CholecT50", "tal"): NormStats(0.25, 0.5, 40, "baseline")}
    save_stats(old, path)
    before = path.read_bytes()

    out = run_killed_mid_write(stats_dir, f"""
        from medgrpo_ray.rewards.normalization import NormStats, save_stats
        new = {{("CholecT50", "tal"): NormStats(0.75, 0.125, 80, "rerun"),
                ("JIGSAWS", "skill_assessment"): NormStats(0.5, 0.25, 12, "rerun")}}
        save_stats(new, {str(path)!r})
        print("not killed")
    """)
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr
    assert "not killed" not in out.stdout
    assert path.read_bytes() == before  # the file runs read is the whole previous version
    assert load_stats(path) == old
    partial = leftovers(stats_dir)
    assert len(partial) == 1 and 0 < partial[0].stat().st_size  # the kill did land mid-write ...
    with pytest.raises(json.JSONDecodeError):
        json.loads(partial[0].read_text())  # ... and what it wrote is torn

    new = {("CholecT50", "tal"): NormStats(0.75, 0.125, 80, "rerun")}
    save_stats(new, path)  # the rerun writes it whole
    assert load_stats(path) == new


def test_a_kill_while_a_stage_marker_is_written_makes_the_rerun_resume_that_stage(tmp_path):
    paths = PipelinePaths(tmp_path / "pipeline")
    counts = tmp_path / "counts.jsonl"
    code = f"""
        import json, sys
        from pathlib import Path
        from medgrpo_ray.workflows.pipeline import PipelinePaths, Stage, run_stages

        def stage(name):
            def run():
                with open({str(counts)!r}, "a") as f:  # outside the killed directory
                    f.write(json.dumps(name) + "\\n")
                return {{"stage": name}}
            return Stage(name, name, run=run)

        print(run_stages([stage("first"), stage("second")], PipelinePaths(Path({str(paths.out)!r}))))
    """
    # first: the "first" stage runs and its marker is written whole (nothing is killed outside stages/second...)
    paths.marker("first").parent.mkdir(parents=True)
    first = run_killed_mid_write(tmp_path / "never", code)
    assert first.returncode == 0, first.stderr
    # "second" is rerun from scratch by deleting its marker, and the kill lands while that marker is written
    paths.marker("second").unlink()
    killed = run_killed_mid_write(paths.marker("second").parent, code)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    runs = [json.loads(line) for line in counts.read_text().splitlines()]
    assert runs == ["first", "second", "second"]  # the killed call skipped "first" and ran "second" again
    assert not paths.marker("second").exists() and leftovers(paths.marker("second").parent)
    assert read_marker(paths.marker("first")) is not None and read_marker(paths.marker("second")) is None

    rerun = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "first: done earlier" in rerun.stdout  # finished stages are skipped ...
    runs = [json.loads(line) for line in counts.read_text().splitlines()]
    assert runs == ["first", "second", "second", "second"]  # ... and the interrupted one runs again, to the end
    assert read_marker(paths.marker("second"))["stage"] == "second"


def test_a_torn_marker_from_an_older_writer_reruns_the_stage_instead_of_crashing(tmp_path, capsys):
    paths = PipelinePaths(tmp_path)
    ran = []
    stage = Stage("only", "only", run=lambda: ran.append(1) or {"ok": True})
    paths.marker("only").parent.mkdir(parents=True)
    paths.marker("only").write_text('{"seconds": 1.')  # what a kill during a plain write_text leaves
    run_stages([stage], paths)
    assert ran == [1] and read_marker(paths.marker("only"))["ok"] is True
    assert "unreadable stage marker" in capsys.readouterr().out


def test_links_modes_and_special_files(tmp_path):
    """A link is written through (the link stays), a replaced file keeps its mode, /dev/null is written in place,
    and JSON keeps json.dumps's escaping unless asked otherwise."""
    real = tmp_path / "shared" / "norm_stats.json"
    real.parent.mkdir()
    real.write_text("{}\n")
    real.chmod(0o640)
    link = tmp_path / "run" / "stats.json"
    link.parent.mkdir()
    link.symlink_to(real)
    atomic_write_json(link, {"name": "Calot’s triangle"})
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_text() == '{\n  "name": "Calot\\u2019s triangle"\n}\n'
    assert (real.stat().st_mode & 0o777) == 0o640
    assert leftovers(real.parent) == [] and leftovers(link.parent) == []
    atomic_write_json(real, {"name": "Calot’s triangle"}, ensure_ascii=False, indent=None)
    assert real.read_text(encoding="utf-8") == '{"name": "Calot’s triangle"}\n'
    assert atomic_write_text("/dev/null", "discarded\n") == Path("/dev/null")
