"""URLs given on the command line, checked once: a one-line BadInput naming the flag."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from rabbitscale.core.errors import BadInput


def check_url(url: str, what: str, flag: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or a one-line BadInput."""
    at = f"{flag}: " if flag else ""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"{at}bad port in {masked(url)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{at}{what} must be an http(s) URL such as http://host:5000, "
                       f"got {masked(url)!r}")
    if parts.username is not None or parts.password is not None:
        raise BadInput(f"{at}{what} carries credentials ({masked(url)!r}): give them in "
                       f"the environment (AMQP_URL or CONDUITLLM__RABBITMQ__USERNAME and "
                       f"__PASSWORD), where no process list shows them")
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


# scheme://user:password@ anywhere in a text: the password part
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@'\"]*@")


def scrub(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``: the last guard
    before a line reaches a terminal or a log (errors name what they were given)."""
    return _USERINFO.sub(r"\1***@", text)
