"""Template semantics (docs/profile-format.md, "Templates"): what a profile's bodies render to."""

from __future__ import annotations

import pytest

from rabbitscale.core.errors import ConfigError
from rabbitscale.topology.envelope import CaseInsensitive
from rabbitscale.topology.template import compile_template


def render(source, **context):
    return compile_template(source).render(context)


def test_a_whole_placeholder_keeps_the_value_type():
    assert render("${n}", n=3) == 3
    assert render("${t}", t={"a": [1]}) == {"a": [1]}
    assert render("${missing}") is None


def test_paths_alternatives_and_literals():
    ctx = {"request": {"model": None, "task": {"id": "t-9"}}, "task_id": "t-1"}
    assert render("${request.model ?? 'sim-video'}", **ctx) == "sim-video"
    assert render("${request.task.id ?? task_id}", **ctx) == "t-9"
    assert render("${request.nothing.deeper ?? task_id}", **ctx) == "t-1"
    assert render("${request.model.deeper ?? 7}", **ctx) == 7  # through a null: not found
    assert render("${task_id.deeper ?? 1.5}", **ctx) == 1.5  # through a string: not found
    assert render("${null}") is None and render("${true}") is True and render("${false}") is False


def test_empty_literals_are_fresh_each_render():
    template = compile_template({"h": "${request.headers ?? {}}", "l": "${x ?? []}"})
    first = template.render({"request": {}})
    first["h"]["mutated"] = "1"
    first["l"].append(1)
    assert template.render({"request": {}}) == {"h": {}, "l": []}


def test_filters_apply_in_order():
    assert render("${p | json}", p={"a": 1}) == '{"a":1}'
    assert render("${n | str}", n=5) == "5"
    assert render("${b | str}", b=True) == "true"
    assert render("${s | int}", s="42") == 42
    assert render("${s | float}", s="2") == 2.0
    assert render("${s | int}") is None


def test_placeholders_inside_text_and_nested_data():
    template = compile_template({"a": ["x-${id}-${n}", {"b": "${missing}!"}], "c": 1})
    assert template.render({"id": "k", "n": 2}) == {"a": ["x-k-2", {"b": "!"}], "c": 1}
    assert template.roots == {"id", "n", "missing"}


def test_case_insensitive_contexts_are_read_as_mappings():
    message = CaseInsensitive({"TaskId": "t-3", "Inner": {"Value": 4}})
    assert render("${message.taskId}", message=message) == "t-3"
    assert render("${message.inner.value}", message=message) == 4


@pytest.mark.parametrize("source", ["${}", "${a b}", "${a | nope}", "${a ?? }"])
def test_bad_expressions_are_config_errors(source):
    with pytest.raises(ConfigError):
        compile_template(source)


def test_unknown_variables_are_named_when_known_is_given():
    with pytest.raises(ConfigError, match="unknown variable 'reqest'"):
        compile_template({"x": "${reqest.id}"}, where="messages.X.body", known={"request"})


def test_ids_are_uuids_unique_in_a_process_and_across_a_fork():
    import os
    import uuid

    from rabbitscale.topology.envelope import new_id

    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and {uuid.UUID(i).version for i in ids} == {4}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id must not be the parent's next one
        os.write(write, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    assert child[:24] != new_id()[:24]
