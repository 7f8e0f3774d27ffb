"""The JSON Schema of spec documents, generated from the models, for editors.

`specs/schema.json` is this module's output; a test keeps the committed file current.
Regenerate with `python -m controller.specs.schema > specs/schema.json`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from controller.specs.models import Spec


def spec_schema() -> dict[str, Any]:
    schema = TypeAdapter(Spec).json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ecs-infer spec document (InferenceCluster or InferenceDeployment)"
    return schema


def render() -> str:
    return json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
