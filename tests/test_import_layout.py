"""The package's modules import each other in one direction: no cycles, counting
imports inside functions too."""
import ast

from helpers import ROOT

PACKAGE = ROOT / 'vkd_mmdet'


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports_of(path) -> set:
    """The vkd_mmdet modules ``path`` imports (a package import counts as its
    ``__init__``; ``from .pkg import name`` as the submodule when there is one)."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            targets = [f'{target}.{a.name}' for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            if t.split('.')[0] == 'vkd_mmdet' and t in MODULES:
                found.add(t)
                break
    return found - {name}


MODULES = {module_name(p): p for p in PACKAGE.rglob('*.py')}


def test_no_import_cycles_between_the_packages_modules():
    graph = {name: imports_of(path) for name, path in MODULES.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = 'open'
        for dep in sorted(graph[node]):
            if state.get(dep) == 'open':
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 'done'

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f'import cycles: {cycles}'
