"""URLs given on the command line, checked once: a one-line BadInput naming the flag."""

from __future__ import annotations

from urllib.parse import urlsplit

from rabbitscale.core.errors import BadInput


def check_url(url: str, what: str, flag: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or a one-line BadInput."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"{flag}: bad port in {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{flag}: {what} must be an http(s) URL such as http://host:5000, "
                       f"got {url!r}")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def is_amqp(url: str) -> bool:
    return urlsplit(url).scheme in ("amqp", "amqps")
