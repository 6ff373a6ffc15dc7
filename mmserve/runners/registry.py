"""Every runner family mmserve can serve, one line each; YAML picks one with `runner.family`.

Adding a family: write its module (args with a `family: Literal[...]` field, a runner class, a
`Family(...)` declaration, its model library imported only inside the runner) and add one line
below. Family modules are torch-free at import, so validating a config imports no model library.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from mmserve.lazy import import_attr
from mmserve.runners.family import Family

# "module:attribute" of each family's declaration, in the order configs and docs list them
FAMILY_DECLARATIONS = (
    "mmserve.runners.paraformer:FAMILY",
    "mmserve.runners.paraformer_streaming:FAMILY",
    "mmserve.runners.faster_whisper:FAMILY",
    "mmserve.runners.sensevoice:FAMILY",
    "mmserve.runners.sd3:FAMILY",
    "mmserve.runners.llm:TRANSFORMERS",
    "mmserve.runners.llm:LMDEPLOY",
    "mmserve.runners.chattts:FAMILY",
    "mmserve.runners.vlm:TRANSFORMERS",
    "mmserve.runners.vlm:LMDEPLOY",
    "mmserve.runners.stable_audio:FAMILY",
)


def load(declaration: str) -> Family:
    family = import_attr(declaration)
    if not isinstance(family, Family):
        raise TypeError(f"{declaration} is a {type(family).__name__}, not a Family")
    return family


FAMILIES: dict[str, Family] = {family.name: family for family in map(load, FAMILY_DECLARATIONS)}

# The `runner:` of a model entry: validated as the args type of the family it names (extra keys forbidden).
RunnerArgs = Annotated[
    Union[tuple(dict.fromkeys(family.args for family in FAMILIES.values()))],  # noqa: UP007 (built at run time)
    Field(discriminator="family"),
]
