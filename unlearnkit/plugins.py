"""Plugin discovery and the registry of what plugins register: methods, augmenters, evaluators, models, data sets,
trackers.

Every plugin, first-party or not, is a module named by an entry point in the
group ``unlearnkit``. Entry points are loaded one at a time: a plugin that
fails to import or to register (an exception, sys.exit, any BaseException, or
Ctrl-C while a third-party plugin imports) is recorded as failed and the others
load as usual. At run time, `plugin_code` reports what a plugin's code raises as
a `PluginFault` of that plugin. Environment switches:

- ``UNLEARNKIT_PLUGINS``: comma-separated allow-list (entry-point or distribution names);
- ``UNLEARNKIT_BLOCK_PLUGINS``: comma-separated block-list, same names (neither list applies to the
  core's own data sets, architectures and evaluators, which always load);
- ``UNLEARNKIT_STRICT_PLUGINS=1``: re-raise a plugin's error (for plugin authors).

`unlearn plugins` lists them from an index (unlearnkit.plugin_index) while nothing installed has changed.
"""

from __future__ import annotations

import difflib
import os
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Iterable, Iterator, Mapping, TypeVar, cast

import pluggy

from unlearnkit import hookspecs
from unlearnkit.api import Architecture, Augmenter, Configurable, DataSource, Evaluator, Method, Params, Registered, Tracker
from unlearnkit.errors import PluginError, PluginFault, UnknownPluginError, UnlearnkitError

GROUP = hookspecs.PROJECT
#: the base class of each kind a plugin can register, in listing order; a kind's hook is `register_<kind>s`
KINDS: tuple[type[Registered], ...] = (Method, Augmenter, Evaluator, Architecture, DataSource, Tracker)
FIRST_PARTY = ("unlearnkit", "unlearnkit-baselines", "unlearnkit-coun")
#: the core's own plugins (data sets, architectures, evaluators): always loaded, whatever the allow- and block-lists say
CORE = "unlearnkit"

R = TypeVar("R", bound=Registered)


def hook_name(base: type[Registered]) -> str:
    return f"register_{base.kind}s"


@dataclass(frozen=True)
class Entry:
    """One registered class, tagged with the plugin (entry-point name) and distribution that registered it."""

    name: str
    base: type[Registered]
    cls: type[Registered]
    plugin_name: str
    distribution: str | None
    version: str | None

    @property
    def kind(self) -> str:
        return self.base.kind


#: each registered class's entry (the latest discovery's), so that a fault in its code can name its plugin
_origins: dict[type, Entry] = {}


@dataclass
class PluginRecord:
    """One plugin module and how its loading went."""

    name: str
    distribution: str | None
    version: str | None
    status: str  # loaded | failed | blocked
    error: str | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def source(self) -> str:
        return _source(self.name, self.distribution, self.version)


class Registry:
    """Everything the installed plugins registered, looked up by base class and name: `get(Method, "ft")`."""

    def __init__(self) -> None:
        self._entries: dict[type[Registered], dict[str, Entry]] = {base: {} for base in KINDS}
        self.plugins: list[PluginRecord] = []

    def names(self, base: type[Registered]) -> list[str]:
        return sorted(self._entries[base])

    def entries(self, base: type[Registered] | None = None) -> list[Entry]:
        bases = [base] if base else list(KINDS)
        return [self._entries[b][n] for b in bases for n in sorted(self._entries[b])]

    def find(self, base: type[Registered], name: str) -> Entry | None:
        """The entry registered under `name`, or None."""
        return self._entries[base].get(name)

    def entry(self, base: type[Registered], name: str) -> Entry:
        """The entry registered under `name`; an unknown name is an error naming close matches."""
        found = self.find(base, name)
        if found is None:
            # a plugin that failed to load may be the one that provides the name: say which did, and why
            failed = [f"{r.source} failed to load, so nothing it provides is available: {r.error}"
                      for r in self.plugins if r.status == "failed"]
            raise UnknownPluginError(
                f"unknown {base.kind} '{name}'" + _close_matches(name, self.names(base)),
                "\n".join([*failed, "Run `unlearn plugins` to see what is installed (and whether any plugin failed to load)."]),
            )
        return found

    def get(self, base: type[R], name: str) -> type[R]:
        """The class registered under `name` as a `base` (Method, Augmenter, ...)."""
        return cast("type[R]", self.entry(base, name).cls)  # registration checked it subclasses `base`

    def variant(self, base: type[R], name: str) -> tuple[type[R], str | None]:
        """A class by name, or a family's class and the variant for FAMILY:VARIANT (torchvision:resnet18)."""
        family, sep, variant = name.partition(":")
        if self.find(base, name) is None and sep and variant:
            entry = self.find(base, family)
            if entry is not None and getattr(entry.cls, "variants", False):
                return cast("type[R]", entry.cls), variant
        return self.get(base, name), None

    def _add(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._entries[entry.base][entry.name] = entry
            _origins[entry.cls] = entry


def _close_matches(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return f"; installed: {', '.join(candidates) or 'none'}"


def _names_from_env(var: str, env: Mapping[str, str]) -> set[str]:
    return {part.strip() for part in env.get(var, "").split(",") if part.strip()}


def _describe(exc: BaseException) -> str:
    """'Type: message' on one line (SystemExit: 3, RuntimeError: ...), for tables and one-message errors."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _source(plugin: str, distribution: str | None, version: str | None) -> str:
    """plugin 'acme' (acme-unlearn 1.2.0): where a plugin comes from, for messages."""
    package = " ".join(part for part in (distribution, version) if part)
    return f"plugin '{plugin}'" + (f" ({package})" if package else "")


def discover(
    eps: Iterable[EntryPoint] | None = None,
    modules: Iterable[tuple[str, Any]] = (),
    env: Mapping[str, str] | None = None,
) -> Registry:
    """Load plugins from entry points (installed ones by default) and from (name, module) pairs."""
    env = os.environ if env is None else env
    strict = env.get("UNLEARNKIT_STRICT_PLUGINS", "").lower() not in ("", "0", "false", "no", "off")
    allow = _names_from_env("UNLEARNKIT_PLUGINS", env)
    block = _names_from_env("UNLEARNKIT_BLOCK_PLUGINS", env)
    if eps is None:
        eps = entry_points(group=GROUP)
    # First-party distributions first: a third party cannot take their names. Otherwise by name, for determinism.
    eps = sorted(eps, key=lambda ep: (_dist(ep) not in FIRST_PARTY, _dist(ep) or "", ep.name))

    registry = Registry()

    def candidates():
        for ep in eps:
            yield ep.name, _dist(ep), ep.dist.version if ep.dist else None, ep.load
        for name, module in modules:
            yield name, None, None, lambda module=module: module

    for name, dist, version, load in candidates():
        record = PluginRecord(name=name, distribution=dist, version=version, status="loaded")
        registry.plugins.append(record)
        names = {name, dist}
        if dist != CORE and ((allow and not names & allow) or names & block):
            record.status = "blocked"
            continue
        phase = "importing"
        try:
            module = load()
            phase = "registering"
            record.entries = _register(module, record, registry)
            registry._add(record.entries)
        except KeyboardInterrupt:
            # Ctrl-C while a third-party plugin loads is taken as "it hangs": skip it. First-party plugins
            # do not hang, and importing them (torch) is where a user who means to stop the command presses it.
            if strict or dist in FIRST_PARTY:
                raise
            record.status, record.entries = "failed", []
            record.error = f"interrupted while {phase}: it may hang; block it with UNLEARNKIT_BLOCK_PLUGINS={name}"
        except BaseException as exc:  # an exception, sys.exit or any BaseException: recorded, and the host keeps going
            if strict:
                raise
            record.status, record.error, record.entries = "failed", _describe(exc), []
    return registry


def _dist(ep: EntryPoint) -> str | None:
    return ep.dist.name if ep.dist else None


def _register(module: Any, record: PluginRecord, registry: Registry) -> list[Entry]:
    """Call one plugin's registration hooks; all of its entries are accepted or none is.

    Each plugin gets a plugin manager of its own, so every hook call, entry and
    failure belongs to exactly one plugin, and plugins never clash inside pluggy.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    pm.register(module, name=record.name)
    pm.check_pending()  # a misspelt hook name is an error, not silence
    if not pm.get_hookcallers(module):
        raise PluginError("it implements no unlearnkit hook (is @unlearnkit.hookimpl missing?)")
    staged: list[Entry] = []
    for base in KINDS:

        def register(cls: type, base: type[Registered] = base) -> None:
            staged.append(_check_entry(cls, base, record, registry, staged))

        getattr(pm.hook, hook_name(base))(register=register)
    return staged


def _check_entry(cls: Any, base: type[Registered], record: PluginRecord, registry: Registry, staged: list[Entry]) -> Entry:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"{hook_name(base)} was given {cls!r}, which is not a subclass of unlearnkit.{base.__name__}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"{cls.__qualname__} has no `name`")
    if issubclass(cls, Configurable) and not (isinstance(cls.Params, type) and issubclass(cls.Params, Params)):
        raise PluginError(f"{cls.__qualname__}.Params must subclass unlearnkit.Params")
    taken = registry.find(base, name) or next((e for e in staged if e.base is base and e.name == name), None)
    if taken is not None:
        raise PluginError(
            f"{base.kind} '{name}' is already registered by plugin '{taken.plugin_name}'"
            + (f" ({taken.distribution})" if taken.distribution else "")
        )
    return Entry(name, base, cls, record.name, record.distribution, record.version)


#: rows of `unlearn plugins` by kind, in the order of KINDS; plugins that registered nothing last
KIND_ORDER: dict[str | None, int] = {**{base.kind: i for i, base in enumerate(KINDS)}, None: len(KINDS)}


def plugin_rows(registry: Registry) -> list[dict[str, Any]]:
    """One row per registered entry, and one per plugin that registered none (failed, blocked), by kind then name."""
    rows = []
    for record in registry.plugins:
        base = {"plugin": record.name, "distribution": record.distribution, "version": record.version,
                "status": record.status, "error": record.error}
        if record.entries:
            rows += [{"name": e.name, "kind": e.kind, "summary": e.cls.summary(), **base} for e in record.entries]
        else:
            rows.append({"name": None, "kind": None, "summary": None, **base})
    rows.sort(key=lambda r: (KIND_ORDER[r["kind"]], r["name"] or r["plugin"]))
    return rows


def origin(plugin: object) -> Entry | None:
    """The entry of a plugin instance or class (an Entry is its own); None for what no plugin registered."""
    if plugin is None or isinstance(plugin, Entry):
        return plugin
    return _origins.get(plugin if isinstance(plugin, type) else type(plugin))


@contextmanager
def plugin_code(*plugins: object) -> Iterator[None]:
    """Report what escapes a call into plugins' code as a `PluginFault` of the plugin whose code raised it.

    `plugins` (instances, classes or entries) are those the call runs: a method, and the augmenters
    that join its training steps. The innermost frame of the traceback in one of their modules names
    the culprit; the first of them when none does (an inherited method raised). Any exception or
    BaseException is caught, sys.exit included. Passed unchanged: the user's errors (UnlearnkitError,
    so also a PluginFault from a nested call), Ctrl-C, and everything when none of `plugins` came from
    a plugin (a wrapper such as AugmentedMethod, a user's own class).
    """
    try:
        yield
    except (UnlearnkitError, KeyboardInterrupt):
        raise
    except BaseException as exc:
        entries = [entry for entry in map(origin, plugins) if entry is not None]
        if not entries:
            raise
        entry = _culprit(exc, entries)
        raise PluginFault(failure(entry, exc), "Set UNLEARNKIT_DEBUG=1 to see the traceback.", entry.plugin_name,
                          entry.distribution) from exc


def failure(plugin: object, exc: BaseException) -> str:
    """What failed and why, on one line: "tracker 'acme' of plugin 'acme' (acme-unlearn 1.2.0) failed: RuntimeError: ...".
    A PluginFault is described by the exception behind it."""
    entry = origin(plugin)
    if entry is None:
        named = f"{getattr(plugin, 'kind', 'plugin')} '{getattr(plugin, 'name', type(plugin).__name__)}'"
    else:
        named = f"{entry.kind} '{entry.name}' of {_source(entry.plugin_name, entry.distribution, entry.version)}"
    cause = exc.__cause__ if isinstance(exc, PluginFault) and exc.__cause__ is not None else exc
    return f"{named} failed: {_describe(cause)}"


def _culprit(exc: BaseException, entries: list[Entry]) -> Entry:
    """The entry whose module holds the innermost frame of the traceback, else the first."""
    by_module: dict[str, Entry] = {}
    for entry in entries:
        by_module.setdefault(entry.cls.__module__, entry)
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        found = by_module.get(frame.f_globals.get("__name__", ""))
        if found is not None:
            return found
    return entries[0]


_installed: Registry | None = None


def installed() -> Registry:
    """The registry of installed plugins, discovered once per process."""
    global _installed
    if _installed is None:
        _installed = discover()
    return _installed


def installed_listing() -> tuple[list[dict[str, Any]], list[PluginRecord]]:
    """`plugin_rows` of the installed plugins, and those that failed to load, for `unlearn plugins`.

    From the plugin index (unlearnkit.plugin_index) when it matches what is installed, importing no plugin;
    otherwise from `installed()`, whose rows are then indexed unless a plugin failed. A registry this process
    has already discovered is used as it is (it may be older than the files: it is not indexed).
    """
    from unlearnkit import plugin_index

    key = None
    if _installed is None:
        settings = {var: sorted(_names_from_env(var, os.environ)) for var in ("UNLEARNKIT_PLUGINS", "UNLEARNKIT_BLOCK_PLUGINS")}
        # taken before discovering: code changed meanwhile is indexed under the old key, never the reverse
        key = plugin_index.fingerprint(entry_points(group=GROUP), settings)
        rows = plugin_index.read(key)
        if rows is not None:
            return rows, []
    registry = installed()
    rows = plugin_rows(registry)
    failed = [record for record in registry.plugins if record.status == "failed"]
    if key is not None and not failed:
        plugin_index.write(key, rows)
    return rows, failed
