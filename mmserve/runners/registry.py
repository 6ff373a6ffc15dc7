"""Every runner family mmserve can serve, one line each; YAML picks one with `runner.family`.

Adding a family: write its runner module (args with a `family: Literal[...]` field, a runner class,
a `Family(...)` declaration) and add one line below. Imports every runner module (and so torch):
the CPU gateway never imports this; the app builder passes it names, tasks and families as data.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from mmserve.runners import asr, image, llm, music, tts, vlm, whisper
from mmserve.runners.family import Family

FAMILIES: dict[str, Family] = {family.name: family for family in (
    asr.FAMILY,
    whisper.FAMILY,
    image.FAMILY,
    llm.TRANSFORMERS,
    llm.LMDEPLOY,
    tts.FAMILY,
    vlm.TRANSFORMERS,
    vlm.LMDEPLOY,
    music.FAMILY,
)}

# The `runner:` of a model entry: validated as the args type of the family it names (extra keys forbidden).
RunnerArgs = Annotated[
    Union[tuple(dict.fromkeys(family.args for family in FAMILIES.values()))],  # noqa: UP007 (built at run time)
    Field(discriminator="family"),
]


def family_of(runner_args) -> Family:
    return FAMILIES[runner_args.family]
