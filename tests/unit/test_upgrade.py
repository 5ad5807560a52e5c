"""The upgrade table (inspect/upgrade.py) without a broker: the way from 3.10 to each target,
which changes count for a target, a rabbitmq.conf and a profile read against it, both names of
the raft gauges, and the broker model's version."""

from __future__ import annotations

import pytest

from rabbitscale.broker.prometheus import RAFT, raft_figures
from rabbitscale.capacity.broker import BrokerCoefficients
from rabbitscale.inspect import upgrade
from rabbitscale.inspect.audit import audit as audit_text
from rabbitscale.inspect.audit import load_schema
from rabbitscale.topology.profile_file import load_system
from rabbitscale.topology.settings import RabbitSettings
from tests.support import rabbitscale


@pytest.mark.parametrize("target,hops", [
    ("3.13", ["3.11", "3.12", "3.13"]),
    ("4.0", ["3.11", "3.12", "3.13", "4.0"]),
    ("4.3", ["3.11", "3.12", "3.13", "4.2", "4.3"]),
])
def test_the_way_there_from_3_10(target, hops):
    assert upgrade.path("3.10.8", target) == hops


def test_a_change_counts_between_the_version_and_the_target():
    lazy = upgrade.CHANGES["queue-mode"]  # from 4.3
    assert upgrade.applies(lazy, "3.10.8", "4.3")
    assert not upgrade.applies(lazy, "3.10.8", "4.2")
    assert not upgrade.applies(lazy, "4.3.1", "4.3")  # already there
    assert all(c.source and c.fix and c.then for c in upgrade.CHANGES.values())
    assert {c.version for c in upgrade.CHANGES.values()} <= {"3.11", *upgrade.TARGETS}


def test_a_conf_is_read_for_its_target():
    conf = ("classic_queue.default_version = 1\ntcp_listen_options.buffer = 65536\n"
            "cluster_formation.randomized_startup_delay_range.min = 1\n"
            "vm_memory_high_watermark.relative = 0.4\n")
    schema = load_schema(prefer_installed=False)
    found = {(f.line, f.severity) for f in audit_text(conf, schema=schema, upgrade_to="4.3")
             if "from 4." in f.message}
    assert found == {(1, "error"), (2, "warning"), (3, "error")}
    assert not [f for f in audit_text(conf, schema=schema, upgrade_to="3.13")
                if "from 4." in f.message]


def test_a_profile_declaring_what_4_3_refuses(tmp_path):
    path = tmp_path / "lazy.toml"
    path.write_text('name = "x"\n[rabbitmq]\nDurable = false\n[messages.Paid]\nsize = "20MiB"\n'
                    '[endpoints.payments]\nconsumes = ["Paid"]\nqueue_type = "classic"\n'
                    'arguments = { x-queue-mode = "lazy" }\n')
    settings, profile = load_system(None, str(path), environ={})
    changes = {h.change for h in upgrade.profile_hits(profile, settings)}
    assert changes == {"queue-mode", "transient-nonexclusive", "max-message-size"}
    done = rabbitscale("profile", "check", str(path), "--upgrade-to", "4.3")
    assert done.returncode == 1 and "x-queue-mode" in done.stdout, done.stdout
    assert rabbitscale("profile", "check", str(path), "--upgrade-to", "3.13").returncode == 0


@pytest.mark.parametrize("names", [0, 1], ids=["3.x names", "4.2 names"])
def test_the_raft_gauges_are_read_under_either_name(names):
    latency, commit, applied = (RAFT[k][names] for k in
                                ("commit_latency", "commit_index", "last_applied"))
    samples = [(latency, {}, 0.004), (commit, {}, 120.0), (applied, {}, 100.0),
               (latency, {"queue": "q"}, 9.0)]  # per-object samples are not the node's
    assert raft_figures(samples) == {"raft_commit_latency_s": 0.004, "raft_apply_lag": 20}


def test_the_broker_model_says_for_which_version_it_was_measured():
    c = BrokerCoefficients()
    same, other, unknown = (c.for_version(v) for v in ("3.10.2", "4.1", None))
    assert same["measured"] and not same["carried_over_untested"]
    assert other["carried_over_untested"] == same["measured"] and not other["measured"]
    assert "rollover_overlap" in same["assumed"] and "rollover_overlap" not in same["measured"]
    assert unknown["note"] == "measured on RabbitMQ 3.10.8"
    assert RabbitSettings().durable  # MassTransit's default: durable endpoints
