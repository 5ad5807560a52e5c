#!/usr/bin/env bash
# Dead code cannot land (`make lint`): vulture's unused functions, methods, classes, imports
# and properties in the package and the docs hooks. Its other findings (dataclass and model
# fields, read by name) are not judged. What a framework calls by name is not dead: Locust's
# event listeners and user classes, pydantic's validators, mkdocs' hooks.
set -u
cd "$(dirname "$0")/.."
VULTURE=${VULTURE:-.venv/bin/vulture}
# tests and benches are scanned as users (a wrong model only a test uses is a test's tool)
found=$("$VULTURE" rabbitscale docs/hooks tests bench --min-confidence 60 \
    --ignore-decorators "@events.*,@field_validator,@task" \
    --ignore-names "on_files,*User,BurstShape,tick" \
    --exclude "rabbitscale/scenarios/locustfiles/sustained_tasks.py" \
  | grep -E "^(rabbitscale|docs)/" | grep -E "unused (function|method|class|import|property)")
if [ -n "$found" ]; then
  echo "dead code (remove it, or name the framework that calls it in scripts/dead_code.sh):"
  echo "$found"
  exit 1
fi
echo "dead code: none"
