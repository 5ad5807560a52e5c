"""Virtual-key bearer auth: keys derived from one secret, so load generators can mint many.

A virtual key is ``condt_<id>_<hmac>``; the API checks the HMAC and reads the virtual-key id
from it, the way ConduitLLM maps a key to its VirtualKeyId. Explicit keys can be added too.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SECRET_ENV = "RABBITSCALE_API_SECRET"
KEYS_ENV = "RABBITSCALE_API_KEYS"
VERIFIED_CACHE = 100_000  # valid keys remembered (bounded)


MAX_KEY_CHARS = 256
MAX_KEY_ID_DIGITS = 18  # a key id fits a signed 64-bit integer


@dataclass(frozen=True)
class VirtualKeys:
    secret: str = field(repr=False)
    extra: Mapping[str, int] = field(default_factory=dict, repr=False)
    _verified: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def key_for(self, key_id: int) -> str:
        mac = hmac.new(self.secret.encode(), str(key_id).encode(), hashlib.sha256).hexdigest()
        return f"condt_{key_id}_{mac[:24]}"

    def verify(self, key: str) -> int | None:
        """The virtual-key id, or None when the key is not valid. Keys that passed are
        remembered (a bounded set), so a client's every request costs no HMAC."""
        if key in self.extra:
            return self.extra[key]
        known = self._verified.get(key)
        if known is not None:
            return known
        if not key.isascii() or len(key) > MAX_KEY_CHARS:  # ² and ٣ are digits to isdigit
            return None
        parts = key.split("_")
        if len(parts) != 3 or parts[0] != "condt" or not parts[1].isdigit() or \
                len(parts[1]) > MAX_KEY_ID_DIGITS:
            return None
        key_id = int(parts[1])
        if not hmac.compare_digest(self.key_for(key_id), key):
            return None
        if len(self._verified) < VERIFIED_CACHE:
            self._verified[key] = key_id
        return key_id

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VirtualKeys:
        """RABBITSCALE_API_SECRET (random when unset) and RABBITSCALE_API_KEYS (comma list)."""
        env = os.environ if environ is None else environ
        secret = env.get(SECRET_ENV) or secrets.token_hex(16)
        extra = _explicit(k.strip() for k in env.get(KEYS_ENV, "").split(",") if k.strip())
        return cls(secret, extra)


def _explicit(keys: Iterable[str]) -> dict[str, int]:
    return {k: 1_000_000 + i for i, k in enumerate(keys)}


def main(argv: list[str] | None = None) -> int:
    """`python -m rabbitscale.harness.auth KEY_ID`: print the virtual key for KEY_ID, derived from
    RABBITSCALE_API_SECRET, so keys need not be printed by the stack or kept in logs."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    secret = os.environ.get(SECRET_ENV)
    if len(args) != 1 or not args[0].isdigit() or not secret:
        print(f"usage: {SECRET_ENV}=... python -m rabbitscale.harness.auth KEY_ID", file=sys.stderr)
        return 2
    print(VirtualKeys(secret).key_for(int(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
