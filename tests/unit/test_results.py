"""The typed results: summary.json as written is what every reader reads; the docs of the run
directory name every field the model has; bad files are one line; the schemas print."""

from __future__ import annotations

import json
import re

import pytest

from rabbitscale.core.errors import BadInput
from rabbitscale.results import summary as results
from rabbitscale.results.schemas import MODELS, schema
from tests.support import FIXTURES, ROOT, one_line_error, rabbitscale, summary_json


def _fields(model: type, prefix: str = "") -> set[str]:
    """Every field name of a model and of the models it holds."""
    import typing

    from pydantic import BaseModel

    out: set[str] = set()
    for name, info in model.model_fields.items():
        out.add(name)
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            for inner in (arg, *typing.get_args(arg)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    out |= _fields(inner)
    return out


def test_the_run_directory_page_names_every_summary_field():
    doc = (ROOT / "docs" / "run-directory.md").read_text()
    named = set(re.findall(r"`([a-z_0-9]+)`", doc))
    missing = sorted(_fields(results.Summary) - named)
    assert not missing, f"docs/run-directory.md does not name: {missing}"


def test_the_recorded_fixtures_read_as_summaries():
    for name in ("run_burst", "run_burst_baseline", "run_freight_amqp"):
        s = results.read(FIXTURES / name / "summary.json")
        assert s.verdict in ("PASS", "FAIL") and s.checks
        # written back and read again: the same summary
        assert results.parse(s.to_json(), "again") == s


@pytest.mark.parametrize("text,says", [
    ("{not json", "unreadable: not JSON"),
    ('{"run": 1}', "run: Input should be a valid string"),
    ("[]", "Input should be an object"),
])
def test_a_bad_summary_is_one_line(text, says):
    with pytest.raises(BadInput, match=re.escape(says)) as err:
        results.parse(text, "summary.json")
    assert "\n" not in str(err.value)


def test_a_field_the_model_does_not_know_is_refused():
    data = json.loads(summary_json())
    data["surprise"] = 1
    with pytest.raises(BadInput, match="surprise: Extra inputs are not permitted"):
        results.parse(json.dumps(data), "summary.json")


def test_every_schema_prints_and_an_unknown_one_is_exit_2():
    for name in ("profile", *MODELS):
        done = rabbitscale("schema", name)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["type"] == "object"
    bad = rabbitscale("schema", "nope")
    assert bad.returncode == 2 and "invalid choice" in one_line_error(bad)
    assert schema("summary")["title"] == "Summary"
