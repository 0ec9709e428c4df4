"""The import contract, as a fast test over the import graph (``lint-imports`` in scripts/test.sh
checks the same rules from pyproject.toml): imports flow one way, the core is pure, the panel
uses only the controller's facade, relock needs neither Flask nor paho, and the district board
shares the panel's rules only through its neutral modules (web/guard.py, web/export.py, ...)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("core", "core_model", "core_internals", "core_state", "core_inputs")
CORE_MAY_IMPORT = {"controller.events", "controller.vocabulary", "controller.door_settings", "controller.faults",
                   "controller.visitor", "controller.ids",
                   *(f"controller.{name}" for name in CORE)}
WEB_MAY_IMPORT = {"controller", "controller.api", "controller.config", "controller.events", "controller.labels",
                  "controller.vocabulary", "controller.visitor"}   # visitor: the visitor record's words and checks
# What the district board may use of the panel: its neutral request guard and CSV export, the
# sign-in throttle, the password policy and hashes, the account CLI's prompt. Never a blueprint,
# web/security.py (the door's error handlers) or anything that reaches the door.
BOARD_MAY_IMPORT_FROM_WEB = {"web.guard", "web.export", "web.throttle", "web.policy", "web.store", "web.cli"}
SHARED_WEB_MAY_IMPORT = {"web/guard.py": {"flask", "werkzeug"},
                         "web/export.py": {"flask", "controller.events", "controller.labels"}}


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:      # ``from . import events``: the submodule; ``from .x import y``: x
                sub = f"{base}.{a.name}"
                is_module = (ROOT / sub.replace(".", "/")).with_suffix(".py").exists() or \
                    (ROOT / sub.replace(".", "/") / "__init__.py").exists()
                out.add(sub if is_module else base)
    return out


def project_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_core_imports_only_the_standard_library_events_and_the_vocabulary():
    for name in (*CORE, "faults", "events", "vocabulary", "door_settings", "visitor"):
        for imported in imports_of(ROOT / "controller" / f"{name}.py"):
            top = imported.split(".")[0]
            if top == "controller":
                assert imported in CORE_MAY_IMPORT, f"controller/{name}.py imports {imported}"
            else:
                assert top in sys.stdlib_module_names, f"controller/{name}.py imports {imported} (not stdlib)"


def test_controller_never_imports_the_panel_or_the_composition_root():
    for path in project_files("controller"):
        bad = {i for i in imports_of(path) if i.split(".")[0] in ("web", "entry_buzzer")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_panel_reaches_the_controller_only_through_its_facade():
    for path in project_files("web"):
        reached = {i for i in imports_of(path) if i.split(".")[0] == "controller"}
        assert reached <= WEB_MAY_IMPORT, f"{path.relative_to(ROOT)} imports {sorted(reached - WEB_MAY_IMPORT)}"


def closure(module: str) -> set[str]:
    """Every module reachable from ``module`` by imports: project modules followed file by file,
    other packages recorded by name (they are installed libraries or the standard library)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = ROOT / name.replace(".", "/")
        file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if file.exists():
            parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
            todo.extend(parents)
            todo.extend(imports_of(file))
    return seen


def test_relock_needs_neither_flask_nor_paho():
    reached = closure("controller.relock")
    assert "controller.config" in reached and "gpiozero" in {m.split(".")[0] for m in reached}
    assert not {m for m in reached if m.split(".")[0] in ("flask", "paho", "werkzeug", "cheroot", "web")}


def test_the_board_uses_only_the_panels_shared_modules():
    files = project_files("district/board")
    assert files
    for path in files:
        reached = {i for i in imports_of(path) if i.split(".")[0] == "web"}
        assert reached <= BOARD_MAY_IMPORT_FROM_WEB, f"{path.relative_to(ROOT)} imports {sorted(reached)}"


def test_the_modules_shared_with_the_board_are_neutral():
    for name, allowed in SHARED_WEB_MAY_IMPORT.items():
        for imported in imports_of(ROOT / name):
            top = imported.split(".")[0]
            assert top in sys.stdlib_module_names or top in allowed or imported in allowed, \
                f"{name} imports {imported}"
