"""A cgroup per ``run_python`` call: the call's processes bounded as a whole, and killed as a whole.

Rlimits bind one process each; a program that forks multiplies them. A cgroup bounds the call: its memory
(``memory.max``), its processes (``pids.max``) and its CPU rate (``cpu.max``), whatever the program forks, and
kills all of it at once (``cgroup.kill``), wherever a process went.

Where the call's cgroups go: under ironloop's own cgroup in each hierarchy (read from ``/proc/self/cgroup`` and
``/proc/self/mountinfo``), so a call never escapes the bounds an operator set on ironloop itself. What that
allows depends on the machine:

- cgroup v2 (the unified hierarchy): a child cgroup can be created wherever ironloop may write its own cgroup
  (root, or a delegated subtree); it gets the controllers the parent's ``cgroup.subtree_control`` enables.
  The kernel enables none in a cgroup that has processes of its own (except the root), so under systemd,
  ironloop in a session scope gets ``cgroup.kill`` and no controller;
- cgroup v1 (legacy and hybrid layouts): one hierarchy per controller; the ``memory``, ``pids`` and ``cpu``
  ones are used when mounted and writable (as root), next to a v2 ``cgroup.kill`` when the hybrid layout
  mounts the unified hierarchy too.

`CgroupPlan.detect` says what this machine allows; `CallCgroup` creates, bounds, kills and removes one call's
cgroups. What cannot be had is left to the rlimit fallback of `tools.sandbox`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "pids", "cpu")
PREFIX = "ironloop-run-python-"
CPU_PERIOD_US = 100_000
SWAP_FILES = ("memory.swap.max", "memory.memsw.limit_in_bytes")


@dataclass(frozen=True)
class Hierarchy:
    """Where one call's cgroup is created: a parent directory and the cgroup version it belongs to."""

    parent: Path
    version: int


@dataclass(frozen=True)
class CgroupPlan:
    """What this machine allows: the hierarchy serving each controller, and whether v2 can kill the call."""

    controllers: dict[str, Hierarchy] = field(default_factory=dict)
    kill: Hierarchy | None = None
    """The v2 hierarchy whose child cgroups offer ``cgroup.kill`` (kernel 5.14 and later)."""

    @property
    def hierarchies(self) -> list[Hierarchy]:
        """Every hierarchy a call creates a cgroup in, once each."""
        found: list[Hierarchy] = []
        for hierarchy in (self.kill, *self.controllers.values()):
            if hierarchy is not None and hierarchy not in found:
                found.append(hierarchy)
        return found

    def describe(self) -> str:
        """One line for errors and docs: which bound comes from which cgroup."""
        parts = [f"{name}: cgroup v{h.version}" for name, h in self.controllers.items()]
        parts.append("kill: cgroup.kill" if self.kill else "kill: pid namespace")
        return ", ".join(parts)

    @classmethod
    def detect(cls, proc: Path = Path("/proc")) -> CgroupPlan:
        """Read ``/proc/self/cgroup`` and ``/proc/self/mountinfo``; keep what ironloop may write."""
        try:
            membership = (proc / "self" / "cgroup").read_text()
            mounts = (proc / "self" / "mountinfo").read_text()
        except OSError:
            return cls()
        return cls.from_text(membership, mounts)

    @classmethod
    def from_text(cls, membership: str, mountinfo: str) -> CgroupPlan:
        v2_path, v1_paths = None, {}
        for line in membership.splitlines():
            number, names, path = line.split(":", 2)
            if number == "0" and names == "":
                v2_path = path
            for name in names.split(","):
                v1_paths[name] = path
        v2: Hierarchy | None = None
        v1: dict[str, Hierarchy] = {}
        for line in mountinfo.splitlines():
            fields, _, tail = line.partition(" - ")
            parts, (fstype, _source, options) = fields.split(), tail.split()[:3]
            root, mount_point = _unescape(parts[3]), Path(_unescape(parts[4]))
            if fstype == "cgroup2" and v2 is None and v2_path is not None:
                v2 = _writable(mount_point, root, v2_path, 2)
            elif fstype == "cgroup":
                for name in set(options.split(",")) & set(CONTROLLERS) - set(v1):
                    if name in v1_paths and (hierarchy := _writable(mount_point, root, v1_paths[name], 1)):
                        v1[name] = hierarchy
        enabled = set(_read(v2.parent / "cgroup.subtree_control").split()) if v2 else set()
        controllers = {}
        for name in CONTROLLERS:
            if v2 and name in enabled:
                controllers[name] = v2
            elif name in v1:
                controllers[name] = v1[name]
        return cls(controllers=controllers, kill=v2)


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _writable(mount_point: Path, root: str, path: str, version: int) -> Hierarchy | None:
    """ironloop's own cgroup in this mount, if it is visible there and ironloop may create cgroups in it."""
    if path != root and not path.startswith(root.rstrip("/") + "/"):
        return None
    parent = mount_point / path[len(root) :].lstrip("/")
    if (parent / "cgroup.procs").is_file() and os.access(parent, os.W_OK | os.X_OK):
        return Hierarchy(parent, version)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _counter(path: Path, key: str) -> int:
    """A ``key value`` line of a cgroup file (``memory.events``, ``pids.events``, ``memory.oom_control``)."""
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


class CallCgroup:
    """One call's cgroups: created bounded, joined by the sandbox before its program runs, killed, removed.

    Raises ``OSError`` from `open` and `add` when the kernel refuses; the caller then runs nothing.
    """

    def __init__(self, plan: CgroupPlan):
        self.plan = plan
        self.name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.dirs: dict[Hierarchy, Path] = {}

    def open(self, *, memory_bytes: int, tasks: int, cpus: float) -> None:
        """Create the cgroups and write their bounds (before any process joins)."""
        for hierarchy in self.plan.hierarchies:
            path = hierarchy.parent / self.name
            path.mkdir()
            self.dirs[hierarchy] = path
        for name, hierarchy in self.plan.controllers.items():
            path = self.dirs[hierarchy]
            quota = max(1000, int(cpus * CPU_PERIOD_US))
            bounds: dict[str, list[tuple[str, object]]] = {
                "memory": [("memory.max", memory_bytes), ("memory.swap.max", 0)],
                "pids": [("pids.max", tasks)],
                "cpu": [("cpu.max", f"{quota} {CPU_PERIOD_US}")],
            }
            if hierarchy.version == 1:  # the swap limit must not be below the memory limit: memory first
                bounds["memory"] = [
                    ("memory.limit_in_bytes", memory_bytes),
                    ("memory.memsw.limit_in_bytes", memory_bytes),
                ]
                bounds["cpu"] = [("cpu.cfs_period_us", CPU_PERIOD_US), ("cpu.cfs_quota_us", quota)]
            values = bounds[name]
            for file, value in values:
                if file in SWAP_FILES and not (path / file).exists():  # no swap accounting: nothing to bound
                    continue
                (path / file).write_text(str(value))

    def add(self, pid: int) -> None:
        """Move process ``pid`` (not yet running the program) into every cgroup of the call."""
        for path in self.dirs.values():
            (path / "cgroup.procs").write_text(str(pid))

    def kill(self) -> None:
        """SIGKILL every process of the call: ``cgroup.kill`` where there is one, else each listed process,
        until none is left (``pids.max`` bounds how many a fork bomb can add meanwhile)."""
        for path in self.dirs.values():
            if (path / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (path / "cgroup.kill").write_text("1")
                    return
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def pids(self) -> set[int]:
        """The processes still in the call's cgroups."""
        found: set[int] = set()
        for path in self.dirs.values():
            found |= {int(pid) for pid in _read(path / "cgroup.procs").split()}
        return found

    def limits_hit(self) -> list[str]:
        """The call-wide bounds the kernel enforced: ``memory`` (a process was killed for it), ``processes``
        (a fork or a thread was refused)."""
        hit = []
        for name, hierarchy in self.plan.controllers.items():
            path = self.dirs.get(hierarchy)
            if path is None:
                continue
            if name == "memory":
                events = path / ("memory.events" if hierarchy.version == 2 else "memory.oom_control")
                if _counter(events, "oom_kill") > 0:
                    hit.append("memory")
            elif name == "pids" and _counter(path / "pids.events", "max") > 0:
                hit.append("processes")
        return hit

    def remove(self, wait_s: float = 2.0) -> None:
        """Remove the cgroups once their processes are gone (killing what is left)."""
        deadline = time.monotonic() + wait_s
        while True:
            for hierarchy, path in list(self.dirs.items()):
                try:
                    path.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:  # processes still dying
                    continue
                del self.dirs[hierarchy]
            if not self.dirs:
                return
            if time.monotonic() > deadline:
                log.warning("could not remove the run_python cgroups %s", ", ".join(map(str, self.dirs.values())))
                return
            self.kill()
            time.sleep(0.01)


def remove_stale(plan: CgroupPlan) -> None:
    """Remove the empty cgroups of calls whose ironloop process died before removing them."""
    for hierarchy in plan.hierarchies:
        with contextlib.suppress(OSError):
            for entry in hierarchy.parent.iterdir():
                owner = entry.name.removeprefix(PREFIX).split("-")[0]
                if entry.name.startswith(PREFIX) and owner.isdigit() and not _alive(int(owner)):
                    with contextlib.suppress(OSError):
                        entry.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
