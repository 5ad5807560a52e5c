"""`rabbitscale discover`, round trip: the reference stack declares conduit in its own vhost,
discover writes the profile file of what it sees, and the plan of that file (with what no broker
shows taken from conduit) equals conduit's plan; doctor passes the vhost on the file."""

from __future__ import annotations

import json
import tomllib

import tomli_w

from rabbitscale.topology.profile_file import get_profile, profile_spec
from tests.support import broker_objects, one_line_error, plan_exit, rabbitscale, stats_ready

# what the broker shows of an endpoint; the rest (retry, breaker, rate limit, service time,
# concurrency limit, partitioner, callbacks, bodies, routes) only the system's code knows
VISIBLE = ("consumes", "queue_type", "arguments", "prefetch")


def test_discover_round_trip_on_the_reference_stack(running_stack, tmp_path):
    stack = running_stack()
    conduit = get_profile("conduit")
    queues = [ep.queue for ep in conduit.endpoints]
    stats_ready(stack.vhost, queues)
    before = broker_objects(stack.vhost)
    out = tmp_path / "found.toml"
    done = rabbitscale("discover", "--vhost", stack.vhost, "--window", "0s", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert broker_objects(stack.vhost) == before  # read-only
    found = tomllib.loads(out.read_text())
    assert sorted(found["endpoints"]) == sorted(queues)
    consumed = {t for ep in conduit.endpoints for t in ep.consumes}
    assert set(found["messages"]) == consumed
    for name, spec in found["messages"].items():  # the exchanges MassTransit names
        assert spec.get("exchange", f"{found['namespace']}:{name}") == \
            conduit.messages[name].exchange

    # conduit with every visible field of every endpoint taken from discovery alone: a field
    # discover missed or got wrong changes the plan (queue type: memory; arguments: backlog
    # and limits; prefetch: memory, capacity; consumes: arrivals)
    spec = profile_spec(conduit)
    for q, ep in spec["endpoints"].items():
        for key in (*VISIBLE, "queue_arguments"):
            ep.pop(key, None)
        ep.update({k: v for k, v in found["endpoints"][q].items() if k in VISIBLE})
    overlay = tmp_path / "overlay.toml"
    overlay.write_text(tomli_w.dumps(spec))
    ours = rabbitscale("plan", "--json", "--profile-file", str(overlay))
    theirs = rabbitscale("plan", "--json", "--profile", "conduit")
    assert ours.returncode == theirs.returncode, ours.stderr
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)

    plan = rabbitscale("plan", "--profile-file", str(out))
    assert plan.returncode == plan_exit(plan.stdout), plan.stderr
    assert "[estimated inputs of the profile]" in plan.stdout
    assert "MassTransit's default ConcurrentMessageLimit" in plan.stdout
    doctor = rabbitscale("doctor", "--vhost", stack.vhost, "--profile-file", str(out))
    assert doctor.returncode == 0, doctor.stdout


def test_a_vhost_without_endpoints_writes_nothing(tmp_path):
    from tests.support import own_vhost

    with own_vhost("rs-empty") as vhost:
        out = tmp_path / "none.toml"
        done = rabbitscale("discover", "--vhost", vhost, "--window", "0s", "--out", str(out))
        assert done.returncode == 1 and not out.exists()
        assert "no MassTransit receive endpoint" in one_line_error(done)
    missing = rabbitscale("discover", "--vhost", "rs-no-such-vhost", "--window", "0s", "--out",
                          str(out))
    assert missing.returncode == 2 and "no vhost" in one_line_error(missing)
    bad = rabbitscale("discover", "--vhost", "/", "--management", "ftp://x", "--out", str(out))
    assert bad.returncode == 2 and "--management" in one_line_error(bad)
