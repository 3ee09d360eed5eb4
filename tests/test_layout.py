"""The package keeps its layers: imports point from the top (cli, server) down to the
bottom (_json, errors), and only `aigw._json` touches a JSON library."""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "aigw"

# Lower rank = lower layer. A module may import only modules of its own rank or lower.
RANKS = {
    "aigw._json": 0, "aigw.errors": 0, "aigw.headers": 1, "aigw.providers": 1,
    "aigw.config": 2, "aigw.cost": 2, "aigw.usage": 2,
    "aigw.sse": 3, "aigw.h1": 3, "aigw.upstream": 3, "aigw.metrics": 3,
    "aigw.logstore": 3, "aigw.store": 3, "aigw.paths": 3, "aigw.retry": 3, "aigw.notify": 3,
    "aigw.policy": 4, "aigw.proxy": 4, "aigw.guard": 4, "aigw.logsafe": 1,
    "aigw.universal": 5, "aigw.compat": 5,
    "aigw.app": 6, "aigw.api": 6, "aigw.accesslog": 6,
    "aigw.server": 7, "aigw.supervisor": 8, "aigw.cli": 9, "aigw.__main__": 10,
}


def rank(module: str) -> int | None:
    best = None
    for name, r in RANKS.items():
        if module == name or module.startswith(name + "."):
            if best is None or len(name) > len(best[0]):
                best = (name, r)
    return None if best is None else best[1]


def modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(), str(path))


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks (annotations only, never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    return skip


def imports(tree: ast.AST) -> list[str]:
    out = []
    skip = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
            out.extend(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_every_module_has_a_layer():
    missing = [name for name, _ in modules() if name != "aigw" and rank(name) is None]
    assert missing == [], f"add these modules to RANKS: {missing}"


@pytest.mark.parametrize("name,tree", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_down(name, tree):
    own = rank(name)
    if own is None:
        return
    for imp in imports(tree):
        if not imp.startswith("aigw."):
            continue
        r = rank(imp)
        assert r is None or r <= own, f"{name} (layer {own}) imports {imp} (layer {r})"


def test_only_the_json_module_imports_a_json_library():
    offenders = [name for name, tree in modules() if name != "aigw._json"
                 and any(i.split(".")[0] in ("json", "orjson", "ujson", "simplejson")
                         for i in imports(tree))]
    assert offenders == []
