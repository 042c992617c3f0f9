"""Which service operations each face reaches, read from the source (no face is run).

The parity tests (tests/test_parity.py, tests/mcp/test_parity.py) ask, for
every use case in ``services/``, which route, tool, command or page reaches it.
Reading the code answers without running it: the names a face's module uses
from ``envhub.services`` (``environments.get_environment``, or a function
imported by name), followed through ``services/`` itself (a view calls its use
cases), and through the face's own helpers (a route calls ``accepted()``).

The CLI talks to REST only, so its column comes from the REST paths it asks
for: :func:`cli_requests` reads each ``request("GET", f"/api/v1/...")``-like
call in ``envhub/cli`` (following local variables and small path helpers such
as ``_path(environment_id, "status")``) as a (method, path template) pair.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import envhub

ENVHUB = Path(envhub.__file__).parent
SERVICES = ENVHUB / "services"
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Name in a module -> the services module (``environments``) or function (``environments.get``)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if module == "envhub.services":
            aliases.update({a.asname or a.name: a.name for a in node.names})
        elif module.startswith("envhub.services."):
            source = module.rsplit(".", 1)[1]
            aliases.update({a.asname or a.name: f"{source}.{a.name}" for a in node.names})
    return aliases


def _uses(node: ast.AST, aliases: dict[str, str], local: set[str], module: str) -> Iterator[str]:
    """Every service function (``module.function``) or local function named inside ``node``.

    Names, not only calls: a use case handed over as a callback counts too.
    """
    for inner in ast.walk(node):
        if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name):
            target = aliases.get(inner.value.id)
            if target and "." not in target:
                yield f"{target}.{inner.attr}"
        elif isinstance(inner, ast.Name):
            if inner.id in local:
                yield f"{module}.{inner.id}"
            elif "." in aliases.get(inner.id, ""):
                yield aliases[inner.id]


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """Top-level functions and class methods (``Class.method``), with their nodes."""
    for node in tree.body:
        if isinstance(node, _FUNCTIONS):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for inner in node.body:
                if isinstance(inner, _FUNCTIONS):
                    yield f"{node.name}.{inner.name}", inner


def module_uses(path: Path, module: str) -> dict[str, set[str]]:
    """``module.function`` -> the service and same-module functions it names."""
    tree = ast.parse(path.read_text())
    aliases = _aliases(tree)
    local = {name for name, _node in _functions(tree) if "." not in name}
    return {
        f"{module}.{name}": {use for use in _uses(node, aliases, local, module) if use != f"{module}.{name}"}
        for name, node in _functions(tree)
    }


def service_graph() -> dict[str, set[str]]:
    """Each service function -> the service functions it names (its own module's included)."""
    graph: dict[str, set[str]] = {}
    for path in SERVICES.glob("*.py"):
        graph.update(module_uses(path, path.stem))
    return graph


def closure(starts: Iterable[str], graph: dict[str, set[str]]) -> set[str]:
    todo, seen = list(starts), set[str]()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def face_graph(package: Path, prefix: str) -> dict[str, set[str]]:
    """Each function of a face's modules (``{prefix}module.function``) -> what it names.

    The prefix keeps a face's ``environments.create_environment`` apart from the service's.
    """
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        graph.update(module_uses(path, prefix + path.relative_to(package).with_suffix("").as_posix()))
    return graph


def reached_from(package: Path, glob: str = "*.py") -> set[str]:
    """The service functions any module of ``package`` (matching ``glob``) reaches."""
    starts: set[str] = set()
    for path in package.rglob(glob):
        tree = ast.parse(path.read_text())
        starts.update(_uses(tree, _aliases(tree), set(), path.stem))
    return closure(starts, service_graph())


# -- the CLI's requests --------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def template(path: str) -> str:
    """A path with every ``{parameter}`` written ``{}``, so a route and a request compare."""
    return _PLACEHOLDER.sub("{}", path)


@dataclass(frozen=True, slots=True)
class _Helper:
    parameters: list[str]
    defaults: dict[str, ast.expr]
    returns: ast.expr


class _PathReader:
    """Evaluates the path argument of a request as far as the code says it (strings, f-strings, helpers)."""

    def __init__(self, helpers: dict[str, _Helper]) -> None:
        self.helpers = helpers

    def value(self, node: ast.expr | None, names: dict[str, ast.expr | str]) -> str | None:
        """The string ``node`` makes, anything known only at run time as ``{}``; None if not a string."""
        if node is None:
            return None
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            parts = []
            for part in node.values:
                if isinstance(part, ast.Constant):
                    parts.append(str(part.value))
                else:
                    assert isinstance(part, ast.FormattedValue)
                    known = self.value(part.value, names) if isinstance(part.value, ast.Name) else None
                    parts.append(known if known is not None else "{}")
            return "".join(parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.value(node.left, names), self.value(node.right, names)
            return left + right if left is not None and right is not None else None
        if isinstance(node, ast.IfExp):
            test = self.value(node.test, names)
            if test is None:
                return None
            return self.value(node.body if test else node.orelse, names)
        if isinstance(node, ast.Name):
            bound = names.get(node.id)
            return bound if isinstance(bound, str) or bound is None else self.value(bound, names)
        if isinstance(node, ast.Call):
            return self._call(node, names)
        return None

    def _call(self, node: ast.Call, names: dict[str, ast.expr | str]) -> str | None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        helper = self.helpers.get(name)
        if helper is None:
            return None
        bound: dict[str, ast.expr | str] = {}
        for parameter, argument in zip(helper.parameters, node.args, strict=False):
            known = self.value(argument, names)
            bound[parameter] = known if known is not None else "{}"
        for keyword in node.keywords:
            if keyword.arg:
                known = self.value(keyword.value, names)
                bound[keyword.arg] = known if known is not None else "{}"
        for parameter, default in helper.defaults.items():
            bound.setdefault(parameter, default)
        return self.value(helper.returns, bound)


def _path_helpers(trees: Iterable[ast.Module]) -> dict[str, _Helper]:
    """Functions whose body is one ``return`` of a string expression: ``_path(environment_id, what)``."""
    helpers: dict[str, _Helper] = {}
    for tree in trees:
        for node in tree.body:
            if (
                isinstance(node, ast.FunctionDef)
                and len(node.body) == 1
                and isinstance(node.body[0], ast.Return)
            ):
                args = node.args.args
                defaulted = [a.arg for a in args[len(args) - len(node.args.defaults) :]]
                defaults = dict(zip(defaulted, node.args.defaults, strict=True))
                helpers[node.name] = _Helper([a.arg for a in args], defaults, node.body[0].value)  # type: ignore[arg-type]
    return helpers


# The calls that send a request: connection.request(METHOD, path, ...), .stream(METHOD, path, ...),
# and resources.pages(connection, path, ...) which GETs every page of a list.
_SENDERS = {"request": (0, 1), "stream": (0, 1), "pages": (None, 1)}


Request = tuple[str, str]  # (method, path template)


def _requests_in(node: ast.AST, reader: _PathReader) -> set[Request]:
    assigned: dict[str, ast.expr | str] = {}
    for inner in ast.walk(node):
        if (
            isinstance(inner, ast.Assign)
            and len(inner.targets) == 1
            and isinstance(inner.targets[0], ast.Name)
        ):
            assigned[inner.targets[0].id] = inner.value
    found: set[Request] = set()
    for inner in ast.walk(node):
        if not (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)):
            continue
        sender = _SENDERS.get(inner.func.attr)
        if sender is None or len(inner.args) <= sender[1]:
            continue
        method_at, path_at = sender
        method = "GET" if method_at is None else reader.value(inner.args[method_at], {})
        path = reader.value(inner.args[path_at], assigned)
        if method and path and path.startswith("/api/"):
            found.add((method.upper(), template(path)))
    return found


@dataclass(frozen=True, slots=True)
class CliReading:
    """The CLI's functions and classes (``module.name``): the requests each sends, the others it uses."""

    requests: dict[str, set[Request]]
    uses: dict[str, set[str]]

    def sent_by(self, name: str) -> set[Request]:
        """What ``name`` sends, itself or through the CLI's other functions and classes."""
        return set().union(*(self.requests.get(each, set()) for each in closure([name], self.uses)))


def read_cli(package: Path) -> CliReading:
    modules = {path.stem: ast.parse(path.read_text()) for path in sorted(package.glob("*.py"))}
    reader = _PathReader(_path_helpers(modules.values()))
    requests: dict[str, set[Request]] = {}
    uses: dict[str, set[str]] = {}
    for module, tree in modules.items():
        imported = {
            a.asname or a.name: a.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "envhub.cli"
            for a in node.names
        }
        defined = [node for node in tree.body if isinstance(node, (*_FUNCTIONS, ast.ClassDef))]
        local = {node.name for node in defined}
        for node in defined:
            name = f"{module}.{node.name}"
            requests[name] = _requests_in(node, reader)
            used = set()
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name) and inner.id in local:
                    used.add(f"{module}.{inner.id}")
                elif isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name):
                    if inner.value.id in imported:
                        used.add(f"{imported[inner.value.id]}.{inner.attr}")
                    elif inner.value.id == "self":
                        used.add(f"{module}.{inner.attr}")  # a method of the class: counted with it
            uses[name] = used - {name}
    return CliReading(requests, uses)


def cli_requests(package: Path) -> set[Request]:
    """Every (method, path template) the CLI's code sends to the REST API."""
    reading = read_cli(package)
    return set().union(*reading.requests.values())
