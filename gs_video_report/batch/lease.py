"""Who holds a batch (its lease owner, ``host:pid:token:identity``) and whether that
holder is provably gone — light, so a view of a batch (``status``, ``list-batches``, the
dashboard) can say ``interrupted`` for a dead holder without loading the runner."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path


def _identity(pid: int) -> str:
    """What tells this process from any other with the same PID: the boot, the PID
    namespace (containers reuse PIDs) and the process's start time."""
    parts = []
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
    except OSError:
        parts.append("-")
    try:
        parts.append(str(Path(f"/proc/{pid}/ns/pid").readlink()).strip("pid:[]"))
        stat = Path(f"/proc/{pid}/stat").read_text()
        parts.append(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time
    except (OSError, IndexError):
        parts += ["-", "-"]
    return ".".join(parts)


def lease_owner() -> str:
    """``host:pid:token:identity`` — the token makes each run's lease its own."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}:{_identity(pid)}"


def dead_on_this_host(owner: str) -> bool:
    """A lease holder on this machine whose process is gone (killed, crashed): no need to
    wait for its lease to expire. Only when the holder is provably gone — same host, same
    boot and PID namespace, and no process with its PID and start time; anything else (an
    older owner format, another container) is trusted until its lease expires."""
    fields = owner.split(":")
    if len(fields) != 4 or fields[0] != socket.gethostname() or not fields[1].isdigit():
        return False
    pid, identity = int(fields[1]), fields[3]
    mine = _identity(os.getpid()).split(".")
    theirs = identity.split(".")
    if len(theirs) != 3 or "-" in mine[:2] or theirs[:2] != mine[:2]:
        return False  # another boot or PID namespace: its PIDs say nothing here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, but not ours to signal
    return _identity(pid).split(".")[2] != theirs[2]  # the PID was reused by another process
