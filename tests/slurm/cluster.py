"""A one-node SLURM cluster for the tests: installed if missing, started as root without systemd, stopped.

The setup the SLURM executor plugin tests itself with: Debian's Slurm 22.05 (packages slurm-wlm, slurmdbd,
munge, mariadb-server), accounting through slurmdbd on MariaDB (the plugin polls job states with sacct),
one node with this machine's CPUs and memory (as `slurmd -C` reports them) in two partitions: `cpu`, and
`gpu`, the stand-in for a cluster's GPU partition. That node declares two GPUs whose device files are
stand-ins (character devices with /dev/null's numbers), so that `sbatch --gpus=1` is accepted, scheduled
and accounted (sacct AllocTRES `gres/gpu=1`) as on a GPU cluster; the jobs themselves run on the CPU.

Daemons (munged, mariadbd, slurmdbd, slurmctld, slurmd) run in the foreground as children of this process,
with their state, logs and keys in a fresh temporary directory and free TCP ports, and stop() ends
exactly those (after cancelling the cluster's own jobs). munged alone listens where Slurm's clients look
for it, /run/munge; one already answering there is used and left alone. The three configuration files
must live at Slurm's default place, /etc/slurm: the job-step executor clears every SLURM_* variable inside
a job (SLURM_CONF included), so `srun` inside a job finds its configuration there or nowhere ("Could not
establish a configuration source"). Files found there that this script did not write are never touched:
a machine with its own SLURM makes start() fail instead. One cluster per machine at a time: a lock file
makes a second caller wait.

A daemon that does not come up makes start() raise ClusterError with that daemon's own log. By hand:
`python tests/slurm/cluster.py` starts a cluster, prints how to use it, and stops it on Ctrl-C;
`python tests/slurm/cluster.py --install` only installs the packages.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CONF_DIR = Path("/etc/slurm")
CONF_FILES = ("slurm.conf", "slurmdbd.conf", "gres.conf")
MARKER = "# Written by piimem tests/slurm/cluster.py for a test cluster; removed when it stops."
DEBIAN_PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server")
# Programs the cluster needs, each from one of DEBIAN_PACKAGES.
PROGRAMS = ("munged", "mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "slurmctld", "slurmd",
            "sacctmgr", "sbatch", "sinfo", "sacct", "scancel", "squeue")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
LOCK_PATH = Path(tempfile.gettempdir()) / "piimem-slurm-test.lock"
CLUSTER_NAME = "piimem-test"
ACCOUNT = "piimem"
CPU_PARTITION = "cpu"
GPU_PARTITION = "gpu"
GPUS_PER_NODE = 2
START_TIMEOUT_S = 60


class ClusterError(RuntimeError):
    """The cluster could not be installed or started; the message holds the daemon's own words."""


@dataclass
class Cluster:
    """A running test cluster: what jobs may ask of it, and the daemons this process started."""

    workdir: Path
    node: str
    cpus: int
    memory_mb: int
    gpus: int = GPUS_PER_NODE
    account: str = ACCOUNT
    cpu_partition: str = CPU_PARTITION
    gpu_partition: str = GPU_PARTITION
    start_seconds: float = 0.0
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _lock: object = None

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster (its configuration at /etc/slurm, no SLURM_CONF)."""
        proc = subprocess.run(command, capture_output=True, text=True, env=client_env(), timeout=60)
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def stop(self) -> None:
        """Cancel the cluster's jobs, end the daemons this process started, remove its configuration."""
        if self._lock is None:  # stopped already (the fixture, then atexit): the lock may be another's now
            return
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--full", f"--user={os.getuid()}", check=False)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.run("squeue", "-h", check=False).stdout.strip():
                time.sleep(0.5)
        for name in reversed(list(self.processes)):
            _end(self.processes[name])
        self.processes.clear()
        _remove_our_conf()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._lock.close()
        self._lock = None


def client_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}


def install_missing() -> None:
    """apt-get install Debian's Slurm, munge and MariaDB when any of their programs is missing."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ClusterError(f"the test cluster needs {', '.join(missing)} (Debian packages "
                           f"{' '.join(DEBIAN_PACKAGES)}) and root to install and run them; see docs/clusters.md, "
                           "'GPUs and clusters'")
    # Without systemd, a package's postinst would start its service through the init script; a policy-rc.d
    # answering 101 ("not allowed") keeps the system copies of munged and MariaDB from starting.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for command in (["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES]):
            proc = subprocess.run(command, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise ClusterError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    finally:
        if ours:
            policy.unlink()
    still = [p for p in PROGRAMS if shutil.which(p) is None]
    if still:
        raise ClusterError(f"after installing {' '.join(DEBIAN_PACKAGES)}, still missing: {', '.join(still)}")


def start(lock_timeout_s: float = 1800) -> Cluster:
    """Install what is missing, start the five daemons, add the account; return once the node is idle."""
    install_missing()
    if os.geteuid() != 0:
        raise ClusterError("the test cluster runs its daemons as root and writes /etc/slurm; see docs/clusters.md, "
                           "'GPUs and clusters', for a non-root machine")
    lock = _acquire_lock(lock_timeout_s)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="piimem-slurm-"))
    workdir.chmod(0o700)  # munged refuses sockets and keys in directories others may write
    node_line = _node_hardware()
    cluster = Cluster(workdir=workdir, node=socket.gethostname().split(".")[0],
                      cpus=int(re.search(r"\bCPUs=(\d+)", node_line)[1]),
                      memory_mb=int(re.search(r"\bRealMemory=(\d+)", node_line)[1]), _lock=lock)
    atexit.register(cluster.stop)
    try:
        _start_daemons(cluster, node_line)
    except BaseException:
        cluster.stop()
        raise
    cluster.start_seconds = time.monotonic() - started
    return cluster


def _acquire_lock(timeout_s: float):
    handle = open(LOCK_PATH, "a+")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.seek(0)
                raise ClusterError(f"another test cluster (process {handle.read().strip()}) has held "
                                   f"{LOCK_PATH} for {timeout_s:.0f} s")
            time.sleep(2)


def _node_hardware() -> str:
    """`slurmd -C`'s NodeName line without the name: CPUs, sockets, cores, threads and memory."""
    proc = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, env=client_env())
    line = next((l for l in proc.stdout.splitlines() if l.startswith("NodeName=")), None)
    if proc.returncode != 0 or line is None:
        raise ClusterError(f"slurmd -C failed ({proc.returncode}): {proc.stderr.strip()}")
    return line.split(None, 1)[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_daemons(cluster: Cluster, node_line: str) -> None:
    work = cluster.workdir
    for sub in ("log", "munge", "mysql", "state", "spool"):
        (work / sub).mkdir(mode=0o700)
    ports = {name: _free_port() for name in ("mysql", "slurmdbd", "slurmctld", "slurmd")}
    db_password = secrets.token_hex(12)

    # Slurm's clients talk to munged at its default socket whatever AuthInfo says (sacctmgr 22.05 does), so
    # the cluster uses a munged already answering there, or starts one there with a key of its own (the
    # packaged key belongs to the `munge` user; munged as root refuses a key file another user owns).
    if _munge_answers() is not None:
        MUNGE_SOCKET.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        key = work / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        _spawn(cluster, "munged", ["munged", "--foreground", "--force", f"--key-file={key}",
                                   f"--socket={MUNGE_SOCKET}", f"--pid-file={work / 'munge/munged.pid'}",
                                   f"--seed-file={work / 'munge/munged.seed'}",
                                   f"--log-file={work / 'log/munged.log'}"])
        _wait(cluster, "munged", _munge_answers, work / "log/munged.log")

    # MariaDB on its own data directory, reachable on 127.0.0.1 only.
    mysql = work / "mysql"
    _checked(["mariadb-install-db", "--no-defaults", f"--datadir={mysql / 'data'}", "--user=root",
              "--auth-root-authentication-method=socket", "--skip-test-db"], "mariadb-install-db")
    mysql_socket = mysql / "mysqld.sock"
    _spawn(cluster, "mariadbd", ["mariadbd", "--no-defaults", f"--datadir={mysql / 'data'}", "--user=root",
                                 f"--socket={mysql_socket}", f"--port={ports['mysql']}",
                                 "--bind-address=127.0.0.1", "--skip-name-resolve",
                                 f"--pid-file={mysql / 'mysqld.pid'}",
                                 f"--log-error={work / 'log/mariadb.log'}",
                                 "--innodb-buffer-pool-size=1G", "--innodb-lock-wait-timeout=900"])

    def sql(statement: str) -> subprocess.CompletedProcess:
        return subprocess.run(["mariadb", "--no-defaults", f"--socket={mysql_socket}", "-u", "root", "-e",
                               statement], capture_output=True, text=True)

    _wait(cluster, "mariadbd", lambda: _failure(sql("SELECT 1")), work / "log/mariadb.log")
    created = sql(f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{db_password}'; "
                  "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
    if created.returncode != 0:
        raise ClusterError(f"creating the MariaDB user for slurmdbd failed: {created.stderr.strip()}")

    _write_conf(cluster, node_line, ports, db_password)

    _spawn(cluster, "slurmdbd", ["slurmdbd", "-D"])
    _wait(cluster, "slurmdbd",
          lambda: _failure(cluster.run("sacctmgr", "-n", "list", "cluster", check=False)),
          work / "log/slurmdbd.log")
    for command in (("add", "cluster", CLUSTER_NAME), ("add", "account", cluster.account,
                                                        "Description=piimem tests", "Organization=piimem"),
                    ("add", "user", "root", f"Account={cluster.account}", f"Cluster={CLUSTER_NAME}")):
        cluster.run("sacctmgr", "-i", *command)

    _spawn(cluster, "slurmctld", ["slurmctld", "-D", "-i"])
    _spawn(cluster, "slurmd", ["slurmd", "-D", "-N", cluster.node])

    def node_idle() -> str | None:
        proc = cluster.run("sinfo", "-h", "-N", "-o", "%P %t", check=False)
        states = sorted(line.strip() for line in proc.stdout.splitlines() if line.strip())
        if states == [f"{CPU_PARTITION}* idle", f"{GPU_PARTITION} idle"]:
            return None
        return f"sinfo: {states or proc.stderr.strip()}"

    _wait(cluster, "slurmctld/slurmd", node_idle, work / "log/slurmctld.log", work / "log/slurmd.log")


def _write_conf(cluster: Cluster, node_line: str, ports: dict[str, int], db_password: str) -> None:
    work = cluster.workdir
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    foreign = [CONF_DIR / n for n in CONF_FILES
               if (CONF_DIR / n).exists() and not (CONF_DIR / n).read_text().startswith(MARKER)]
    if foreign:
        raise ClusterError(f"not written by this script: {', '.join(map(str, foreign))}. This machine seems to "
                           "have a SLURM of its own, whose configuration the test cluster would overwrite")
    auth = "AuthType=auth/munge\n"
    slurm_conf = f"""{MARKER}
ClusterName={CLUSTER_NAME}
SlurmctldHost={cluster.node}(127.0.0.1)
SlurmctldPort={ports['slurmctld']}
SlurmdPort={ports['slurmd']}
{auth}SlurmUser=root
SlurmdUser=root
StateSaveLocation={work / 'state'}
SlurmdSpoolDir={work / 'spool'}
SlurmctldPidFile={work / 'state/slurmctld.pid'}
SlurmdPidFile={work / 'spool/slurmd.pid'}
SlurmctldLogFile={work / 'log/slurmctld.log'}
SlurmdLogFile={work / 'log/slurmd.log'}
# No cgroups without systemd: processes are tracked through their parents, tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
# Memory is recorded (sacct ReqMem) but not a consumable, so jobs share the node as far as its CPUs allow.
SelectTypeParameters=CR_Core
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports['slurmdbd']}
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
# sacct shows the plugin's --comment (rule_<name>_wildcards_<values>), which says which rule a job ran.
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SchedulerType=sched/backfill
ReturnToService=2
KillWait=5
InactiveLimit=0
NodeName={cluster.node} NodeAddr=127.0.0.1 {node_line} Gres=gpu:{cluster.gpus} State=UNKNOWN
PartitionName={CPU_PARTITION} Nodes={cluster.node} Default=YES MaxTime=INFINITE State=UP
PartitionName={GPU_PARTITION} Nodes={cluster.node} MaxTime=INFINITE State=UP
"""
    dbd_conf = f"""{MARKER}
{auth}DbdHost={cluster.node}
DbdAddr=127.0.0.1
DbdPort={ports['slurmdbd']}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports['mysql']}
StorageUser=slurm
StoragePass={db_password}
StorageLoc=slurm_acct_db
LogFile={work / 'log/slurmdbd.log'}
PidFile={work / 'state/slurmdbd.pid'}
"""
    # Slurm counts a node's GPUs from their device files. The stand-ins are character devices with
    # /dev/null's numbers: schedulable and accounted like GPUs, nothing to compute on.
    devices = work / "gpus"
    devices.mkdir(mode=0o755)
    for index in range(cluster.gpus):
        os.mknod(devices / f"stand-in{index}", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    gres_conf = (f"{MARKER}\n"
                 f"NodeName={cluster.node} Name=gpu File={devices}/stand-in[0-{cluster.gpus - 1}]\n")
    for name, text, mode in (("slurm.conf", slurm_conf, 0o644), ("slurmdbd.conf", dbd_conf, 0o600),
                             ("gres.conf", gres_conf, 0o644)):
        path = CONF_DIR / name
        path.write_text(text)
        path.chmod(mode)


def _remove_our_conf() -> None:
    for name in CONF_FILES:
        path = CONF_DIR / name
        if path.exists() and path.read_text().startswith(MARKER):
            path.unlink()


def _checked(command: list[str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"{what} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")


def _spawn(cluster: Cluster, name: str, command: list[str]) -> None:
    out = open(cluster.workdir / "log" / f"{name}.out", "w")
    # A session of its own: a Ctrl-C meant for the tests does not reach the daemons before stop() does.
    cluster.processes[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                               env=client_env(), start_new_session=True)


def _failure(proc: subprocess.CompletedProcess) -> str | None:
    """None when a probe command succeeded, else what it said."""
    if proc.returncode == 0:
        return None
    return f"{proc.args[0]} ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-1500:]}"


def _munge_answers() -> str | None:
    probe = ["munge", "-n", f"--socket={MUNGE_SOCKET}"]
    return _failure(subprocess.run(probe, capture_output=True, text=True))


def _wait(cluster: Cluster, what: str, probe, *logs: Path) -> None:
    """Until `probe()` returns None (ready); a daemon exiting, or a minute passing, raises with its words."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        exited = [n for n, p in cluster.processes.items() if p.poll() is not None]
        if exited:
            raise ClusterError(f"{', '.join(exited)} exited while starting {what}:\n"
                               + _daemon_words(cluster, exited, logs))
        problem = probe()
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} not ready after {START_TIMEOUT_S} s; last check: {problem}\n"
                               + _daemon_words(cluster, [], logs))
        time.sleep(0.2)


def _daemon_words(cluster: Cluster, names: list[str], logs: tuple[Path, ...]) -> str:
    paths = [cluster.workdir / "log" / f"{n}.out" for n in names] + list(logs)
    paths += [cluster.workdir / "log" / f"{n}.log" for n in names]
    parts = []
    for path in dict.fromkeys(paths):
        if path.is_file() and path.stat().st_size:
            last = "\n".join(path.read_text().splitlines()[-25:])
            parts.append(f"--- {path.name} (last lines) ---\n{last}")
    return "\n".join(parts) or "(the daemons wrote nothing)"


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    if sys.argv[1:] == ["--install"]:  # .ci/run: install up front, so the test's time is the test's
        install_missing()
        return
    cluster = start()
    print(f"SLURM cluster {CLUSTER_NAME} up in {cluster.start_seconds:.1f} s: node {cluster.node} "
          f"({cluster.cpus} CPUs, {cluster.memory_mb} MB, {cluster.gpus} stand-in GPUs), partitions "
          f"{CPU_PARTITION} and {GPU_PARTITION}, account {cluster.account}.\n"
          f"Configuration in {CONF_DIR}, state and logs in {cluster.workdir}. Ctrl-C stops it.", flush=True)
    print(cluster.run("sinfo").stdout, flush=True)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
