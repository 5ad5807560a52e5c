"""Body templates: a message or request body written as data, with ``${...}`` placeholders.

A template is JSON-like data (tables, arrays, strings, numbers, booleans), as a profile file
writes it. A string that is exactly one placeholder, ``"${expr}"``, becomes the expression's
value with its type (a number, a table, null); placeholders inside a longer string are
replaced by their text. An expression is a variable with an optional dotted path
(``request.prompt``, ``message.taskId``), alternatives separated by ``??`` (the first that is
not null) and filters after ``|``: ``json`` (the value as JSON text), ``str``, ``int``,
``float``. ``null``, ``true``, ``false``, numbers and quoted text (``'sim-video'``) are values.

Templates are parsed once (``compile_template``), so rendering one per message costs a walk
over the tree, not a parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from rabbitscale.core.errors import ConfigError

_PLACEHOLDER = re.compile(r"\$\{((?:[^{}]|\{\})*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*$")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?$")
_LITERALS: dict[str, Any] = {"null": None, "true": True, "false": False}
_EMPTY = {"{}": dict, "[]": list}  # a fresh empty table or array each time


def _to_int(v: Any) -> Any:
    return None if v is None else int(v)


def _to_float(v: Any) -> Any:
    return None if v is None else float(v)


def _to_str(v: Any) -> Any:
    return None if v is None else v if isinstance(v, str) else orjson.dumps(v).decode() \
        if isinstance(v, dict | list) else str(v).lower() if isinstance(v, bool) else str(v)


FILTERS: dict[str, Callable[[Any], Any]] = {
    "json": lambda v: orjson.dumps(v).decode(),
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
}


@dataclass(frozen=True)
class _Term:
    """A variable path, or a literal value (``path`` empty)."""

    path: tuple[str, ...]
    value: Any = None

    def getter(self) -> Callable[[Mapping[str, Any]], Any]:
        """The term as a closure: rendering is per message, so the branches a term does not
        need are decided here, once, and a plain dict is read without the Mapping ABC check."""
        value, path = self.value, self.path
        if not path:
            if value in (dict, list):
                return lambda ctx: value()
            return lambda ctx: value
        if len(path) == 1:
            name = path[0]
            return lambda ctx: ctx.get(name)

        def walk(ctx: Mapping[str, Any]) -> Any:
            value: Any = ctx
            for part in path:
                if type(value) is dict or isinstance(value, Mapping):
                    value = value.get(part)
                else:
                    return None
            return value

        return walk


@dataclass(frozen=True)
class Expr:
    terms: tuple[_Term, ...]
    filters: tuple[Callable[[Any], Any], ...]
    _call: Callable[[Mapping[str, Any]], Any] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_call", self._compile())

    def _compile(self) -> Callable[[Mapping[str, Any]], Any]:
        getters = tuple(t.getter() for t in self.terms)
        filters = self.filters
        if len(getters) == 1 and not filters:
            return getters[0]

        def call(ctx: Mapping[str, Any]) -> Any:
            value = None
            for get in getters:
                value = get(ctx)
                if value is not None:
                    break
            for f in filters:
                value = f(value)
            return value

        return call

    def __call__(self, context: Mapping[str, Any]) -> Any:
        return self._call(context)

    @property
    def roots(self) -> set[str]:
        return {t.path[0] for t in self.terms if t.path}


def parse_expr(text: str) -> Expr:
    """``request.model ?? 'sim-video' | str`` -> Expr; ConfigError (one line) otherwise."""
    body, *filters = [p.strip() for p in text.split("|")]
    terms = []
    for alt in (a.strip() for a in body.split("??")):
        if alt in _LITERALS:
            terms.append(_Term((), _LITERALS[alt]))
        elif alt in _EMPTY:
            terms.append(_Term((), _EMPTY[alt]))
        elif len(alt) >= 2 and alt[0] == alt[-1] == "'":
            terms.append(_Term((), alt[1:-1]))
        elif _NUMBER.match(alt):
            terms.append(_Term((), float(alt) if "." in alt else int(alt)))
        elif _NAME.match(alt):
            terms.append(_Term(tuple(alt.split("."))))
        else:
            raise ConfigError(f"${{{text}}}: expected a name such as request.prompt, a "
                              f"literal or 'text', alternatives with ??, filters with |")
    unknown = [f for f in filters if f not in FILTERS]
    if unknown or not terms:
        raise ConfigError(f"${{{text}}}: unknown filter {unknown[0]!r} (known: "
                          f"{', '.join(FILTERS)})" if unknown else f"${{{text}}}: empty")
    return Expr(tuple(terms), tuple(FILTERS[f] for f in filters))


@dataclass(frozen=True)
class Template:
    """A compiled template: ``render(context)`` gives fresh data every call; two templates are
    equal when their sources are."""

    source: Any
    _render: Callable[[Mapping[str, Any]], Any] = field(compare=False, repr=False)
    roots: frozenset[str] = field(compare=False)

    def render(self, context: Mapping[str, Any]) -> Any:
        return self._render(context)


def compile_template(source: Any, where: str = "template",
                     known: set[str] | None = None) -> Template:
    """Compile ``source``; with ``known``, a variable outside it is a ConfigError naming
    ``where`` (a typo in a profile file is caught when the file is read, not mid-run)."""
    roots: set[str] = set()

    def build(node: Any, at: str) -> Callable[[Mapping[str, Any]], Any]:
        if isinstance(node, Mapping):
            items = [(str(k), build(v, f"{at}.{k}")) for k, v in node.items()]
            return lambda ctx: {k: f(ctx) for k, f in items}
        if isinstance(node, list):
            parts = [build(v, f"{at}[{i}]") for i, v in enumerate(node)]
            return lambda ctx: [f(ctx) for f in parts]
        if not isinstance(node, str) or "${" not in node:
            return lambda ctx: node
        m = _PLACEHOLDER.fullmatch(node)
        try:
            if m:
                expr = parse_expr(m.group(1))
                roots.update(expr.roots)
                return expr._call
            pieces: list[Any] = []
            last = 0
            for m2 in _PLACEHOLDER.finditer(node):
                pieces.append(node[last:m2.start()])
                e = parse_expr(m2.group(1))
                roots.update(e.roots)
                pieces.append(e)
                last = m2.end()
            pieces.append(node[last:])
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
        return lambda ctx: "".join(
            p if isinstance(p, str) else "" if (v := p(ctx)) is None else _to_str(v)
            for p in pieces)

    render = build(source, where)
    if known is not None and roots - known:
        bad = sorted(roots - known)[0]
        raise ConfigError(f"{where}: unknown variable {bad!r} in a template (known: "
                          f"{', '.join(sorted(known))})")
    return Template(source, render, frozenset(roots))


def set_path(data: Any, path: str, value: Any) -> None:
    """Set ``a.b.c`` in nested tables (the tables must exist)."""
    *parents, last = path.split(".")
    for p in parents:
        data = data[p]
    data[last] = value


def get_path(data: Any, path: str) -> Any:
    """``a.b.c`` of nested tables, or None."""
    for p in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(p)
    return data
