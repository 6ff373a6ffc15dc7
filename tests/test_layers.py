"""The layers stay apart: data flows API -> flow -> deployment -> runner, with config and protocol at
the bottom. Checked on the source (every import statement, at any depth) and in fresh interpreters,
since this test process has torch and Ray loaded already.

- The CPU gateway replica imports no model library: torch alone costs it ~600 MB and seconds of
  start-up, for types it only builds and reads (they live in mmserve/protocol).
- Loading a config (both YAML files) imports no model library and no Ray: the planner's CLI,
  editors and CI validate configs on machines without them.
- Each family's runner offers what its task's deployment calls (the task's runner Protocol).
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

from mmserve.runners.registry import FAMILIES
from mmserve.tasks import TASKS

HEAVY = ("torch", "torchaudio", "transformers", "diffusers", "funasr", "ChatTTS", "lmdeploy", "faster_whisper",
         "ctranslate2")
ROOT = Path(__file__).resolve().parents[1]

ABOVE_MMSERVE = ("deployments", "graphs", "gateway", "bench")
# package (a folder under the repo root) -> top-level packages its modules may not import
FORBIDDEN = {
    "mmserve": ABOVE_MMSERVE,
    "mmserve/runners": ("ray", *ABOVE_MMSERVE),
    "mmserve/protocol": ("ray", "torch", *ABOVE_MMSERVE),
    "mmserve/config": ("ray", "torch", *ABOVE_MMSERVE),
    "deployments": ("graphs", "gateway", "bench"),
    "graphs": ("gateway", "bench"),
    "gateway": ("bench", "torch"),  # it may use deployments.metrics (Ray only, no model library)
}
# the one module that may reach up: it assembles the application from every layer
COMPOSITION_ROOT = Path("graphs/app.py")


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in the file names, wherever the statement is."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def upward_imports(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(ROOT)} imports {name}"
            for path in sorted((ROOT / package).rglob("*.py")) if path.relative_to(ROOT) != COMPOSITION_ROOT
            for name in sorted(imported_modules(path)) if name.split(".")[0] in forbidden]


@pytest.mark.parametrize("package", FORBIDDEN)
def test_no_import_runs_against_the_flow(package):
    assert upward_imports(package, FORBIDDEN[package]) == []


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    from gateway.services import services\n    import ray.serve\n")
    assert imported_modules(tmp_path / "m.py") == {"gateway.services", "ray.serve"}


def fresh_interpreter(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_gateway_imports_no_model_library():
    code = f"import json, sys; import gateway.ingress; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    assert fresh_interpreter(code) == []


def test_loading_a_config_imports_no_model_library_and_no_ray():
    code = ("import json, sys; from mmserve.config.app import load_app_args; "
            "apps = [load_app_args(f) for f in ('serve_config.yaml', 'configs/local.yaml')]; "
            "assert all(app.models for app in apps) and 'mmserve.runners.paraformer' in sys.modules; "
            f"print(json.dumps([m for m in {(*HEAVY, 'ray')!r} if m in sys.modules]))")
    assert fresh_interpreter(code) == []


def members(protocol: type) -> dict[str, object]:
    """A Protocol's methods (name -> function) and data members (name -> None)."""
    own = {name: value for name, value in vars(protocol).items()
           if not name.startswith("_") and inspect.isfunction(value)}
    own.update({name: None for name in typing.get_type_hints(protocol) if not name.startswith("_")})
    return own


def assigned_attributes(cls: type) -> set[str]:
    """Names the class sets on `self` in any of its methods (and its bases'), or defines on the class."""
    names = {name for klass in cls.__mro__ for name in vars(klass)}
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                    isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
    return names


def interface_gaps(runner: type, protocol: type) -> list[str]:
    gaps = []
    attributes = assigned_attributes(runner)
    for name, spec in members(protocol).items():
        if name not in attributes:
            gaps.append(f"no {name}")
        elif spec is not None:
            wanted = inspect.signature(spec)
            have = inspect.signature(getattr(runner, name))
            keyword_only = [p.name for p in wanted.parameters.values() if p.kind is p.KEYWORD_ONLY]
            positional = [p for p in wanted.parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
            bound = not isinstance(inspect.getattr_static(runner, name), staticmethod)
            try:  # the deployment's call shape must bind to the runner's method
                have.bind(*[None] * bound, *range(len(positional)), **{k: None for k in keyword_only})
            except TypeError as exc:
                gaps.append(f"{name}{have} cannot take {name}{wanted}: {exc}")
    return gaps


@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
def test_each_runner_offers_what_its_task_deployment_calls(family):
    assert interface_gaps(family.runner, TASKS[family.task].runner) == []


def test_the_interface_check_finds_a_missing_method_and_a_narrower_signature():
    class Narrow:
        def __init__(self):
            self.progress, self.sample_rate = None, 1

        def warmup(self): ...

        def validate(self, request): ...

        def synthesize(self, requests): ...  # the deployment also passes cancels

    gaps = interface_gaps(Narrow, TASKS["tts"].runner)
    assert [gap.split(":")[0].split("(")[0] for gap in gaps] == ["synthesize", "no stream"]


def test_each_declared_route_is_served_by_its_tasks_router():
    """A task's routes (mmserve/tasks.py) are what its router (also named there) serves, so the
    gateway's admission, deadlines and the load tool read the same paths the app answers."""
    from mmserve.lazy import import_attr

    for task in TASKS.values():
        served = {route.path for route in import_attr(task.router).routes}
        assert set(task.routes) <= served, (task.name, task.routes, served)
