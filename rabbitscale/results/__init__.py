"""Typed results: what a run, a backlog, doctor and find-max write and every reader reads
(pydantic models, their JSON Schemas exported). Nothing here measures or judges."""
