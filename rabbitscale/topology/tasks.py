"""Task kinds: what a load generator asks the system to do, and the message each becomes.

The one home of the kind -> message type map and of the ``--task-mix`` text format; the
queue a kind lands in is the profile's endpoint for that message type (``queue_for``).
"""

from __future__ import annotations

from rabbitscale.core.errors import ConfigError
from rabbitscale.topology.profiles import Profile

MESSAGE_TYPES = {"video": "VideoGenerationRequested", "image": "ImageGenerationRequested",
                 "spend": "SpendUpdateRequested", "webhook": "WebhookDeliveryRequested"}
# the API path each kind is sent to (ConduitLLM's, and the stack's /v1/spend and /v1/webhook)
TASK_PATHS = {"video": "/v1/videos/generations/async", "image": "/v1/images/generations/async",
              "spend": "/v1/spend", "webhook": "/v1/webhook"}
TASK_KINDS = ("video", "image", "spend")  # the async-task stream; webhooks are their own
# what a --task-mix may name: the tasks, and webhooks sent as one steady stream of the mix
# (find-max and the validation step a webhook-only stream this way)
MIX_KINDS = (*TASK_KINDS, "webhook")
DEFAULT_MIX = {"video": 0.3, "image": 0.3, "spend": 0.4}


def parse_task_mix(text: str) -> dict[str, float]:
    """'video=0.3,image=0.3,spend=0.4' -> weights; one-line ConfigError otherwise."""
    mix: dict[str, float] = {}
    for part in str(text).split(","):
        kind, sep, weight = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in MIX_KINDS:
            raise ConfigError(f"--task-mix: bad entry {part.strip()!r} "
                              f"(use {'|'.join(MIX_KINDS)}=weight, comma-separated)")
        try:
            value = float(weight)
        except ValueError:
            raise ConfigError(f"--task-mix: bad weight in {part.strip()!r}") from None
        if not 0 <= value < float("inf"):
            raise ConfigError(f"--task-mix: weight must be >= 0 in {part.strip()!r}")
        mix[kind] = value
    if not sum(mix.values()):
        raise ConfigError("--task-mix: weights must not all be 0")
    return mix


def format_task_mix(mix: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in mix.items())


def shares(mix: dict[str, float]) -> dict[str, float]:
    """Weights normalised to fractions of the task stream."""
    total = sum(mix.values()) or 1.0
    return {k: v / total for k, v in mix.items() if v > 0}


def queue_for(profile: Profile, kind: str) -> str:
    return profile.for_type(MESSAGE_TYPES[kind]).queue
