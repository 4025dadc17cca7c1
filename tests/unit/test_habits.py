"""House habits the code is held to: no function in pipeline/ or stages/ over 100 lines.

A function that long does several jobs; split it into helpers that each do one. Numba kernels
are exempt (splitting a compiled kernel costs calls in its hot loop). A length is
``end_lineno - lineno + 1`` of the ``def``, docstring included, decorators not.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator

from testpaths import REPO

MAX_LINES = 100
#: ``path:qualname`` of long functions allowed for now (none: keep it that way).
ALLOWED: frozenset[str] = frozenset()


def _is_numba(decorator: ast.expr) -> bool:
    """``@njit``, ``@jit``, ``@numba.anything`` (or ``@nb.njit``), called or bare."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = ast.unparse(target)
    return name.split(".")[-1] in ("njit", "jit") or name.startswith("numba.")


def _functions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    """Every function under ``node`` with its dotted qualname (``Class.method``, ``f.inner``)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                yield name, child
            yield from _functions(child, f"{name}.")
        else:
            yield from _functions(child, prefix)


def long_functions(
    source: str, path: str, *, limit: int = MAX_LINES, allowed: Collection[str] = ALLOWED
) -> list[str]:
    """``path:qualname (n lines)`` of each function in ``source`` longer than ``limit``."""
    found = []
    for name, node in _functions(ast.parse(source)):
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        key = f"{path}:{name}"
        if lines > limit and key not in allowed and not any(map(_is_numba, node.decorator_list)):
            found.append(f"{key} ({lines} lines)")
    return found


def test_no_function_over_100_lines() -> None:
    found = [
        hit
        for root in ("pipeline", "stages")
        for path in sorted((REPO / root).rglob("*.py"))
        for hit in long_functions(path.read_text(), path.relative_to(REPO).as_posix())
    ]
    assert not found, f"functions over {MAX_LINES} lines (split them):\n" + "\n".join(found)


def _statements(n: int, indent: str) -> str:
    return "".join(f"{indent}x{i} = {i}\n" for i in range(n))


def test_the_check_flags_a_long_function() -> None:
    source = (  # each def spans 120 lines: its line, a docstring or return, 118 statements
        f'def long_one():\n    """Too long."""\n{_statements(118, "    ")}\n'
        f"class Holder:\n    def method(self):\n{_statements(118, '        ')}        return 0\n\n"
        f"@njit(cache=True)\ndef kernel():\n{_statements(118, '    ')}    return 0\n\n"
        f"@numba.jit\ndef other_kernel():\n{_statements(118, '    ')}    return 0\n\n"
        "def short():\n    return 1\n"
    )
    found = long_functions(source, "stages/fake.py")
    assert found == [
        "stages/fake.py:long_one (120 lines)",
        "stages/fake.py:Holder.method (120 lines)",
    ]
    assert long_functions(source, "stages/fake.py", allowed={"stages/fake.py:long_one"}) == [
        "stages/fake.py:Holder.method (120 lines)"
    ]
    assert long_functions(source, "stages/fake.py", limit=200) == []
