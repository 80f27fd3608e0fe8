"""Plugin manager: entry-point loading that a bad neighbour cannot break, and the component registry.

Every plugin, the project's own included, arrives through the ``polx`` entry-point group. Each
entry point is loaded, and its ``register_components`` called, in its own guard: a plugin that
raises, calls ``sys.exit``, writes to stdout (which would corrupt ``--json`` and
``--print-config`` output) or registers a name another plugin already owns is recorded as
broken (name, version, error), its hooks are unregistered and the others keep working.
``POLX_STRICT_PLUGINS=1`` raises instead; ``POLX_DISABLE_PLUGINS=a,b`` skips plugins by
entry-point name (``*`` skips all). Broken plugins are named where a user would look: ``polx
plugins list``, the start-up warning of ``train``/``eval``, and unknown-component errors.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import io
import os
import re
import sys
import traceback
from importlib import metadata
from typing import Any, Callable, Iterable

import attrs
import pluggy

from polx import hookspecs
from polx.components import CORE_PLUGIN_NAME, KINDS, check_pairing  # noqa: F401 (check_pairing: also polx.plugins API)
from polx.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError, UserInputError

ENTRY_POINT_GROUP = "polx"
#: polx's own plugin distributions: they load before any other, so their component and
#: entry-point names stay theirs whatever a third-party distribution registers
SHIPPED_DISTRIBUTIONS = frozenset({"polx-plugin-imf-attnres", "polx-plugin-ddpm-transformer", "polx-plugin-envs", "polx-plugin-loggers"})


def dist_key(name: str | None) -> str:
    """A distribution name as pip compares them: ``Polx_Plugin.Foo`` -> ``polx-plugin-foo``."""
    return re.sub(r"[-_.]+", "-", name or "").lower()


def is_shipped(distribution: str | None) -> bool:
    return dist_key(distribution) in SHIPPED_DISTRIBUTIONS


@attrs.define(kw_only=True)
class Component:
    """One registered head, objective, env or logger."""

    kind: str
    name: str
    config_cls: type
    factory: Callable[..., Any] | str
    help: str
    plugin: str
    preset: dict = attrs.field(factory=dict)
    default_objective: str | None = None
    #: heads: the objectives whose head call this head answers (None: not declared, unchecked)
    objectives: tuple[str, ...] | None = None
    #: objectives: heads known to answer this objective's call, besides those that name it
    heads: tuple[str, ...] | None = None
    #: how messages name the plugin that registered it: ``'mlp' (polx-plugin-mlp 0.1)``
    origin: str = ""

    def describe(self) -> str:
        """``head 'mlp' of plugin 'mlp' (polx-plugin-mlp 0.1)``: a component named with its plugin."""
        kind = "dataset format" if self.kind == "dataset" else self.kind
        return f"{kind} {self.name!r} of plugin {self.origin or repr(self.plugin)}"

    def load_factory(self) -> Callable[..., Any]:
        """The factory, imported first when it was registered as ``"module:attr"``; a path that
        does not import raises ``PluginLoadError`` naming the component and its plugin."""
        factory = self.factory
        if not isinstance(factory, str):
            return factory
        module_name, _, attr = factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginLoadError(f"{self.describe()}: factory {factory!r} does not import: {_describe(exc)}") from exc
        if not attr or not hasattr(module, attr):
            raise PluginLoadError(f"{self.describe()}: factory {factory!r}: module {module_name!r} has no attribute {attr!r}")
        return getattr(module, attr)

    def build(self, *args: Any) -> Any:
        """Call the factory, importing it first when it was registered as ``"module:attr"``."""
        return self.load_factory()(*args)


@attrs.define(kw_only=True)
class PluginInfo:
    """What ``polx plugins list`` shows for one plugin."""

    name: str
    version: str | None
    distribution: str | None
    status: str  # "ok", "broken" or "disabled"
    error: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    components: dict[str, list[str]] = attrs.field(factory=dict)
    help: dict[str, dict[str, str]] = attrs.field(factory=dict)  # kind -> name -> help line

    def as_dict(self) -> dict:
        return attrs.asdict(self)

    def label(self) -> str:
        """``'mlp' (polx-plugin-mlp 0.1)``: how messages name a plugin."""
        dist = " ".join(x for x in (self.distribution, self.version) if x)
        return f"{self.name!r} ({dist})" if dist else repr(self.name)


def _tuple_or_none(value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


class Registry:
    """Components by (kind, name); the host owns it, plugins fill it through ``register``."""

    def __init__(self) -> None:
        self._components: dict[tuple[str, str], Component] = {}
        #: broken plugins by name, and the components each tried to register (for error messages)
        self.plugins: dict[str, PluginInfo] = {}
        self.broken: dict[str, PluginInfo] = {}
        self.claims: dict[tuple[str, str], str] = {}

    def make(
        self,
        kind: str,
        name: str,
        config_cls: type,
        factory: Callable[..., Any] | str,
        help: str = "",
        *,
        plugin: str,
        preset: dict | None = None,
        default_objective: str | None = None,
        objectives: Iterable[str] | None = None,
        heads: Iterable[str] | None = None,
    ) -> Component:
        """A checked ``Component`` (not yet registered); raises ``ValueError``/``TypeError`` naming the problem."""
        if kind not in KINDS:
            raise ValueError(f"plugin {plugin!r} registered unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
        if not attrs.has(config_cls):
            raise TypeError(f"plugin {plugin!r}: config class of {kind} {name!r} must be an attrs class")
        if (default_objective is not None or objectives is not None) and kind != "head":
            raise ValueError(f"plugin {plugin!r}: default_objective/objectives are for heads, not for {kind} {name!r}")
        if heads is not None and kind != "objective":
            raise ValueError(f"plugin {plugin!r}: heads= is for objectives, not for {kind} {name!r}")
        objectives, heads = _tuple_or_none(objectives), _tuple_or_none(heads)
        if objectives is not None and default_objective is not None and default_objective not in objectives:
            raise ValueError(f"plugin {plugin!r}: head {name!r} has default_objective {default_objective!r}, not in its objectives {objectives}")
        return Component(
            kind=kind, name=name, config_cls=config_cls, factory=factory, help=help, plugin=plugin,
            preset=dict(preset or {}), default_objective=default_objective, objectives=objectives, heads=heads,
        )

    def register(self, kind: str, name: str, config_cls: type, factory: Callable[..., Any] | str, help: str = "", *, plugin: str, **extras: Any) -> None:
        """Check and add one component; a taken name raises ``DuplicateComponentError``."""
        self.add(self.make(kind, name, config_cls, factory, help, plugin=plugin, **extras))

    def remove_plugin(self, plugin: str) -> None:
        """Drop every component ``plugin`` registered (it was found broken after loading); its claims stay."""
        self._components = {key: comp for key, comp in self._components.items() if comp.plugin != plugin}

    def add(self, comp: Component) -> None:
        key = (comp.kind, comp.name)
        if key in self._components:
            raise DuplicateComponentError(f"conflicting {comp.kind} plugins found: {comp.name!r} is registered by both {self._components[key].plugin!r} and {comp.plugin!r}")
        self._components[key] = comp

    def owner(self, kind: str, name: str) -> str | None:
        comp = self._components.get((kind, name))
        return comp.plugin if comp else None

    def get(self, kind: str, name: str) -> Component:
        try:
            return self._components[(kind, name)]
        except KeyError:
            raise UnknownComponentError(kind, name, self.names(kind), note=self._broken_note(kind, name)) from None

    def _broken_note(self, kind: str, name: str) -> str | None:
        """Why ``name`` may be missing: the broken plugin that provides it, else every plugin that failed to load."""
        claimant = self.claims.get((kind, name))
        if claimant in self.broken:
            info = self.broken[claimant]
            return f"plugin {info.label()} that provides it is broken: {info.error}"
        unknown = [i for i in self.broken.values() if not any(p == i.name for p in self.claims.values())]
        if unknown:
            listed = "; ".join(f"{i.label()}: {i.error}" for i in unknown)
            return f"these plugins failed to load and may provide it: {listed}"
        return None

    def names(self, kind: str) -> list[str]:
        return sorted(n for (k, n) in self._components if k == kind)

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for (kind, name), comp in sorted(self._components.items()):
            if comp.plugin == plugin:
                out.setdefault(kind, []).append(name)
        return out

    def help_by_plugin(self, plugin: str) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for (kind, name), comp in sorted(self._components.items()):
            if comp.plugin == plugin:
                out.setdefault(kind, {})[name] = comp.help
        return out

    def __iter__(self):
        return iter(self._components.values())


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _disabled_names() -> set[str]:
    raw = os.environ.get("POLX_DISABLE_PLUGINS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class PolxPlugins:
    """The loaded plugin set: a pluggy manager, the registry and per-plugin status."""

    def __init__(self, pm: pluggy.PluginManager, registry: Registry, infos: list[PluginInfo]):
        self.pm = pm
        self.hook = pm.hook
        self.registry = registry
        self.infos = infos

    def info(self, name: str) -> PluginInfo:
        for info in self.infos:
            if info.name == name:
                return info
        raise KeyError(name)

    def loaded_versions(self) -> dict[str, str | None]:
        """Plugin name -> version, for run manifests."""
        return {i.name: i.version for i in self.infos if i.status == "ok"}

    def broken(self) -> dict[str, dict]:
        """Broken plugin name -> distribution, version and error, for run manifests."""
        return {i.name: {"distribution": i.distribution, "version": i.version, "error": i.error} for i in self.infos if i.status == "broken"}

    def broken_warnings(self) -> list[str]:
        """One line per broken plugin, for the start-up of commands that train or evaluate."""
        return [f"warning: plugin {i.label()} is broken and was not loaded: {i.error}" for i in self.infos if i.status == "broken"]

    def component(self, kind: str, name: str) -> Component:
        return self.registry.get(kind, name)

    def build_env(self, config: Any) -> Any:
        """The env adapter of a resolved ``RunConfig`` (``components.env`` built with ``config.env``):
        the one place training, evaluation, DAgger, export and the checks build it."""
        return self.registry.get("env", config.components.env).build(config.env)


class _Guarded:
    """Runs plugin code so that it can neither end the command nor write to its stdout."""

    def __init__(self) -> None:
        self.stdout = io.StringIO()

    def __call__(self, fn: Callable[[], Any]) -> Any:
        with contextlib.redirect_stdout(self.stdout):
            try:
                return fn()
            except SystemExit as exc:  # sys.exit in a plugin must not end polx
                raise RuntimeError(f"called sys.exit({exc.code!r})") from exc

    def printed(self) -> str | None:
        text = self.stdout.getvalue().strip()
        if not text:
            return None
        return f"wrote to stdout ({text.splitlines()[0][:80]!r}); a plugin must not print (use warnings or logging)"


def load_plugins(
    *,
    entry_points: Iterable[metadata.EntryPoint] | None = None,
    extra: Iterable[tuple[str, Any]] = (),
    strict: bool | None = None,
) -> PolxPlugins:
    """Load every ``polx`` entry point (or the given ones) plus ``extra`` (name, module) pairs.

    ``extra`` exists for tests and embedding: an in-process plugin object goes through the same
    registration path as an installed one. Core registers first, then polx's own distributions
    (``SHIPPED_DISTRIBUTIONS``), then every other entry point in name order, then ``extra``; a
    component name, and an entry-point name, belongs to the first plugin that takes it, so a
    third-party distribution can never take a name from polx's own plugins.
    """
    strict = _env_flag("POLX_STRICT_PLUGINS") if strict is None else strict
    disabled = _disabled_names()
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    from polx.builtin import CorePlugin  # core's fallbacks: registry-backed build_head, dispatch

    pm.register(CorePlugin(registry), name=CORE_PLUGIN_NAME)
    infos: list[PluginInfo] = []

    def mark_broken(info: PluginInfo, error: str, exc: BaseException | None = None) -> None:
        if strict:
            raise PluginLoadError(f"plugin {info.label()} failed to load: {error}") from exc
        info.status, info.error = "broken", error
        registry.broken[info.name] = info
        if pm.has_plugin(info.name):
            pm.unregister(name=info.name)  # its other hooks must not run either

    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points is None else entry_points)
    candidates: list[tuple[str, Callable[[], Any], str | None, str | None]] = []
    for ep in sorted(eps, key=lambda e: (not is_shipped(getattr(getattr(e, "dist", None), "name", None)), e.name)):
        dist = getattr(ep, "dist", None)
        candidates.append((ep.name, ep.load, getattr(dist, "version", None), getattr(dist, "name", None)))
    for name, obj in extra:
        candidates.append((name, (lambda o=obj: o), None, None))

    for name, load, version, dist_name in candidates:
        info = PluginInfo(name=name, version=version, distribution=dist_name, status="ok")
        infos.append(info)
        skipped = "*" in disabled or name in disabled or (dist_name and dist_key(dist_name) in {dist_key(d) for d in disabled})
        if name in registry.plugins:  # an entry-point name already taken: the newcomer alone is refused
            info.status = "disabled" if skipped else "broken"
            if not skipped:
                info.error = _taken_entry_point(registry.plugins[name], info)
                if strict:
                    raise PluginLoadError(f"plugin {info.label()} failed to load: {info.error}")
            continue
        registry.plugins[name] = info
        if skipped:
            info.status = "disabled"
            continue
        guard = _Guarded()
        try:
            pm.register(guard(load), name=name)
        except Exception as exc:  # a broken plugin must not take the others down
            mark_broken(info, _describe(exc), exc)
            continue
        if guard.printed():
            mark_broken(info, f"at import: {guard.printed()}")
            continue
        unknown = _unknown_hooks(pm, pm.get_plugin(name))
        if unknown:
            mark_broken(info, unknown)
            continue
        info.hooks = sorted(h.name for h in (pm.get_hookcallers(pm.get_plugin(name)) or []))

    impls = {impl.plugin_name: impl for impl in pm.hook.register_components.get_hookimpls()}
    for plugin_name in [CORE_PLUGIN_NAME, *registry.plugins]:  # core first, then the load order above
        if plugin_name in impls and pm.has_plugin(plugin_name):
            _register_plugin(registry, impls[plugin_name], registry.plugins.get(plugin_name), mark_broken)
    for info in infos:
        if info.status != "broken" or registry.plugins.get(info.name) is info:
            info.components = registry.by_plugin(info.name)
            info.help = registry.help_by_plugin(info.name)
    return PolxPlugins(pm, registry, infos)


def _taken_entry_point(first: PluginInfo, newcomer: PluginInfo) -> str:
    """Why ``newcomer`` is not loaded: ``first`` has its entry-point name, and how to make it go away."""
    dist = newcomer.distribution or newcomer.name
    owner = "polx's own plugin" if is_shipped(first.distribution) else "the plugin loaded first"
    return (
        f"entry point {newcomer.name!r} of {newcomer.label()} has the name of {first.label()}; {owner} keeps it and this one "
        f"is not loaded; rename the entry point, uninstall {dist}, or set POLX_DISABLE_PLUGINS={dist} to skip it "
        f"(POLX_DISABLE_PLUGINS={newcomer.name} would skip both)"
    )


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> str | None:
    """A problem when ``plugin`` implements a hook polx does not specify (a typo: ``register_component``)."""
    known = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "polx_spec"))
    unknown = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is not None:
            continue
        impls = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin and not impl.optionalhook]
        if impls:
            close = difflib.get_close_matches(caller.name, known, n=1)
            unknown.append(f"{caller.name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if not unknown:
        return None
    return f"implements hooks polx does not have: {', '.join(unknown)}; polx's hooks are {', '.join(known)} (docs/plugin_hooks.md)"


def _register_plugin(registry: Registry, impl: Any, info: PluginInfo | None, mark_broken: Callable[..., None]) -> None:
    """Call one plugin's ``register_components``; its components enter the registry all or none."""
    plugin_name = impl.plugin_name
    staged: list[Component] = []

    def register(kind: str, name: str, config_cls: type, factory: Any, help: str = "", **extras: Any) -> None:
        registry.claims.setdefault((kind, name), plugin_name)
        comp = registry.make(kind, name, config_cls, factory, help, plugin=plugin_name, **extras)
        comp.origin = info.label() if info is not None else "polx (core)"
        staged.append(comp)

    guard, problem, error = _Guarded(), None, None
    try:
        guard(lambda: impl.function(register=register))
    except Exception as exc:
        problem, error = f"register_components: {_describe(exc)}", exc
    if problem is None and guard.printed():
        problem = f"register_components {guard.printed()}"
    taken = [(c, registry.owner(c.kind, c.name)) for c in staged if registry.owner(c.kind, c.name)]
    if problem is None and taken:
        comp, owner = taken[0]
        problem = _taken_name(registry, comp, owner, info)
    if problem is None:
        for comp in staged:
            registry.add(comp)
        return
    if info is None:  # core itself: nothing can stand in for it
        raise PluginLoadError(problem) from error
    for comp, owner in taken:  # what the first owner provides is not the broken plugin's
        registry.claims[(comp.kind, comp.name)] = owner
    mark_broken(info, problem, error)


def _taken_name(registry: Registry, comp: Component, owner: str, newcomer: PluginInfo | None) -> str:
    """Why a plugin registering a taken name is not loaded, naming both distributions and the fix."""
    first = registry.plugins.get(owner)
    first_label = first.label() if first is not None else f"polx's core (polx {_polx_version()})"
    second_label = newcomer.label() if newcomer is not None else repr(comp.plugin)
    ours = first is None or is_shipped(first.distribution)
    keeps = f"polx's own {first_label}" if ours else repr(owner)
    fix = f"uninstall {newcomer.distribution}" if ours and newcomer is not None and newcomer.distribution else "uninstall one of them"
    return (
        f"{comp.kind} {comp.name!r} is registered by both {first_label} and {second_label}; the name stays with {keeps} "
        f"and {comp.plugin!r} is not loaded; {fix}, or set POLX_DISABLE_PLUGINS={comp.plugin} to skip it"
    )


def _polx_version() -> str:
    from polx.version import __version__

    return __version__


def warn_broken(plugins: PolxPlugins) -> PolxPlugins:
    """Name each broken plugin on stderr (the start-up warning of commands that train or evaluate); returns ``plugins``."""
    for line in plugins.broken_warnings():
        print(line, file=sys.stderr)
    return plugins


def check_name(plugins: PolxPlugins, kind: str, name: str) -> None:
    """Raise ``UnknownComponentError`` (exit 2) unless ``name`` is a registered ``kind``."""
    plugins.registry.get(kind, name)


def require(plugins: PolxPlugins, kind: str, name: str | None, flag: str) -> str:
    if not name:
        avail = ", ".join(plugins.registry.names(kind)) or "none installed"
        raise UserInputError(f"missing {flag}; available: {avail}")
    check_name(plugins, kind, name)
    return name
