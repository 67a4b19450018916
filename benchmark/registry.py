"""One registry type for methods, text encoders, ECG encoders, datasets and protocols.

A factory is registered with a decorator; ``create("name[key=value,...]")`` builds it with
overrides; ``list("res*")`` lists names by pattern. Variant names carry their settings
(``mets[lm=tfidf,temperature=0.1]``) and grids expand with ``|``
(``mets[lm=minilm|tfidf]`` -> two variants).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import itertools
import sys
from pathlib import Path
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

from benchmark.errors import UserError, unknown_name

ENTRY_POINT_GROUP = "ecgbench.methods"


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.1' -> 0.1, 'true' -> True, 'none' -> None, anything else stays a string."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return t


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside square brackets: 'a[x=1,y=2],b' -> ['a[x=1,y=2]', 'b']."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise UserError(f"unbalanced ']' in '{text}'")
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise UserError(f"unbalanced '[' in '{text}'")
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'mets[lm=tfidf,temperature=0.1]' -> ('mets', {'lm': 'tfidf', 'temperature': 0.1})."""
    spec = spec.strip()
    if "[" not in spec:
        if "]" in spec:
            raise UserError(f"malformed name '{spec}': ']' without '['")
        return spec, {}
    if not spec.endswith("]"):
        raise UserError(f"malformed name '{spec}': settings go in one trailing [key=value,...]")
    name, body = spec[:-1].split("[", 1)
    params: dict[str, Any] = {}
    for item in split_top_level(body):
        if "=" not in item:
            raise UserError(f"malformed setting '{item}' in '{spec}': expected key=value")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key in params:
            raise UserError(f"setting '{key}' given twice in '{spec}'")
        params[key] = parse_value(value)
    return name.strip(), params


def format_spec(name: str, params: dict[str, Any]) -> str:
    """Canonical variant name: keys sorted, so equal settings give equal names."""
    if not params:
        return name
    body = ",".join(f"{k}={format_value(v)}" for k, v in sorted(params.items()))
    return f"{name}[{body}]"


def expand_grid(spec: str) -> list[str]:
    """'mets[lm=minilm|tfidf,temperature=0.07]' -> one canonical spec per combination."""
    spec = spec.strip()
    if "[" not in spec:
        return [spec]
    name, body = spec[:-1].split("[", 1)
    keys, choices = [], []
    for item in split_top_level(body):
        if "=" not in item:
            raise UserError(f"malformed setting '{item}' in '{spec}': expected key=value")
        key, value = item.split("=", 1)
        keys.append(key.strip())
        choices.append([v for v in value.split("|")])
    out = []
    for combo in itertools.product(*choices):
        params = {k.replace("-", "_"): parse_value(v) for k, v in zip(keys, combo)}
        out.append(format_spec(name.strip(), params))
    return out


@dataclass
class Entry:
    name: str
    factory: Callable[..., Any]
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def accepted_params(self) -> set[str] | None:
        """Keyword names the factory accepts, or None if it takes **kwargs."""
        sig = inspect.signature(self.factory)
        if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return None
        return {
            n for n, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


class Registry:
    """Name -> factory, with create-by-spec, pattern listing and prefix handlers (``hf:...``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._prefixes: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}  # other name -> registered name (mitdb -> mitbih)

    def register(self, name: str | None = None, *, prefix: bool = False, description: str = "",
                 aliases: tuple[str, ...] = (), **meta):
        """Decorator. ``prefix=True`` registers a handler for names like ``hf:<anything>``;
        the part after the colon is passed as the factory's first positional argument.
        ``aliases`` are other names accepted for it (:meth:`canonical`)."""

        def deco(factory):
            key = name or factory.__name__
            self._aliases.update({a: key for a in aliases})
            table = self._prefixes if prefix else self._entries
            if key in table and table[key].factory is not factory:
                raise ValueError(f"{self.kind} '{key}' registered twice")
            doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
            table[key] = Entry(key, factory, doc, meta)
            return factory

        return deco

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a plug-in registering a new version of itself); no error if absent."""
        self._entries.pop(name, None)

    def canonical(self, name: str) -> str:
        """The registered name of ``name`` (itself, or the name an alias stands for)."""
        return self._aliases.get(name, name)

    def entry(self, name: str) -> Entry:
        name = self.canonical(name)
        if name in self._entries:
            return self._entries[name]
        raise unknown_name(self.kind, name, self.names(), plugin_hint())

    def create(self, spec: str, **overrides):
        """Build from a spec string such as ``mets[lm=tfidf]``; ``overrides`` win over the spec."""
        name, params = parse_spec(spec)
        params.update(overrides)
        if ":" in name and name.split(":", 1)[0] in self._prefixes:
            pre, rest = name.split(":", 1)
            entry = self._prefixes[pre]
            self._check_params(entry, params, spec)
            return entry.factory(rest, **params)
        entry = self.entry(name)
        self._check_params(entry, params, spec)
        return entry.factory(**params)

    def _check_params(self, entry: Entry, params: dict, spec: str) -> None:
        accepted = entry.accepted_params()
        if accepted is None:
            return
        bad = sorted(set(params) - accepted)
        if bad:
            raise unknown_name(f"setting for {self.kind} '{entry.name}' (in '{spec}')", bad[0], accepted)

    def validate(self, spec: str) -> str:
        """Check a spec's name and settings without building it; return its canonical form."""
        name, params = parse_spec(spec)
        if ":" in name and name.split(":", 1)[0] in self._prefixes:
            self._check_params(self._prefixes[name.split(":", 1)[0]], params, spec)
        else:
            self._check_params(self.entry(name), params, spec)
        return format_spec(name, params)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def list(self, pattern: str = "*") -> list[str]:
        return [n for n in self.names() if fnmatch.fnmatch(n, pattern)]

    def prefixes(self) -> list[str]:
        return sorted(self._prefixes)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())


METHODS = Registry("method")
TEXT_ENCODERS = Registry("text encoder")
ECG_ENCODERS = Registry("ECG encoder")
DATASETS = Registry("dataset")
PROTOCOLS = Registry("protocol")  # entries: Protocol classes; meta["instance"]: the one instance

register_method = METHODS.register
register_text_encoder = TEXT_ENCODERS.register
register_ecg_encoder = ECG_ENCODERS.register
register_dataset = DATASETS.register

_loaded = False


def load_builtin_plugins() -> None:
    """Import the suite's own modules (they register on import) and third-party entry points."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in (
        "benchmark.encoders",
        "benchmark.data.datasets",
        "benchmark.protocols",
        "methods",
        "baselines",
    ):
        importlib.import_module(mod)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in must not break the suite
            raise UserError(f"plug-in '{ep.name}' ({ep.value}) failed to load: {exc}") from exc


PLUGIN_USAGE = "--plugin path/to/file.py (or --plugin a.module.name on the Python path)"
_plugins: dict[str, str] = {}  # what the user passed (resolved) -> the module name it was imported as
_plugin_names: dict[str, set[str]] = {}  # registry kind -> names registered by plug-ins


def _registries() -> tuple[Registry, ...]:
    return (METHODS, TEXT_ENCODERS, ECG_ENCODERS, DATASETS, PROTOCOLS)


def plugin_names() -> dict[str, list[str]]:
    """Registry kind -> the names the loaded plug-ins registered (what ``--plugin-only`` tests)."""
    return {k: sorted(v) for k, v in _plugin_names.items() if v}


def loaded_plugins() -> list[str]:
    """The plug-ins loaded so far in this process, as :func:`load_plugin` resolved them."""
    return list(_plugins)


def plugin_hint() -> str:
    """The sentence an 'unknown method/encoder/protocol' error ends with: which plug-ins are
    loaded, and how to load one (a name defined by a plug-in is unknown until it is loaded)."""
    if _plugins:
        return f"Plug-ins loaded: {', '.join(_plugins)}; load another with {PLUGIN_USAGE}."
    return f"No plug-in is loaded: a method, encoder, protocol or dataset of your own is loaded with {PLUGIN_USAGE}."


def load_plugin(spec: str) -> str:
    """``--plugin``: import a plug-in whose import registers methods, encoders, protocols or
    datasets. ``spec`` is a path to a ``.py`` file (absolute, or relative to the current directory)
    or a module name importable from the Python path (``my_pkg.my_method``; ``python -m`` puts the
    current directory on the path). Returns the canonical form (a file's absolute path, or the
    module name) that worker processes pass to this function again. Loading the same plug-in twice
    is a no-op. A plug-in that cannot be found says what was tried; one that fails on import says
    why, in one line."""
    text = str(spec).strip()
    if not text:
        raise UserError(f"--plugin needs a value: {PLUGIN_USAGE}")
    load_builtin_plugins()  # so that what the plug-in registers is told apart from the built-ins
    before = {r.kind: set(r.names()) for r in _registries()}
    try:
        return _load(text)
    finally:
        for r in _registries():
            _plugin_names.setdefault(r.kind, set()).update(set(r.names()) - before[r.kind])


def _load(text: str) -> str:
    path = Path(text).expanduser()
    if path.is_file():
        key = str(path.resolve())
        _plugins[key] = _import_file(path.resolve(), text)  # a no-op when that file is imported already
        return key
    looks_like_file = text.endswith(".py") or "/" in text or "\\" in text
    if looks_like_file:
        raise UserError(f"plug-in file '{text}' not found (looked for {path.resolve()}); pass an existing "
                        f".py file or a module name, e.g. {PLUGIN_USAGE}")
    try:
        importlib.import_module(text)
    except ModuleNotFoundError as exc:
        if exc.name and (text == exc.name or text.startswith(exc.name + ".")):
            raise UserError(f"cannot load plug-in '{text}': no file {path.resolve()} and no module '{text}' on the "
                            f"Python path; pass a .py file or a module name, e.g. {PLUGIN_USAGE}") from None
        raise UserError(f"plug-in '{text}' failed to import: {exc}") from exc
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"plug-in '{text}' failed to import: {type(exc).__name__}: {exc}") from exc
    _plugins[text] = text
    return text


def _import_file(path: Path, given: str) -> str:
    """Import the file at ``path`` as a module and return the module's name: its stem where that
    is a free identifier (so classes defined there pickle to Dask workers, which load the same
    file under the same name), else the stem plus a hash of the path."""
    name = path.stem
    taken = sys.modules.get(name)
    if not name.isidentifier() or (taken is not None and getattr(taken, "__file__", None) != str(path)):
        name = f"ecgbench_plugin_{''.join(c if c.isalnum() else '_' for c in path.stem)}_" \
               f"{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    if getattr(sys.modules.get(name), "__file__", None) == str(path):
        return name  # imported already (e.g. by module name)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"plug-in file '{given}' cannot be imported as a Python module (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except UserError:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:
        sys.modules.pop(name, None)
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise UserError(f"plug-in file '{given}' failed to import{where}: {type(exc).__name__}: {exc}") from exc
    return name
