"""Install the lmdeploy 0.18.0 stand-in as ``lmdeploy`` for one test.

    from tests.standins.lmdeploy_fixture import fake_lmdeploy  # noqa: F401  (pytest fixture)

    def test_something(fake_lmdeploy, qwen_dir):
        fake_lmdeploy.settings.step_s = 0.005          # before the pipeline is built
        runner = LlmRunner(LlmArgs(model=str(qwen_dir), backend="lmdeploy", ...))
        call = fake_lmdeploy.recorder.last("GenerationConfig")
        assert call.kwargs["random_seed"] == 7
        assert fake_lmdeploy.engine.active_sessions() == set()

``install()`` is the same as a context manager. Each install loads a *fresh* copy of
``tests/standins/lmdeploy`` under the module name ``lmdeploy`` (so classes report
``lmdeploy.messages.GenerationConfig`` etc.), with its own recorder, settings and pipelines, and
on exit closes the pipelines still open and restores whatever ``sys.modules`` held before.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

STANDIN_DIR = Path(__file__).parent / "lmdeploy"


@dataclass
class LmdeployStandin:
    """Handle on one installed stand-in: the module, what was called, the knobs, the engines."""

    module: ModuleType

    @property
    def recorder(self):
        """``Recorder``: ``.calls`` (every ``Call(name, args, kwargs, thread)``), ``.named(name)``, ``.last(name)``."""
        return self.module._standin.RECORDER

    @property
    def settings(self):
        """``Settings``: ``step_s``, ``preprocess_s``, ``stop_after``, ``image_tokens``, ``max_batch_size``."""
        return self.module._standin.SETTINGS

    @property
    def pipelines(self) -> list:
        """Every ``Pipeline`` built while installed, oldest first."""
        return self.module._standin.PIPELINES

    @property
    def engine(self):
        """The engine of the last pipeline built (``tokens(sid)``, ``active_sessions()``, ``wait_idle()``...)."""
        if not self.pipelines:
            raise AssertionError("no lmdeploy.pipeline was built")
        return self.pipelines[-1].async_engine.engine

    def calls(self, name: str) -> list:
        return self.recorder.named(name)

    def close_all(self) -> None:
        for pipe in self.pipelines:
            pipe.internal_thread.close()
            pipe.async_engine.close()


def _is_lmdeploy(name: str) -> bool:
    return name == "lmdeploy" or name.startswith("lmdeploy.")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lmdeploy", STANDIN_DIR / "__init__.py", submodule_search_locations=[str(STANDIN_DIR)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["lmdeploy"] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def install() -> Iterator[LmdeployStandin]:
    saved = {name: mod for name, mod in sys.modules.items() if _is_lmdeploy(name)}
    for name in saved:
        del sys.modules[name]
    standin = None
    try:
        standin = LmdeployStandin(_load())
        yield standin
    finally:
        if standin is not None:
            standin.close_all()
        for name in [n for n in sys.modules if _is_lmdeploy(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture
def fake_lmdeploy() -> Iterator[LmdeployStandin]:
    """``import lmdeploy`` gives the 0.18.0 stand-in for the duration of the test."""
    with install() as standin:
        yield standin
