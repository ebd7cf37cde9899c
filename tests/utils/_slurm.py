"""A one-node Slurm cluster on this machine, for the tests marked `slurm`.

``OneNodeCluster.start()`` writes a munge key and a slurm.conf into a fresh temporary
directory, starts munged, slurmctld and slurmd there in the foreground (each in its own
session, logging to that directory, on free ports of 127.0.0.1) and waits until the node is
idle. ``stop()`` cancels any job left, stops the three daemons and what is left of the jobs'
processes, and removes the directory.
Clients reach this cluster, and no other, through ``env`` (SLURM_CONF, no inherited SLURM_*),
whatever /etc/slurm holds.

The node advertises what ``slurmd -C`` measures (CPUs, sockets, cores, memory). Processes
are tracked by proctrack/linuxproc and not confined (task/none), so neither systemd nor
cgroups are needed. Starting needs root and the Debian packages slurm-wlm and munge
(``tools/install.sh --with-slurm``); when the cluster cannot start, ``start()`` raises
ClusterUnavailable with a one-line reason (a failed daemon's log tail included).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "salloc", "sinfo", "squeue", "scancel", "scontrol")
SBIN = ("/usr/sbin", "/sbin")


class ClusterUnavailable(RuntimeError):
    """The cluster cannot run here; the message says why, in one line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 4) -> str:
    """The last lines of a log, joined into one line."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {path})"
    return " | ".join(ln.strip() for ln in text[-lines:]) or "(empty log)"


def node_hardware(slurmd: str) -> dict[str, str]:
    """CPUs, Boards, SocketsPerBoard, CoresPerSocket, ThreadsPerCore and RealMemory as slurmd
    measures them, or the CPU count and total memory when it cannot say."""
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    r = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30)
    found = dict(re.findall(r"(\w+)=(\S+)", r.stdout))
    if r.returncode == 0 and all(k in found for k in keys):
        return {k: found[k] for k in keys}
    mem_kb = int(re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))
    return {"CPUs": str(os.cpu_count() or 1), "RealMemory": str(mem_kb // 1024)}


def stepd_zombies() -> list[int]:
    """Ended slurmstepd processes not yet reaped (of any cluster on this machine)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, state = re.match(r"\d+ \((.*)\) (\S)", stat.read_text()).groups()
        except (OSError, AttributeError):
            continue
        if name == "slurmstepd" and state == "Z":
            pids.append(int(stat.parent.name))
    return pids


class OneNodeCluster:
    def __init__(self) -> None:
        self.dir: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.node = socket.gethostname().split(".")[0]
        self.hardware: dict[str, str] = {}
        self.env: dict[str, str] = {}

    @property
    def cpus(self) -> int:
        return int(self.hardware["CPUs"])

    @property
    def memory_mb(self) -> int:
        return int(self.hardware["RealMemory"])

    def start(self, timeout: float = 60.0) -> None:
        if os.geteuid() != 0:
            raise ClusterUnavailable(f"needs root (running as uid {os.geteuid()})")
        path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
        tools = {t: shutil.which(t, path=path) for t in DAEMONS + CLIENTS}
        missing = [t for t, p in tools.items() if p is None]
        if missing:
            raise ClusterUnavailable(f"Slurm is not installed (missing {', '.join(missing)}; "
                                     "tools/install.sh --with-slurm installs it as root)")
        self.dir = Path(tempfile.mkdtemp(prefix="cdsvae-slurm-"))
        try:
            self._start(tools, path, timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, tools: dict[str, str], path: str, timeout: float) -> None:
        d = self.dir
        d.chmod(0o755)  # munged wants its socket's directory searchable by all
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        sock = d / "munge.socket"
        self.hardware = node_hardware(tools["slurmd"])
        conf = d / "slurm.conf"
        conf.write_text(self._slurm_conf(sock))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        self.env.update(SLURM_CONF=str(conf), PATH=path)

        self._spawn("munged", [tools["munged"], "--foreground", "--force", f"--socket={sock}",
                               f"--key-file={key}", f"--pid-file={d / 'munged.pid'}",
                               f"--seed-file={d / 'munged.seed'}", f"--log-file={d / 'munged.log'}"])
        self._wait(lambda: sock.exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", [tools["slurmctld"], "-D", "-f", str(conf)])
        self._spawn("slurmd", [tools["slurmd"], "-D", "-f", str(conf), "-N", self.node])
        self._wait(self._node_idle, timeout, f"node {self.node} did not become idle")

    def _slurm_conf(self, sock: Path) -> str:
        d = self.dir
        hw = " ".join(f"{k}={v}" for k, v in self.hardware.items())
        # MinJobAge=4 keeps sbatch --wait polling every 2 s (it polls more slowly when jobs are kept
        # longer); batch_sched_delay=0 starts the next task of an array as soon as one ends; a job
        # without --mem gets its CPUs' share of the memory, not all of it.
        return f"""\
ClusterName=cdsvaetest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={d / 'state'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'slurmctld.pid'}
SlurmdPidFile={d / 'slurmd.pid'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
SchedulerParameters=batch_sched_delay=0
MinJobAge=4
KillWait=5
DefMemPerCPU={int(self.hardware["RealMemory"]) // int(self.hardware["CPUs"])}
NodeName={self.node} NodeAddr=127.0.0.1 {hw} State=UNKNOWN
PartitionName=cdsvae Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""

    def _spawn(self, name: str, cmd: list[str]) -> None:
        with open(self.dir / f"{name}.out", "wb") as out:
            self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                                env=self.env, cwd=self.dir, start_new_session=True)

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ClusterUnavailable(f"{name} stopped (exit {proc.returncode}): "
                                             f"{log_tail(self.dir / f'{name}.out')}")
            if ready():
                return
            if time.monotonic() > end:
                tails = "; ".join(f"{n}: {log_tail(self.dir / f'{n}.out', 2)}" for n in self.procs)
                raise ClusterUnavailable(f"{what} within {timeout:.0f} s ({tails})")
            time.sleep(0.2)

    def _node_idle(self) -> bool:
        r = subprocess.run(["sinfo", "--noheader", "--Node", "--nodes", self.node, "--format", "%T"],
                           capture_output=True, text=True, env=self.env, timeout=30)
        return r.returncode == 0 and r.stdout.strip() == "idle"

    def _jobs(self) -> list[str]:
        r = subprocess.run(["squeue", "--noheader", "--format", "%i"], capture_output=True, text=True,
                           env=self.env, timeout=30)
        return r.stdout.split() if r.returncode == 0 else []

    def stop(self) -> None:
        """Cancel what is still queued or running, then stop slurmd, slurmctld and munged."""
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None and self._jobs():
            subprocess.run(["scancel", "--full", *self._jobs()], env=self.env, capture_output=True, timeout=30)
            end = time.monotonic() + 20
            while self._jobs() and time.monotonic() < end:
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        # Job steps daemonise away from slurmd; each still has this cluster's SLURM_CONF. An ended
        # slurmstepd is init's child for a moment, until init reaps it.
        end = time.monotonic() + 10
        while (self._leftovers() or stepd_zombies()) and time.monotonic() < end:
            time.sleep(0.2)
        for pid in self._leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _leftovers(self) -> list[int]:
        """Processes, other than this one, whose environment names this cluster's slurm.conf."""
        if not self.env:
            return []
        mark = f"\0SLURM_CONF={self.env['SLURM_CONF']}\0".encode()
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if mark in b"\0" + (proc / "environ").read_bytes() + b"\0" and int(proc.name) != os.getpid():
                    pids.append(int(proc.name))
            except OSError:
                continue
        return pids
