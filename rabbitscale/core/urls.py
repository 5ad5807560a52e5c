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


def masked(url: str) -> str:
    """The URL with its password replaced by ``***``: the only form a URL takes in any
    output (amqp://user:***@host:5672/vh)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: show no part that may be a secret
        return "<unparsable URL>" if "@" in url else url
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
