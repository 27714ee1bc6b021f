"""The package's import graph: no cycles, layers import only the layers below them, and every module imports
on its own. Layers, bottom to top: core → data → eval → tasks → training → commands (and cli)."""
import ast
import subprocess
import sys
from pathlib import Path

import ebtkit

ROOT = Path(ebtkit.__file__).resolve().parent
LAYERS = {"core": 0, "data": 1, "eval": 2, "tasks": 3, "training": 4, "commands": 5, "cli": 5}


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """ebtkit modules imported anywhere in ``path`` (module- or function-level), parents excluded."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known}
    return {t for t in found if not name.startswith(t + ".") and t != name}


def _graph():
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def _layer(m: str) -> int | None:
    parts = m.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_layers_import_only_layers_below():
    bad = []
    for m, deps in _graph().items():
        lm = _layer(m)
        for d in deps:
            ld = _layer(d)
            if lm is not None and ld is not None and ld > lm:
                bad.append(f"{m} imports {d}")
    assert not bad, bad


def test_models_and_checkpoint_import_no_io_or_inference():
    graph = _graph()
    for m, deps in graph.items():
        if m.startswith("ebtkit.core.models"):
            assert not {d for d in deps if d == "ebtkit.core.checkpoint" or _layer(d) != 0}, (m, deps)
    assert graph["ebtkit.core.checkpoint"] <= {"ebtkit.core"}


def test_every_module_imports_alone():
    names = [m for m in _modules() if m != "ebtkit"]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    for k in [k for k in sys.modules if k == 'ebtkit' or k.startswith('ebtkit.')]:\n"
            "        del sys.modules[k]\n"
            "    importlib.import_module(name)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_library_never_imports_the_command_layer():
    """Evaluation lives in ebtkit.eval (ebtkit.eval.runs), FLOP counting calls the training loop: nothing outside
    the command layer imports ebtkit.commands or ebtkit.cli."""
    bad = [f"{m} imports {d}" for m, deps in _graph().items() if _layer(m) != LAYERS["commands"] and m != "ebtkit"
           for d in deps if _layer(d) == LAYERS["commands"]]
    assert not bad, bad
    assert "ebtkit.eval.runs" in _modules()


def test_research_code_is_not_installed():
    """Experimental mechanisms used only by scripts/ live in scripts/, not in the package."""
    assert "ebtkit.eval.policies_extra" not in _modules()
    assert (ROOT.parent / "scripts" / "policies_extra.py").is_file()


def test_no_module_is_over_500_lines():
    """Files have one job; a module that grows past 500 lines is split along its seams (issue 22)."""
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
