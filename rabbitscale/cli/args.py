"""Reusable argument types and the parser class every command uses.

Each type turns text into a value in its unit or raises ``argparse.ArgumentTypeError`` with one
line; the parser turns any argparse error into ``BadInput`` (exit 2), refuses abbreviated
options, suggests the nearest option for a misspelt one and says where an option that belongs
to another mode of the command applies. Defaults are given as text in the unit a user would
type (``"10KB"``, ``"1000/min"``): argparse converts them with the option's type, and
``--help`` shows them as written.
"""

from __future__ import annotations

import argparse
import difflib
import re
import textwrap
from collections.abc import Callable
from typing import Any, NoReturn

from rabbitscale.core.errors import BadInput
from rabbitscale.core.units import (
    parse_bitrate_bps,
    parse_duration_s,
    parse_rate_per_s,
    parse_size_bytes,
)
from rabbitscale.topology.tasks import parse_task_mix

MAX_SIZE_BYTES = 2**50  # 1 PiB
MAX_MESSAGE_BYTES = 128 * 2**20  # RabbitMQ's max_message_size (default 128 MiB; 512 MiB at most)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already names it; a
    description's paragraphs are filled to the terminal, its indented lines (lists) kept."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if any(line.startswith("  ") for line in lines):
                out.append("\n".join(textwrap.shorten(line, 400) if not line.startswith("  ")
                                     else line for line in lines))
            else:
                out.append(textwrap.fill(" ".join(lines), width, initial_indent=indent,
                                         subsequent_indent=indent))
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or "default" in text.lower() or default in (
                None, False, True, argparse.SUPPRESS, [], "") or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (BadInput, exit 2), no abbreviations, a suggestion for a
    misspelt option, and ``elsewhere``: options of another mode of the command, named with
    where they apply instead of "unrecognized"."""

    def __init__(self, *args: Any, elsewhere: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.elsewhere = elsewhere or {}
        # '-5/s', '-3' and '-1KB' are values (refused by their type), not unknown options
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{self.prog}: {message}{self._hint(message)}")

    def _hint(self, message: str) -> str:
        m = re.search(r"unrecognized arguments: (.*)$", message)
        if not m:
            return ""
        for token in m.group(1).split():
            flag = token.split("=", 1)[0]
            if not flag.startswith("-"):
                continue
            if flag in self.elsewhere:
                return f" ({flag} {self.elsewhere[flag]})"
            close = difflib.get_close_matches(flag, list(self._option_string_actions), n=1)
            if close:
                return f"; did you mean {close[0]}?"
        return ""


def typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises BadInput (or ValueError)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:  # BadInput is a ValueError
            raise argparse.ArgumentTypeError(str(exc) or f"bad value {text!r}") from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def bounded(kind: type, lo: float, hi: float | None, what: str) -> Callable[[str], Any]:
    """``kind(text)`` within [lo, hi], with a one-line message otherwise."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or value < lo or (hi is not None and value > hi):  # NaN too
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


def _positive_rate(text: str) -> float:
    value = parse_rate_per_s(text)
    if not 0 < value < 1e7:
        raise BadInput(f"a rate must be positive and finite, got {text!r}")
    return value


def _size(text: str) -> int:
    value = parse_size_bytes(text)
    if not 1 <= value <= MAX_SIZE_BYTES:
        raise BadInput(f"a size must be between 1 byte and 1PiB, got {text!r}")
    return value


def _message_size(text: str) -> str:
    value = parse_size_bytes(text)
    if not 1 <= value <= MAX_MESSAGE_BYTES:
        raise BadInput(f"a message size must be between 1 byte and 128MiB (RabbitMQ's "
                       f"max_message_size), got {text!r}")
    return text


message_size = typed(_message_size)  # a message's size, kept as written (Locust reads it)


def _queue_duration(text: str) -> tuple[str, float]:
    queue, sep, value = text.partition("=")
    if not sep or not queue:
        raise BadInput(f"expected QUEUE=DURATION, got {text!r}")
    return queue, parse_duration_s(value)


def _duration(text: str) -> float:
    return parse_duration_s(text)


def _latency_threshold(text: str) -> str:
    from rabbitscale.core.errors import ConfigError
    from rabbitscale.judge.slo import parse_latency

    try:
        parse_latency(text)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    return text


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1), ("ms", 0.001)):
        if seconds >= size or unit == "ms":
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def duration_in(lo: float, hi: float, *, above: bool = False) -> Callable[[str], Any]:
    """A duration within [lo, hi] (above: strictly more than lo, where lo means nothing)."""

    def parse(text: str) -> float:
        value = parse_duration_s(text)
        if value < lo or value > hi or (above and value == lo):
            low = f"more than {_span(lo)}" if above else f"at least {_span(lo)}"
            raise BadInput(f"must be {low} and at most {_span(hi)}, got {text!r}")
        return value

    parse.__name__ = "duration"
    return typed(parse)


DAY_S = 86400.0
WEEK_S = 7 * DAY_S
instances = bounded(int, 1, 1000, "a whole number")
positive_int = bounded(int, 1, None, "a whole number")
port = bounded(int, 0, 65535, "a port number")
fraction = bounded(float, 0, 1, "a fraction")
time_scale = bounded(float, 0.0001, 100, "a number")
duration = typed(_duration)
rate = typed(_positive_rate)


def _rate_or_zero(text: str) -> float:
    value = parse_rate_per_s(text)
    if not 0 <= value < 1e7:
        raise BadInput(f"a rate must be finite and not negative, got {text!r}")
    return value


rate_or_zero = typed(_rate_or_zero)
def _rates(text: str) -> tuple[float, ...]:
    out = tuple(_positive_rate(p) for p in text.split(",") if p.strip())
    if not out:
        raise BadInput(f"expected one rate or more, e.g. 50/s,100/s, got {text!r}")
    return out


rates = typed(_rates)
size = typed(_size)
def _bitrate(text: str) -> float:
    value = parse_bitrate_bps(text)
    if not 0 < value <= 1e13:
        raise BadInput(f"a link speed must be above 0 and at most 10Tbps, got {text!r}")
    return value


bitrate = typed(_bitrate)
mix = typed(parse_task_mix)
queue_duration = typed(_queue_duration)


def _queue_count(text: str) -> tuple[str, int]:
    queue, sep, value = text.partition("=")
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not sep or not queue or not 1 <= n <= 65535:
        raise BadInput(f"expected QUEUE=N (N a whole number from 1 to 65535), got {text!r}")
    return queue, n


queue_count = typed(_queue_count)
latency_threshold = typed(_latency_threshold)  # checked, kept as written (the run parses it)


def _nemesis_kinds(text: str) -> tuple[str, ...]:
    from rabbitscale.faults.nemesis import parse_kinds

    return parse_kinds(text)


nemesis_kinds = typed(_nemesis_kinds)


def _fault(text: str) -> str:
    from rabbitscale.faults.catalogue import fault_class

    return fault_class(text).name


fault = typed(_fault)  # a fault of the catalogue, in its one spelling (kill_consumer too)


def _http_url(text: str) -> str:
    from rabbitscale.core.urls import check_url

    check_url(text, "the URL", "")
    return text


http_url = typed(_http_url)  # an http(s) URL, checked, kept as written


def _host_port(text: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 \
            or "/" in host or "@" in host:
        raise BadInput(f"expected HOST:PORT such as 127.0.0.1:7000, got {text!r}")
    return f"{host.lower()}:{int(port)}"


host_port = typed(_host_port)  # HOST:PORT, the host lower-cased


def _rabbitmq_version(text: str) -> str:
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not m or int(m.group(1)) not in (3, 4):
        raise BadInput(f"expected a RabbitMQ version such as 3.13 or 4.0.5, got {text!r}")
    return text.strip()


rabbitmq_version = typed(_rabbitmq_version)


def _size_text(text: str) -> str:
    _size(text)
    return text


size_text = typed(_size_text)  # a checked size kept as written (handed on to Locust)
