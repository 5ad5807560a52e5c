"""`rabbitscale audit rabbitmq.conf`: what a RabbitMQ node would make of the file, before it
is deployed.

Unknown keys stop a node from booting, so every key is checked against the cuttlefish schema:
of the RabbitMQ installed on this machine when there is one (authoritative for its version),
else the snapshot in inspect/schema/. On top of the schema, rules for what the schema accepts
but does not do what the file seems to say: both watermark keys set (the relative one wins),
a relative watermark without the container's memory, deprecated keys, a watermark or disk
limit that does not fit the container.
"""

from __future__ import annotations

import glob
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rabbitscale.core.errors import BadInput
from rabbitscale.core.units import format_bytes

SNAPSHOT_DIR = Path(__file__).resolve().parent / "schema"
INSTALLED_GLOB = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/*/priv/schema/*.schema"
ERROR, WARNING, NOTE = "error", "warning", "note"

# rabbitmq.conf information units (cuttlefish bytesize): k/kiB/M/MiB/G/GiB are powers of 2,
# kB/MB/GB powers of 10.
_RMQ_UNITS = {"": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30,
              "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}

# Deprecated or replaced keys, with what to use instead.
DEPRECATED = {
    "queue_master_locator": "deprecated since 3.10 and applies to classic queues only; quorum "
                            "queue leaders are placed by queue_leader_locator (client-local or "
                            "balanced; min-masters -> balanced)",
    "mqtt.subscription_ttl": "deprecated in 3.13 in favour of "
                             "mqtt.max_session_expiry_interval_seconds",
}
# Keys people put in rabbitmq.conf that only exist in advanced.config.
ADVANCED_ONLY = {
    "channel_operation_timeout": "exists only in advanced.config ({rabbit, "
                                 "[{channel_operation_timeout, 15000}]}); its default is "
                                 "already 15000 ms",
}
INT_KEYS = {"channel_max", "connection_max", "heartbeat", "frame_max", "consumer_timeout",
            "handshake_timeout", "management.tcp.port", "listeners.tcp.default"}


class AuditError(BadInput):
    """The file cannot be audited (missing, unreadable); one line."""


@dataclass(frozen=True)
class Finding:
    severity: str
    line: int
    key: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Schema:
    version: str
    source: str
    keys: dict[str, str]  # pattern -> schema (plugin) name
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)  # pattern -> values

    def enum(self, key: str) -> tuple[str, ...] | None:
        """The values a key whose datatype is only an enum may take, else None."""
        if key in self.enums:
            return self.enums[key]
        for pattern, values in self.enums.items():
            if "$" in pattern and _pattern_re(pattern).fullmatch(key):
                return values
        return None

    def match(self, key: str) -> str | None:
        """The schema (plugin) that defines ``key``, or None. ``$name`` matches one segment."""
        if key in self.keys:
            return self.keys[key]
        for pattern, owner in self.keys.items():
            if "$" in pattern and _pattern_re(pattern).fullmatch(key):
                return owner
        return None


_PATTERN_CACHE: dict[str, re.Pattern[str]] = {}


def _pattern_re(pattern: str) -> re.Pattern[str]:
    rx = _PATTERN_CACHE.get(pattern)
    if rx is None:
        parts = [r"[^.]+" if p.startswith("$") else re.escape(p) for p in pattern.split(".")]
        rx = _PATTERN_CACHE[pattern] = re.compile(r"\.".join(parts))
    return rx


_MAPPING = re.compile(r'^\s*\{mapping,\s*"([^"]+)"(.*?)\]\s*\}\.', re.M | re.S)
_ENUM_ONLY = re.compile(r"\{datatype,\s*\{enum,\s*\[([^\]]*)\]\}\s*\}")


def schema_mappings(text: str) -> list[tuple[str, tuple[str, ...] | None]]:
    """(key, enum values when the key's datatype is only an enum) of a cuttlefish schema."""
    out = []
    for m in _MAPPING.finditer(text):
        enum = _ENUM_ONLY.search(m.group(2))
        values = tuple(v.strip().strip("'\"") for v in enum.group(1).split(",")
                       if v.strip()) if enum else None
        out.append((m.group(1), values))
    return out


def load_schema(prefer_installed: bool = True) -> Schema:
    """Schema of the installed RabbitMQ if any, else the bundled snapshot."""
    files = sorted(glob.glob(INSTALLED_GLOB)) if prefer_installed else []
    if files:
        keys: dict[str, str] = {}
        enums: dict[str, tuple[str, ...]] = {}
        version = re.search(r"rabbitmq_server-([^/]+)/", files[0])
        for f in files:
            owner = Path(f).stem
            for key, values in schema_mappings(Path(f).read_text()):
                keys.setdefault(key, owner)
                if values:
                    enums.setdefault(key, values)
        return Schema(version.group(1) if version else "installed", "installed RabbitMQ", keys,
                      enums)
    snapshots = sorted(SNAPSHOT_DIR.glob("rabbitmq-*.keys"))
    if not snapshots:
        raise AuditError("no RabbitMQ schema found (none installed, no snapshot)")
    snap = snapshots[-1]
    keys, enums = {}, {}
    for line in snap.read_text().splitlines():
        if line and not line.startswith("#"):
            pattern, owner, *rest = line.split("\t")
            keys[pattern] = owner
            if rest and rest[0].startswith("enum:"):
                enums[pattern] = tuple(rest[0].removeprefix("enum:").split(","))
    return Schema(snap.stem.removeprefix("rabbitmq-"), f"snapshot {snap.name}", keys, enums)


def parse_conf(text: str) -> tuple[list[tuple[int, str, str]], list[Finding]]:
    """(line, key, value) entries of a rabbitmq.conf (sysctl format) and syntax findings."""
    entries, findings = [], []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()  # cuttlefish has no inline comments
        if not sep or not key or not re.fullmatch(r"[A-Za-z0-9_.\-$]+", key):
            findings.append(Finding(ERROR, n, key or line[:30],
                                    "not a 'key = value' line: the node will not boot"))
            continue
        if not value:
            findings.append(Finding(ERROR, n, key, "has no value"))
            continue
        entries.append((n, key, value))
    return entries, findings


def rmq_bytes(value: str) -> int | None:
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)", value.strip())
    if not m or m.group(2).lower() not in _RMQ_UNITS:
        return None
    return int(float(m.group(1)) * _RMQ_UNITS[m.group(2).lower()])


def audit(text: str, *, schema: Schema, target_version: str = "3.13",
          container_memory_bytes: int | None = None, disk_bytes: int | None = None,
          enabled_plugins: set[str] | None = None, upgrade_to: str | None = None
          ) -> list[Finding]:
    entries, findings = parse_conf(text)
    if upgrade_to:
        findings += upgrade_findings(entries, schema.version, upgrade_to)
    plugins = enabled_plugins if enabled_plugins is not None else {"rabbitmq_management"}
    findings += _key_findings(entries, schema, plugins)
    conf = _Conf({key: value for _, key, value in entries}, {key: n for n, key, _ in entries})
    findings += _memory_findings(conf, container_memory_bytes)
    findings += _disk_findings(conf, container_memory_bytes, disk_bytes)
    if target_version != schema.version:
        findings.append(Finding(NOTE, 0, "", f"keys were checked against the RabbitMQ "
                                             f"{schema.version} schema ({schema.source}); target "
                                             f"{target_version} may add or remove keys"))
    return sorted(findings, key=lambda f: (f.line, f.severity))


def upgrade_findings(entries: list[tuple[int, str, str]], current: str, target: str
                     ) -> list[Finding]:
    """Lines a version on the way from ``current`` to ``target`` refuses or ignores: an error
    where the node would not boot, a warning where the line stops doing what it says."""
    from rabbitscale.inspect import upgrade

    out = []
    for n, hit in upgrade.conf_hits(entries):
        change = upgrade.CHANGES[hit.change]
        if not upgrade.applies(change, current, target):
            continue
        out.append(Finding(ERROR if change.verdict == upgrade.FAIL else WARNING, n, hit.subject,
                           f"{upgrade.describe(change)} ({change.source})"))
    return out


@dataclass(frozen=True)
class _Conf:
    """The file's last value of each key, and the line it is on."""

    values: dict[str, str]
    line: dict[str, int]

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    @property
    def override(self) -> int | None:
        """total_memory_available_override_value, in bytes."""
        return rmq_bytes(self.values.get("total_memory_available_override_value", "") or "x")


def _key_findings(entries: list[tuple[int, str, str]], schema: Schema, plugins: set[str]
                  ) -> list[Finding]:
    """Each line on its own: known to the schema, of an enabled plugin, not deprecated, a value
    of the key's type; a key set twice."""
    out: list[Finding] = []
    add = out.append
    seen: dict[str, int] = {}
    for n, key, value in entries:
        if key in seen:
            add(Finding(WARNING, n, key, f"set again (first on line {seen[key]}); the last "
                                         f"value wins"))
        seen[key] = n
        if key in ADVANCED_ONLY:
            add(Finding(ERROR, n, key, "unknown rabbitmq.conf key: the node refuses to boot. "
                        + ADVANCED_ONLY[key]))
            continue
        owner = schema.match(key)
        if owner is None:
            add(Finding(ERROR, n, key, f"unknown key in the RabbitMQ {schema.version} schema "
                                       f"({schema.source}): the node refuses to boot"))
            continue
        if owner not in ("rabbit", *plugins):
            add(Finding(ERROR, n, key, f"defined by plugin {owner}: the node refuses to boot "
                                       f"unless {owner} is enabled"))
        if key in DEPRECATED:
            add(Finding(WARNING, n, key, DEPRECATED[key]))
        allowed = schema.enum(key)
        if allowed is not None and value not in allowed:
            add(Finding(ERROR, n, key, f"expects one of {', '.join(allowed)}, got {value!r}: "
                                       f"the node refuses to boot"))
        if key in INT_KEYS and not re.fullmatch(r"[0-9]+", value) and \
                not (key == "listeners.tcp.default" and re.fullmatch(r"[0-9.:\[\]a-f]+", value)):
            add(Finding(ERROR, n, key, f"expects an integer, got {value!r}"))
        if key.endswith(".relative") and _float(value) is None:
            add(Finding(ERROR, n, key, f"expects a number, got {value!r}"))
        if (key.endswith(".absolute") or key == "total_memory_available_override_value") \
                and rmq_bytes(value) is None:
            add(Finding(ERROR, n, key, f"expects a size such as 2GB or 2GiB, got {value!r}"))
    return out


def _memory_findings(conf: _Conf, container_memory_bytes: int | None) -> list[Finding]:
    """The watermark keys together, and the watermark against the container's memory."""
    out: list[Finding] = []
    rel_key, abs_key = "vm_memory_high_watermark.relative", "vm_memory_high_watermark.absolute"
    rel, absolute, override = conf.get(rel_key), conf.get(abs_key), conf.override
    if rel and absolute:
        out.append(Finding(WARNING, conf.line[abs_key], abs_key,
                           "both watermark keys are set and they map to one setting: the "
                           "relative one wins, this line is ignored"))
    if rel and not override:
        out.append(Finding(WARNING, conf.line[rel_key], rel_key,
                           "relative to the memory the node sees, which in a container is the "
                           "host's RAM, not the container limit; set "
                           "total_memory_available_override_value"))
    if not container_memory_bytes:
        return out
    watermark = None
    if rel and _float(rel) is not None:
        watermark = _float(rel) * (override or container_memory_bytes)  # type: ignore[operator]
    elif absolute:
        watermark = rmq_bytes(absolute)
    if watermark and watermark >= container_memory_bytes:
        out.append(Finding(ERROR, conf.line.get(rel_key) or conf.line.get(abs_key, 0),
                           "vm_memory_high_watermark",
                           f"watermark {format_bytes(watermark)} is not below the container "
                           f"limit {format_bytes(container_memory_bytes)}: the container is "
                           f"OOM-killed before the alarm"))
    if override and override > container_memory_bytes:
        key = "total_memory_available_override_value"
        out.append(Finding(ERROR, conf.line[key], key,
                           f"{format_bytes(override)} is more than the container limit "
                           f"{format_bytes(container_memory_bytes)}"))
    return out


def _disk_findings(conf: _Conf, container_memory_bytes: int | None, disk_bytes: int | None
                   ) -> list[Finding]:
    """The disk limit, relative (x the memory the node sees) or absolute, against the disk."""
    absolute = rmq_bytes(conf.get("disk_free_limit.absolute") or "x")
    if disk_bytes and absolute is not None:
        key = "disk_free_limit.absolute"
        if absolute >= disk_bytes:
            return [Finding(ERROR, conf.line[key], key,
                            f"requires {format_bytes(absolute)} free of a "
                            f"{format_bytes(disk_bytes)} disk: the disk alarm blocks "
                            f"publishers from the start")]
        if absolute >= 0.8 * disk_bytes:
            return [Finding(WARNING, conf.line[key], key,
                            f"{format_bytes(absolute)} of a {format_bytes(disk_bytes)} disk "
                            f"leaves {format_bytes(disk_bytes - absolute)} for the data "
                            f"before the alarm")]
    key = "disk_free_limit.relative"
    disk_rel = conf.get(key)
    seen_memory = conf.override or container_memory_bytes
    if not (disk_bytes and disk_rel and _float(disk_rel) is not None and seen_memory):
        return []
    need = _float(disk_rel) * seen_memory  # type: ignore[operator]
    if need < disk_bytes:
        return []
    return [Finding(ERROR, conf.line[key], key,
                    f"requires {format_bytes(need)} free of a {format_bytes(disk_bytes)} disk: "
                    f"the disk alarm blocks publishers from the start")]


def _float(text: str) -> float | None:
    """A number as cuttlefish reads one (0.4, 1, 1.5): nan, inf and 1e5 are not."""
    return float(text) if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text.strip()) else None


def audit_file(path: str | Path, **kw: object) -> list[Finding]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuditError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{p}: cannot read: {exc}") from None
    return audit(text, **kw)  # type: ignore[arg-type]
