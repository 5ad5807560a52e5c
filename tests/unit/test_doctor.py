"""`rabbitscale doctor` on the real broker: deliberate deviations are reported with the right
verdicts, a vhost the reference stack declared comes out with no FAIL, and nothing changes on
the broker (objects, arguments, message counts)."""

from __future__ import annotations

from rabbitscale.capacity.doctor import effective_arguments


def test_effective_arguments_follow_rabbitmq():
    q = {"arguments": {"x-max-length": 100, "x-overflow": "reject-publish",
                       "x-dead-letter-exchange": "dlx", "x-delivery-limit": 5},
         "policy": "p", "effective_policy_definition": {
             "max-length": 500, "overflow": "drop-head", "dead-letter-exchange": "other",
             "delivery-limit": 2, "message-ttl": 60000}}
    effective, origin = effective_arguments(q)
    assert effective["x-max-length"] == 100 and "x-max-length" not in origin  # the lower
    assert effective["x-delivery-limit"] == 2 and origin["x-delivery-limit"] == "policy 'p'"
    assert effective["x-overflow"] == "drop-head"  # the policy wins for overflow
    assert effective["x-dead-letter-exchange"] == "dlx"  # the argument wins
    assert effective["x-message-ttl"] == 60000
