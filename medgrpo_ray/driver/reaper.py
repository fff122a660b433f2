"""The reaper of a local Ray cluster: when the driver that started the cluster is gone (finished, failed or
killed), every process still holding a file of the cluster's session directory is killed.

Ray ends most of them itself: gcs_server and the raylet die with the driver (PR_SET_PDEATHSIG), actors exit at
once when their owner or raylet dies. Two kinds outlive it: its agents (`ray::DashboardAgent`,
`ray::RuntimeEnvAgent`) notice the dead raylet at once but then wait 60 s in aiohttp's graceful shutdown, and a
worker that takes the raylet's SIGTERM at shutdown exits through Python's finalization, which any non-daemon thread
blocked in a read holds for good. Membership is by open file: every process of the cluster (daemons, agents,
workers) writes its logs under the session directory, and no other process does.

Standard library only, run as a script (`start` spawns it); Linux only (/proc), a no-op elsewhere.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_S = 2.0  # Ray's own ordered shutdown goes first
_held: list = []  # the write ends of the reapers' pipes: open for the life of this process


def session_pids(session_dir: str, proc: str = "/proc", exclude: tuple[int, ...] = ()) -> list[int]:
    """Pids of the processes with a file open under `session_dir` (zombies hold none)."""
    root = os.path.realpath(session_dir) + os.sep
    found = []
    for name in os.listdir(proc):
        if not name.isdigit() or int(name) in exclude:
            continue
        fd_dir = os.path.join(proc, name, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith(root):
                found.append(int(name))
                break
    return found


def reap(session_dir: str, grace_s: float = GRACE_S, rounds: int = 10) -> list[int]:
    """After `grace_s`, SIGKILL the session's processes until none is left (at most `rounds` scans); returns the
    pids killed."""
    time.sleep(grace_s)
    killed: list[int] = []
    for _ in range(rounds):
        pids = session_pids(session_dir, exclude=(os.getpid(),))
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        time.sleep(0.2)
    return killed


def start(session_dir: str) -> int | None:
    """Start the reaper of the cluster this process started; it acts once this process is gone, however it ended
    (the pipe it reads is closed by the kernel). Returns its pid (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    read_end, write_end = os.pipe()  # both close-on-exec: only the reaper is handed the read end
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), session_dir, str(read_end)],
                            pass_fds=(read_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # a Ctrl-C to the driver spares it
    os.close(read_end)
    _held.append((write_end, proc))
    return proc.pid


def main(argv: list[str]) -> None:
    session_dir, read_end = argv[0], int(argv[1])
    while os.read(read_end, 1):  # returns b"" once every write end is closed: the driver is gone
        pass
    killed = reap(session_dir)
    if killed:  # written last: the reaper holds no file of the session while it scans
        try:
            with open(os.path.join(session_dir, "logs", "medgrpo_reaper.log"), "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} killed {len(set(killed))} process(es) left after "
                        f"the driver: {sorted(set(killed))}\n")
        except OSError:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
