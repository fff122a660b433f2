"""The local cluster's reaper (medgrpo_ray/driver/reaper.py): processes of a session found by their open files,
and killed once the driver that started the cluster is gone, a SIGKILL of the driver included."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from medgrpo_ray.driver.reaper import GRACE_S, session_pids

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")


def alive(pid: int) -> bool:
    """Running (a zombie has ended: it only waits for its parent to collect it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def sleeper(out_path) -> subprocess.Popen:
    with open(out_path, "w") as out:
        return subprocess.Popen(["sleep", "120"], stdout=out, start_new_session=True)


def test_session_pids_are_the_processes_writing_under_the_session(tmp_path):
    (tmp_path / "session" / "logs").mkdir(parents=True)
    inside, outside = sleeper(tmp_path / "session" / "logs" / "w.out"), sleeper(tmp_path / "elsewhere.out")
    try:
        found = session_pids(str(tmp_path / "session"))
        assert inside.pid in found and outside.pid not in found and os.getpid() not in found
    finally:
        for p in (inside, outside):
            p.kill()
            p.wait()


def test_the_reaper_kills_what_is_left_once_the_driver_is_killed(tmp_path):
    """A 'driver' starts the reaper and a session process, then is SIGKILLed: the session process is killed
    within the grace period and a scan; a process outside the session is left alone."""
    session = tmp_path / "session"
    (session / "logs").mkdir(parents=True)
    code = ("import subprocess, sys, time\n"
            "from medgrpo_ray.driver.reaper import start\n"
            "start(sys.argv[1])\n"
            "w = subprocess.Popen(['sleep', '120'], stdout=open(sys.argv[1] + '/logs/w.out', 'w'))\n"
            "print(w.pid, flush=True)\n"
            "time.sleep(120)\n")
    driver = subprocess.Popen([sys.executable, "-c", code, str(session)], stdout=subprocess.PIPE, text=True)
    bystander = sleeper(tmp_path / "elsewhere.out")
    try:
        worker = int(driver.stdout.readline())
        time.sleep(0.5)
        assert alive(worker)  # the reaper waits while the driver lives
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        log, deadline = session / "logs" / "medgrpo_reaper.log", time.monotonic() + GRACE_S + 10
        while (alive(worker) or not log.exists()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker) and alive(bystander.pid)
        assert f"[{worker}]" in log.read_text()  # the reaper's record: what Ray had left behind
    finally:
        driver.kill()
        bystander.kill()
        bystander.wait()
        if alive(worker := locals().get("worker", -1)):
            os.kill(worker, signal.SIGKILL)
