"""Which way the imports point (see ARCHITECTURE.md): nothing lower imports anything higher.

``cli -> public face -> recipes / evaluate -> zoo / codec -> models / data / metrics -> errors``.
Read from the source with ``ast`` (imports inside functions count too), so no backend is imported.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "medzoo"

#: room -> the rooms it must never import
FORBIDDEN = {
    "models": {"zoo", "codec", "evaluate", "recipes", "cli"},
    "data": {"models", "zoo", "codec", "evaluate", "recipes", "cli"},
    "metrics": {"zoo", "codec", "evaluate", "recipes", "cli"},  # a sibling of models: it scores them
    "zoo": {"codec", "evaluate", "recipes", "cli"},
    "codec": {"evaluate", "recipes", "cli"},
    "recipes": {"evaluate", "cli"},
    "evaluate": {"cli"},
}


def _room(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def _imports(path: pathlib.Path):
    """(line, imported medzoo room or "" for the package face) of every medzoo import in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "medzoo" else [f"medzoo.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "medzoo":
                yield node.lineno, parts[1] if len(parts) > 1 else ""


def test_the_rooms_exist():
    for room in FORBIDDEN:
        assert (PACKAGE / room).is_dir() or (PACKAGE / f"{room}.py").is_file(), room


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_no_room_imports_a_room_above_it(room):
    files = [PACKAGE / f"{room}.py"] if (PACKAGE / f"{room}.py").is_file() else sorted((PACKAGE / room).rglob("*.py"))
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{line} imports medzoo.{target}"
             for path in files for line, target in _imports(path) if target in FORBIDDEN[room]]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("room", ["models", "data", "zoo", "codec", "recipes", "evaluate"])
def test_nothing_below_the_face_imports_the_face(room):
    """``import medzoo`` / ``from medzoo import __version__`` from inside would tie the rooms to the face."""
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in sorted((PACKAGE / room).rglob("*.py"))
             for line, target in _imports(path) if target in ("", "__version__")]
    assert not wrong, "\n".join(wrong)


def _module_imports(path: pathlib.Path) -> set[str]:
    """The full names of the medzoo modules ``path`` imports (``from medzoo.data.x import y`` gives ``medzoo.data.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("medzoo.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("medzoo"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # ``from medzoo.data import preprocess``
    return found


def test_no_two_modules_of_the_package_import_each_other():
    """The house is a tree: two modules that import each other (a circle) want their shared part one floor down."""
    modules = {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
               for path in PACKAGE.rglob("*.py")}
    imports = {name: _module_imports(path) & set(modules) for name, path in modules.items()}
    circles = sorted({tuple(sorted((a, b))) for a, targets in imports.items() for b in targets
                      if a != b and a in imports.get(b, ()) and not {a, b} & {"medzoo"}
                      and not (a.startswith(b + ".") or b.startswith(a + "."))})  # a package and its own modules
    assert not circles, circles
