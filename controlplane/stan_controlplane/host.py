"""What a local node changes on its machine, and how each change is undone, also after a crash.

A node is an *instance* with a small machine-wide index, claimed with a lock
file that dies with the process holding it, so that several clusters (``make
run`` beside a test session) may each have one. Everything an instance
changes is keyed by that index, under the name ``stan-node-<index>``:

- its network namespace, where containerd and the kubelet run: the pods'
  bridge, their routes, the iptables chains the kubelet and the CNI plugins
  write, ``ip_forward`` all live and die there; a veth pair joins it to the
  host, whose end holds the address the API server listens on for the node
  and a route to the pods;
- its cgroup, in every hierarchy: containerd and the kubelet are started into
  it, the containerd shims (which outlive containerd, re-parented) and every
  container below them land in it, so killing what is in it kills the node;
- its directory, on disk (the kubelet's root holds the pods' volumes and
  logs): containerd's state and shim sockets, the kubelet's root with the bind
  and tmpfs mounts it makes there, the pods' network namespace mounts, the
  namespace of the node itself;
- files in fixed places: the kubelet's links in /var/log/containers and the
  CNI library's cached results in /var/lib/cni.

The kubelet also serves device plugins at a fixed path, its socket and
checkpoint in /var/lib/kubelet/device-plugins: shared by every node on the
machine and removed, with the directories a node made, by the last one.

The kernel settings the kubelet changes are machine-wide: the first node
records them before it starts and the last one to stop restores them. The
record lives in /run, which a reboot clears along with the settings.

An instance whose lock nobody holds is what a killed run left behind, its
shims and containers still running: the next node start cleans it up.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

MACHINE_DIR = Path("/run/stan")
INSTANCES_DIR = Path("/var/lib/stan")
PROC_SYS = Path("/proc/sys")
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
"""What the kubelet sets at start (its ``setupKernelTunables``) unless told to refuse to start instead."""
CONTAINER_LOG_LINKS = Path("/var/log/containers")
CNI_RESULTS = Path("/var/lib/cni/results")
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")
SHARED_DIRS = {
    CONTAINER_LOG_LINKS: (),
    CNI_RESULTS: (),
    CNI_RESULTS.parent: (),
    DEVICE_PLUGINS: ("kubelet.sock", "kubelet_internal_checkpoint"),
    DEVICE_PLUGINS.parent: (),
    INSTANCES_DIR: (),
}
"""Directories every node shares (the instances' own, the fixed places the kubelet and the CNI library
write into), deepest first, with the files nodes share there: removed by the last node if a node made them."""
KILL_TIMEOUT = 30.0
MAX_INSTANCES = 256
"""One per third octet of the node's addresses."""
_CLONE_NEWNET = 0x40000000
_MNT_DETACH = 2
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class Instance:
    """One node's share of the machine, claimed by this process until ``release``."""

    def __init__(self, index: int, lock: IO[str]) -> None:
        self.index = index
        self._lock = lock

    @property
    def name(self) -> str:
        return f"stan-node-{self.index}"

    @property
    def directory(self) -> Path:
        return INSTANCES_DIR / self.name

    @property
    def netns(self) -> Path:
        return self.directory / "netns"

    @property
    def host_address(self) -> str:
        """The host's end of the link to the node: where the API server listens when there is a node."""
        return f"10.199.{self.index}.1"

    @property
    def node_address(self) -> str:
        return f"10.199.{self.index}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    def create(self) -> None:
        """The node's directory, cgroup and network namespace, linked to the host."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for hierarchy in _hierarchies():
            for cgroup in (hierarchy / self.name, hierarchy / self.name / "system"):
                cgroup.mkdir(exist_ok=True)
                _inherit_cpuset(cgroup)
        self.netns.touch()
        _run("unshare", f"--net={self.netns}", "true")
        inside = ("nsenter", f"--net={self.netns}", "ip")
        _run(*inside, "link", "add", "eth0", "type", "veth", "peer", "name", self.name, "netns", str(os.getpid()))
        _run("ip", "address", "add", f"{self.host_address}/30", "dev", self.name)
        _run("ip", "link", "set", self.name, "up")
        _run("ip", "route", "add", self.pod_cidr, "via", self.node_address, "dev", self.name)
        _run(*inside, "link", "set", "lo", "up")
        _run(*inside, "address", "add", f"{self.node_address}/30", "dev", "eth0")
        _run(*inside, "link", "set", "eth0", "up")
        _run(*inside, "route", "add", "default", "via", self.host_address)

    def entering(self) -> Callable[[], None]:
        """What moves a process into the node's network namespace and cgroup.

        It runs in a child between fork and exec, so that nothing the child
        starts escapes the cgroup and the kubelet never sees the host's
        network; the paths are found beforehand, leaving the child only
        system calls to make.
        """
        netns = str(self.netns)
        procs = [hierarchy / self.name / "system" / "cgroup.procs" for hierarchy in _hierarchies()]

        def enter() -> None:
            fd = os.open(netns, os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            for path in procs:
                path.write_text("0")  # 0: the writer itself

        return enter

    def release(self) -> None:
        """Undo everything the instance changed, then give up the claim; the last node restores the machine."""
        self._clean()
        with _machine_lock():
            self._lock.close()
            if not live_instances():
                _restore_machine()

    def _clean(self) -> None:
        self._kill_processes()
        # While its file is mounted the namespace stays, and so does the link: delete it now, at once,
        # rather than after the unmount, when the namespace goes away lazily and the link some time later.
        if Path(f"/sys/class/net/{self.name}").exists():
            _run("ip", "link", "delete", self.name)
        _unmount_under(self.directory)
        for hierarchy in _hierarchies():
            _remove_cgroup(hierarchy / self.name)
        for entry in self._shared_files():
            entry.unlink()
        if self.directory.exists():
            if _mounts_under(self.directory):  # never delete through a mount into the host's files
                raise RuntimeError(f"mounts remain under {self.directory}: {_mounts_under(self.directory)}")
            shutil.rmtree(self.directory)

    def _kill_processes(self) -> None:
        """SIGKILL whatever runs in the node's cgroup (shims, containers), until nothing does.

        The node is disposable: its containers get no grace period, and a
        process forked meanwhile is caught by the next round.
        """
        deadline = time.monotonic() + KILL_TIMEOUT
        while pids := self._pids():
            if time.monotonic() > deadline:
                raise TimeoutError(f"processes of {self.name} did not die: {sorted(pids)}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def _pids(self) -> set[int]:
        """The processes in the node's cgroup, in any hierarchy."""
        found: set[int] = set()
        for hierarchy in _hierarchies():
            for procs in (hierarchy / self.name).rglob("cgroup.procs"):
                with contextlib.suppress(FileNotFoundError):
                    found.update(int(pid) for pid in procs.read_text().split())
        return found

    def _shared_files(self) -> list[Path]:
        """The kubelet's links to this node's container logs, the CNI library's results for its network."""
        return [
            link
            for link in _entries(CONTAINER_LOG_LINKS)
            if link.is_symlink() and Path(os.readlink(link)).is_relative_to(self.directory)
        ] + [result for result in _entries(CNI_RESULTS) if result.name.startswith(f"{self.name}-")]


def claim(preferred: int | None = None) -> Instance:
    """A free instance, ``preferred`` if it is free (its addresses stay those of the last run), created.

    Leftovers of instances nobody holds are cleaned first, and the machine's
    settings are recorded if no node has done so yet.
    """
    MACHINE_DIR.mkdir(parents=True, exist_ok=True)
    with _machine_lock():
        for index in _leftover_indexes():
            lock = _try_lock(index)
            if lock is not None:
                Instance(index, lock)._clean()
                lock.close()
        candidates = ([preferred] if preferred is not None else []) + list(range(MAX_INSTANCES))
        instance = next((Instance(index, lock) for index in candidates if (lock := _try_lock(index)) is not None), None)
        if instance is None:
            raise RuntimeError(f"all {MAX_INSTANCES} node instances of this machine are taken")
        _record_machine()
    try:
        instance.create()
    except BaseException:
        instance.release()
        raise
    return instance


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Claims, clean-ups and the machine record change under this one lock, so starts and stops never cross."""
    with (MACHINE_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _lock_path(index: int) -> Path:
    return MACHINE_DIR / f"stan-node-{index}.lock"


def _try_lock(index: int) -> IO[str] | None:
    lock = _lock_path(index).open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def live_instances() -> list[int]:
    """Indexes whose lock some process holds (this one included, through another claim)."""
    live = []
    for path in MACHINE_DIR.glob("stan-node-*.lock"):
        index = int(path.stem.removeprefix("stan-node-"))
        lock = _try_lock(index)
        if lock is None:
            live.append(index)
        else:
            lock.close()
    return live


def _leftover_indexes() -> set[int]:
    """Indexes with anything on the machine: a directory, a host link, a cgroup."""
    names = [path.name for path in _entries(INSTANCES_DIR)]
    names += [path.name for path in _entries(Path("/sys/class/net"))]
    names += [path.name for hierarchy in _hierarchies() for path in _entries(hierarchy)]
    return {int(match.group(1)) for name in names if (match := re.fullmatch(r"stan-node-(\d+)", name))}


def _record_machine() -> None:
    record = MACHINE_DIR / "machine.json"
    if record.exists():  # a live node's, or a killed one's: either way, from before any node
        return
    record.write_text(
        json.dumps(
            {
                "sysctls": {name: (PROC_SYS / name).read_text().strip() for name in KUBELET_SYSCTLS},
                "absent": [str(path) for path in SHARED_DIRS if not path.exists()],
            }
        )
    )


def _restore_machine() -> None:
    record = MACHINE_DIR / "machine.json"
    if not record.exists():
        return
    recorded = json.loads(record.read_text())
    for name, value in recorded["sysctls"].items():
        (PROC_SYS / name).write_text(value)
    for directory in map(Path, recorded["absent"]):
        for name in SHARED_DIRS[directory]:
            (directory / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # gone, or something else wrote there since: not ours to remove
            directory.rmdir()
    record.unlink()
    for lock in MACHINE_DIR.glob("stan-node-*.lock"):  # none is held: nobody can be waiting on one
        lock.unlink()


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def _entries(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.is_dir() else []


def _mount_table() -> list[tuple[Path, str]]:
    """(mount point, file system type) of each mount, parents before children."""
    table = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        point = re.sub(r"\\([0-7]{3})", lambda escape: chr(int(escape.group(1), 8)), fields.split()[4])
        table.append((Path(point), tail.split()[0]))
    return table


def _hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (one per controller on cgroup v1, one on v2)."""
    return [point for point, fs_type in _mount_table() if fs_type in ("cgroup", "cgroup2")]


def _inherit_cpuset(cgroup: Path) -> None:
    """A new cgroup v1 cpuset starts with no CPU and no memory node, and takes no process until given some."""
    if (cgroup / "cpuset.mems").exists() and not (cgroup / "cgroup.controllers").exists():
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not (cgroup / name).read_text().strip():
                (cgroup / name).write_text((cgroup.parent / name).read_text())


def _remove_cgroup(cgroup: Path) -> None:
    if not cgroup.exists():
        return
    for directory, _, _ in sorted(os.walk(cgroup), key=lambda entry: -len(Path(entry[0]).parts)):
        Path(directory).rmdir()


def _mounts_under(directory: Path) -> list[Path]:
    return [point for point, _ in _mount_table() if point.is_relative_to(directory)]


def _unmount_under(directory: Path) -> None:
    """Detach every mount at or below ``directory``, children first; shared mounts may need a second round."""
    for _ in range(10):
        mounts = _mounts_under(directory)
        if not mounts:
            return
        for mount in reversed(mounts):
            # EINVAL: no longer a mount point, detached along with its parent
            if _libc.umount2(str(mount).encode(), _MNT_DETACH) != 0 and ctypes.get_errno() not in (
                errno.EINVAL,
                errno.ENOENT,
            ):
                raise OSError(ctypes.get_errno(), f"umount {mount}")
    raise RuntimeError(f"mounts remain under {directory}: {_mounts_under(directory)}")
