"""Every file rabbitscale reads or writes, as one model each: ``rabbitscale schema NAME`` prints
its JSON Schema and the docs site lists them (docs/hooks/generated.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from rabbitscale.core.errors import BadInput
from rabbitscale.results.doctor import DoctorResult
from rabbitscale.results.find_max import FindMaxResult
from rabbitscale.results.summary import Summary

MODELS: dict[str, type[BaseModel]] = {
    "summary": Summary,
    "find-max": FindMaxResult,
    "doctor": DoctorResult,
}


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of result ``name`` (the profile format's lives with the profiles:
    topology/profile_file.ProfileModel)."""
    model = MODELS.get(name)
    if model is None:
        raise BadInput(f"rabbitscale schema: no schema {name!r} (schemas: "
                       f"{', '.join(MODELS)})")
    return model.model_json_schema()
