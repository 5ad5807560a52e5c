"""Network partitions between local cluster nodes, with iptables on loopback traffic.

Every node has an address of its own (broker/cluster.py) and its connections to the other
nodes leave from it, so the Erlang distribution link between nodes A and B is four flows:
A's address to B's distribution port and the replies back to A, and B's address to A's port
and the replies back to B. Cutting a link drops those four; the CLI tools (from 127.0.0.1) and
every other address keep working. A client-broker cut drops one node's AMQP port instead.

Every rule lives in a chain of its own (``RABBITSCALE``, jumped to from OUTPUT: loopback
packets pass OUTPUT once) and carries the comment ``rabbitscale <owner>``: a heal removes
exactly the rules its owner added, and ``clear()`` (run by ``cluster down``) removes any rule
of ours left behind by a run that was killed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from rabbitscale.core.errors import BadInput

CHAIN = "RABBITSCALE"
COMMENT = "rabbitscale"
INSTALL_HINT = "apt-get install iptables"


@dataclass(frozen=True)
class Rule:
    """One iptables match (the part after ``-A CHAIN``) that drops packets."""

    match: tuple[str, ...]
    owner: str

    def spec(self) -> list[str]:
        return [*self.match, "-m", "comment", "--comment", f"{COMMENT} {self.owner}",
                "-j", "DROP"]


def _iptables() -> str:
    exe = shutil.which("iptables")
    if exe is None:
        raise BadInput(f"iptables not found: network partitions need it ({INSTALL_HINT})")
    return exe


def _ipt(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([_iptables(), "-w", *args], capture_output=True, text=True,
                          timeout=30)
    if check and done.returncode != 0:
        raise BadInput(f"iptables {' '.join(args)}: {done.stderr.strip()[:200]}")
    return done


def available() -> str | None:
    """None where partitions can be made here, else why not (one line)."""
    if shutil.which("iptables") is None:
        return f"iptables is not installed ({INSTALL_HINT})"
    done = subprocess.run([_iptables(), "-w", "-S", "OUTPUT"], capture_output=True, text=True,
                          timeout=30)
    if done.returncode != 0:
        return f"iptables cannot be used here: {done.stderr.strip()[:160]}"
    return None


def _ensure_chain() -> None:
    if _ipt("-S", CHAIN, check=False).returncode != 0:
        _ipt("-N", CHAIN)
    if _ipt("-C", "OUTPUT", "-j", CHAIN, check=False).returncode != 0:
        _ipt("-I", "OUTPUT", "1", "-j", CHAIN)


def link_rules(a_ip: str, a_dist: int, b_ip: str, b_dist: int, owner: str) -> list[Rule]:
    """The four flows of the distribution link between two nodes."""
    return [Rule(("-s", a_ip, "-p", "tcp", "--dport", str(b_dist)), owner),
            Rule(("-d", a_ip, "-p", "tcp", "--sport", str(b_dist)), owner),
            Rule(("-s", b_ip, "-p", "tcp", "--dport", str(a_dist)), owner),
            Rule(("-d", b_ip, "-p", "tcp", "--sport", str(a_dist)), owner)]


def client_rules(ip: str, amqp_port: int, owner: str) -> list[Rule]:
    """Clients cut from one node's AMQP listener, both directions."""
    return [Rule(("-d", ip, "-p", "tcp", "--dport", str(amqp_port)), owner),
            Rule(("-s", ip, "-p", "tcp", "--sport", str(amqp_port)), owner)]


def add(rules: Iterable[Rule]) -> int:
    _ensure_chain()
    n = 0
    for r in rules:
        _ipt("-A", CHAIN, *r.spec())
        n += 1
    return n


def ours(owner: str | None = None) -> list[str]:
    """Our rules now in the chain (``-A ...`` lines), of one owner or of all."""
    done = _ipt("-S", CHAIN, check=False)
    if done.returncode != 0:
        return []
    tag = f'"{COMMENT} {owner}"' if owner else f'"{COMMENT} '
    return [line for line in done.stdout.splitlines()
            if line.startswith("-A ") and tag in line]


def remove(owner: str) -> int:
    """Delete exactly the rules ``owner`` added; returns how many."""
    removed = 0
    for line in ours(owner):
        _ipt("-D", *_split(line)[1:])
        removed += 1
    return removed


def clear(addresses: Iterable[str] | None = None) -> int:
    """Remove our rules: those that name one of ``addresses`` (a cluster's nodes, so another
    cluster's partition stays), or every one; the chain and its jump go once it is empty."""
    if shutil.which("iptables") is None or _ipt("-S", CHAIN, check=False).returncode != 0:
        return 0
    wanted = {f"{a}/32" for a in addresses} if addresses is not None else None
    removed = 0
    for line in ours():
        words = _split(line)
        if wanted is None or wanted & set(words):
            _ipt("-D", *words[1:], check=False)
            removed += 1
    if not [x for x in _ipt("-S", CHAIN).stdout.splitlines() if x.startswith("-A ")]:
        while _ipt("-D", "OUTPUT", "-j", CHAIN, check=False).returncode == 0:
            pass
        _ipt("-X", CHAIN, check=False)
    return removed


def _split(line: str) -> list[str]:
    import shlex

    return shlex.split(line)
