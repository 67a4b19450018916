"""One registry type for methods, text encoders, ECG encoders, datasets and protocols.

A factory is registered with a decorator; ``create("name[key=value,...]")`` builds it with
overrides; ``list("res*")`` lists names by pattern. Variant names carry their settings
(``mets[lm=tfidf,temperature=0.1]``) and grids expand with ``|``
(``mets[lm=minilm|tfidf]`` -> two variants).
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import itertools
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
        raise unknown_name(self.kind, name, self.names())

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
        "methods",
        "baselines",
    ):
        importlib.import_module(mod)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in must not break the suite
            raise UserError(f"plug-in '{ep.name}' ({ep.value}) failed to load: {exc}") from exc


def load_plugin(module: str) -> None:
    """``--plugin my_pkg.my_method``: import a module whose import registers methods."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"cannot import plug-in module '{module}': {exc}") from exc
