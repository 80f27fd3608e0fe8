"""Plugin manager: entry-point loading with broken-plugin capture, and the component registry.

Every plugin, the project's own included, arrives through the ``polx`` entry-point group. Each
entry point is loaded in its own try/except: a broken plugin is recorded (name, version, error)
and the others keep working, unless ``POLX_STRICT_PLUGINS=1`` asks for the error to be raised.
``POLX_DISABLE_PLUGINS=a,b`` skips plugins by entry-point name (``*`` skips all).
"""

from __future__ import annotations

import importlib
import os
import traceback
from importlib import metadata
from typing import Any, Callable, Iterable

import attrs
import pluggy

from polx import hookspecs
from polx.components import KINDS
from polx.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError, UserInputError

ENTRY_POINT_GROUP = "polx"
CORE_PLUGIN_NAME = "polx.core"


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

    def build(self, *args: Any) -> Any:
        """Call the factory, importing it first when it was registered as ``"module:attr"``."""
        factory = self.factory
        if isinstance(factory, str):
            module_name, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module_name), attr)
        return factory(*args)


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

    def as_dict(self) -> dict:
        return attrs.asdict(self)


class Registry:
    """Components by (kind, name); the host owns it, plugins fill it through ``register``."""

    def __init__(self) -> None:
        self._components: dict[tuple[str, str], Component] = {}

    def register(
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
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"plugin {plugin!r} registered unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
        if not attrs.has(config_cls):
            raise TypeError(f"plugin {plugin!r}: config class of {kind} {name!r} must be an attrs class")
        key = (kind, name)
        if key in self._components:
            other = self._components[key].plugin
            raise DuplicateComponentError(
                f"conflicting {kind} plugins found: {name!r} is registered by both {other!r} and {plugin!r}"
            )
        self._components[key] = Component(
            kind=kind,
            name=name,
            config_cls=config_cls,
            factory=factory,
            help=help,
            plugin=plugin,
            preset=dict(preset or {}),
            default_objective=default_objective,
        )

    def get(self, kind: str, name: str) -> Component:
        try:
            return self._components[(kind, name)]
        except KeyError:
            raise UnknownComponentError(kind, name, self.names(kind)) from None

    def names(self, kind: str) -> list[str]:
        return sorted(n for (k, n) in self._components if k == kind)

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for (kind, name), comp in sorted(self._components.items()):
            if comp.plugin == plugin:
                out.setdefault(kind, []).append(name)
        return out

    def drop_plugin(self, plugin: str) -> None:
        for key in [k for k, c in self._components.items() if c.plugin == plugin]:
            del self._components[key]

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

    def component(self, kind: str, name: str) -> Component:
        return self.registry.get(kind, name)


def load_plugins(
    *,
    entry_points: Iterable[metadata.EntryPoint] | None = None,
    extra: Iterable[tuple[str, Any]] = (),
    strict: bool | None = None,
) -> PolxPlugins:
    """Load every ``polx`` entry point (or the given ones) plus ``extra`` (name, module) pairs.

    ``extra`` exists for tests and embedding: an in-process plugin object goes through the same
    registration path as an installed one.
    """
    strict = _env_flag("POLX_STRICT_PLUGINS") if strict is None else strict
    disabled = _disabled_names()
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    from polx.builtin import CorePlugin  # core's fallbacks: registry-backed build_head, dispatch

    pm.register(CorePlugin(registry), name=CORE_PLUGIN_NAME)
    infos: list[PluginInfo] = []

    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points is None else entry_points)
    candidates: list[tuple[str, Callable[[], Any], str | None, str | None]] = []
    for ep in sorted(eps, key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        candidates.append((ep.name, ep.load, getattr(dist, "version", None), getattr(dist, "name", None)))
    for name, obj in extra:
        candidates.append((name, (lambda o=obj: o), None, None))

    for name, load, version, dist_name in candidates:
        info = PluginInfo(name=name, version=version, distribution=dist_name, status="ok")
        infos.append(info)
        if "*" in disabled or name in disabled:
            info.status = "disabled"
            continue
        if pm.has_plugin(name):
            info.status, info.error = "broken", f"a plugin named {name!r} is already loaded"
            continue
        try:
            plugin = load()
            pm.register(plugin, name=name)
        except Exception as exc:  # a broken plugin must not take the others down
            if strict:
                raise PluginLoadError(f"plugin {name!r} ({dist_name or '?'} {version or '?'}) failed to load: {_describe(exc)}") from exc
            info.status, info.error = "broken", _describe(exc)
            continue
        info.hooks = sorted(h.name for h in (pm.get_hookcallers(plugin) or []))

    by_name = {i.name: i for i in infos}
    for impl in pm.hook.register_components.get_hookimpls():
        plugin_name = impl.plugin_name
        register = _bound_register(registry, plugin_name)
        try:
            impl.function(register=register)
        except DuplicateComponentError:
            raise
        except Exception as exc:
            if strict:
                raise PluginLoadError(f"plugin {plugin_name!r} failed in register_components: {_describe(exc)}") from exc
            registry.drop_plugin(plugin_name)
            info = by_name.get(plugin_name)
            if info is not None:
                info.status, info.error = "broken", f"register_components: {_describe(exc)}"
    for info in infos:
        info.components = registry.by_plugin(info.name)
    return PolxPlugins(pm, registry, infos)


def _bound_register(registry: Registry, plugin_name: str) -> Callable[..., None]:
    def register(kind: str, name: str, config_cls: type, factory: Any, help: str = "", **extras: Any) -> None:
        registry.register(kind, name, config_cls, factory, help, plugin=plugin_name, **extras)

    return register


def check_name(plugins: PolxPlugins, kind: str, name: str) -> None:
    """Raise ``UnknownComponentError`` (exit 2) unless ``name`` is a registered ``kind``."""
    plugins.registry.get(kind, name)


def require(plugins: PolxPlugins, kind: str, name: str | None, flag: str) -> str:
    if not name:
        avail = ", ".join(plugins.registry.names(kind)) or "none installed"
        raise UserInputError(f"missing {flag}; available: {avail}")
    check_name(plugins, kind, name)
    return name
