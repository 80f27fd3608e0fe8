"""Component contracts, checked before they can fail a run.

Two checks, both naming the component and the plugin that registered it:

- ``check_loaded(plugins)`` (``polx plugins list``, ``polx check plugins``): every plugin
  component's factory imports; a head, built on the meta device (no memory, no compute) for a
  small spec, is a ``torch.nn.Module`` with ``spec``, its own ``forward`` and
  ``get_optim_groups(weight_decay)`` holding each parameter once; a component whose factory is a
  class has the methods its kind needs. A plugin that fails is marked ``broken`` like one that
  fails to import: its components leave the registry and its hooks are unregistered.
- ``check_pair(...)``, the dry call: the head and objective a run would use, built on the CPU and
  called on a tiny batch through the hooks training uses. ``compute_loss`` must return a finite
  scalar that carries gradients, ``sample`` a finite ``(batch, horizon, action_dim)`` chunk.
  ``check_run(plugins, config)`` runs it for a ``polx train`` request before the run directory
  exists; a failure is a ``ContractError`` (exit 2).

Unknown hook names are caught earlier, by ``load_plugins``. ``polx.testing`` builds its checks on
these.
"""

from __future__ import annotations

from typing import Any, Callable

from polx.components import ObsActionSpec
from polx.errors import PluginLoadError, UserInputError

#: the spec heads are built for at load time (PushT's shapes, a small condition)
LOAD_SPEC = ObsActionSpec(action_dim=2, horizon=16, n_obs_steps=2, cond_dim=8)
#: batch size of the dry call
DRY_BATCH = 2
#: what a component whose factory is a class must have, by kind (a head is built and checked instead)
METHODS = {
    "objective": ("compute_loss", "sample"),
    "env": ("make_env", "dataset_obs", "default_dataset", "generate_demos"),
    "logger": ("log", "close"),
    "dataset": ("detect", "open"),
}
PROTOCOLS = "docs/plugin_hooks.md, Contracts"


class ContractError(UserInputError):
    """A component that does not keep its contract (exit 2: choose another, or fix the plugin)."""


# ---------------------------------------------------------------------------------------------
# at load


def component_problem(plugins: Any, comp: Any) -> str | None:
    """What is wrong with one registered component, checked without running it (a head is built on meta)."""
    try:
        factory = comp.load_factory()
    except PluginLoadError as exc:
        return str(exc)
    if not callable(factory):
        return f"{comp.describe()}: factory {comp.factory!r} is not callable"
    if comp.kind == "head":
        try:
            head = build_head(plugins, comp, _default_config(comp), LOAD_SPEC, meta=True)
        except ContractError as exc:
            return str(exc)
        return head_problem(comp, head)
    if isinstance(factory, type) and comp.kind in METHODS:
        missing = [m for m in METHODS[comp.kind] if not callable(getattr(factory, m, None))]
        if missing:
            return f"{comp.describe()}: {factory.__name__} has no {', '.join(missing)}, which polx calls on a {comp.kind} ({PROTOCOLS})"
    return None


def check_loaded(plugins: Any, strict: bool | None = None) -> dict[str, str]:
    """Check every plugin's components (``component_problem``); mark each failing plugin broken.

    Returns plugin name -> problem for the plugins it marked. ``POLX_STRICT_PLUGINS=1`` (or
    ``strict``) raises ``PluginLoadError`` instead. Core's own components are not checked here:
    core's tests hold them to the same contracts (``polx.testing``).
    """
    from polx.plugins import _env_flag

    strict = _env_flag("POLX_STRICT_PLUGINS") if strict is None else strict
    found: dict[str, str] = {}
    for info in plugins.infos:
        if info.status != "ok" or plugins.registry.plugins.get(info.name) is not info:
            continue
        comps = [c for c in plugins.registry if c.plugin == info.name]
        problems = [p for p in (component_problem(plugins, c) for c in comps) if p]
        if not problems:
            continue
        error = "; ".join(problems)
        if strict:
            raise PluginLoadError(f"plugin {info.label()} failed its checks: {error}")
        info.status, info.error, info.components, info.help = "broken", error, {}, {}
        plugins.registry.broken[info.name] = info
        plugins.registry.remove_plugin(info.name)
        if plugins.pm.has_plugin(info.name):
            plugins.pm.unregister(name=info.name)
        found[info.name] = error
    return found


def _default_config(comp: Any) -> Any:
    try:
        return comp.config_cls()
    except Exception as exc:
        raise ContractError(f"{comp.describe()}: its config class {comp.config_cls.__name__}() fails with its own defaults: {exc}") from exc


def build_head(plugins: Any, comp: Any, config: Any, spec: ObsActionSpec, meta: bool = False) -> Any:
    """The head as training builds it (the ``build_head`` hook); ``meta``: on the meta device when it can be."""
    import torch

    def build() -> Any:
        head = plugins.hook.build_head(name=comp.name, config=config, spec=spec)
        if head is None:
            raise ContractError(f"{comp.describe()}: no plugin built it (build_head returned None)")
        return head

    try:
        if meta:
            try:
                with torch.device("meta"):
                    return build()
            except ContractError:
                raise
            except Exception:  # some constructors compute with their tensors: build for real
                pass
        return build()
    except (ContractError, PluginLoadError) as exc:
        raise ContractError(str(exc)) from exc
    except Exception as exc:
        raise ContractError(f"{comp.describe()}: factory(config, spec) raised {_describe(exc)} (config defaults, {spec})") from exc


def head_problem(comp: Any, head: Any) -> str | None:
    """A head must be a module with ``spec``, its own ``forward`` and ``get_optim_groups`` covering each parameter once."""
    from torch import nn

    where = f"{comp.describe()}: the head ({type(head).__name__})"
    if not isinstance(head, nn.Module):
        return f"{where} is not a torch.nn.Module"
    missing = []
    if getattr(type(head), "forward", None) is nn.Module.forward:
        missing.append("forward")
    if not callable(getattr(head, "get_optim_groups", None)):
        missing.append("get_optim_groups(weight_decay)")
    if not hasattr(head, "spec"):
        missing.append("spec (the ObsActionSpec it was built for)")
    if missing:
        return f"{where} has no {', '.join(missing)}, which the trainer uses ({PROTOCOLS}, Head protocols)"
    try:
        groups = head.get_optim_groups(0.1)
        seen = [id(p) for g in groups for p in g["params"]]
    except Exception as exc:
        return f"{where}: get_optim_groups(0.1) raised {_describe(exc)}; it returns AdamW groups, dicts with 'params'"
    trainable = {id(p) for p in head.parameters() if p.requires_grad}
    owned = {id(p) for p in head.parameters()}
    twice, missing, foreign = len(seen) - len(set(seen)), len(trainable - set(seen)), len(set(seen) - owned)
    if twice or missing or foreign:
        return (
            f"{where}: get_optim_groups must hold every trainable parameter of the head exactly once; "
            f"{twice} appear twice, {missing} are missing, {foreign} are not the head's"
        )
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# the dry call


def check_pair(
    plugins: Any,
    head: str,
    objective: str,
    spec: ObsActionSpec,
    *,
    head_config: Any = None,
    objective_config: Any = None,
    wrap: Callable[[Any], Any] | None = None,
    action_mask: Any = None,
    batch_size: int = DRY_BATCH,
) -> dict:
    """Build ``head`` and ``objective`` on the CPU and call them once each on a tiny batch.

    ``wrap`` is what the policy calls the head through (``ActionLayout.blind``); ``action_mask``
    (broadcastable to (B, T, A)) what it masks. Returns ``{"loss", "metrics", "chunk_shape"}``;
    raises ``ContractError`` naming both components, their plugins and what was expected.
    """
    import torch

    from polx.policy.valid import valid_mask

    head_c, obj_c = plugins.registry.get("head", head), plugins.registry.get("objective", objective)
    pair = f"{head_c.describe()} with {obj_c.describe()}"

    def fail(what: str) -> ContractError:
        return ContractError(f"dry call of {pair}, before the run: {what} ({PROTOCOLS}); nothing was written")

    B, T, A, To, D = batch_size, spec.horizon, spec.action_dim, spec.n_obs_steps, spec.cond_dim
    with torch.random.fork_rng(devices=[]):  # the run's own seeding is not disturbed
        torch.manual_seed(0)
        module = build_head(plugins, head_c, head_config if head_config is not None else _default_config(head_c), spec)
        problem = head_problem(head_c, module)
        if problem:
            raise ContractError(f"{problem}; nothing was written")
        try:
            obj = obj_c.build(objective_config if objective_config is not None else _default_config(obj_c))
        except Exception as exc:
            raise fail(f"building the objective raised {_describe(exc)}") from exc
        called = wrap(module) if wrap is not None else module
        gen = torch.Generator().manual_seed(0)
        action = torch.randn(B, T, A, generator=gen).clamp(-1, 1)
        cond = torch.randn(B, To, D, generator=gen)
        is_pad = torch.zeros(B, T, dtype=torch.bool)
        is_pad[-1, T - 1 :] = True  # one padded step, as the sampler makes at an episode's end
        batch = {"action": action, "cond": cond, "action_is_pad": is_pad}
        if action_mask is not None:
            batch["action_mask"] = action_mask
        batch["valid"] = valid_mask(action, is_pad, action_mask)
        module.train()
        try:
            out = plugins.hook.compute_loss(objective=obj, head=called, batch=batch)
        except Exception as exc:
            raise fail(f"compute_loss raised {_describe(exc)}") from exc
        if not (isinstance(out, tuple) and len(out) == 2):
            raise fail(f"compute_loss returned {type(out).__name__}; expected (loss, metrics)")
        loss, metrics = out
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise fail(f"compute_loss returned a loss of shape {shape}; expected a scalar tensor")
        if not torch.isfinite(loss).all():
            raise fail(f"compute_loss returned a non-finite loss ({float(loss)})")
        if not loss.requires_grad:
            raise fail("compute_loss returned a loss that carries no gradient to the head")
        if not isinstance(metrics, dict):
            raise fail(f"compute_loss returned metrics of type {type(metrics).__name__}; expected a dict of floats")
        module.eval()
        try:
            with torch.no_grad():
                chunk = plugins.hook.sample(objective=obj, head=called, cond=cond, num_steps=1, generator=torch.Generator().manual_seed(0))
        except Exception as exc:
            raise fail(f"sample raised {_describe(exc)}") from exc
        expected = (B, T, A)
        got = tuple(chunk.shape) if isinstance(chunk, torch.Tensor) else type(chunk).__name__
        if got != expected:
            raise fail(f"sample returned {got}; expected (batch, horizon, action_dim) = {expected}")
        if not torch.isfinite(chunk).all():
            raise fail("sample returned non-finite values")
    return {"loss": float(loss.detach()), "metrics": dict(metrics), "chunk_shape": got}


def run_spec(config: Any, shape_meta: dict) -> tuple[ObsActionSpec, Any]:
    """The spec a run's head is built for, and its action layout (without building the image encoder's weights)."""
    import torch

    from polx.policy.encoder import ObsEncoder
    from polx.policy.layout import ActionLayout

    layout = ActionLayout.from_config(shape_meta, config.policy)
    with torch.device("meta"):  # only its width is needed: no weights are made
        cond_dim = ObsEncoder(shape_meta, config.encoder).cond_dim
    spec = ObsActionSpec(
        action_dim=layout.dim, horizon=config.policy.horizon, n_obs_steps=config.policy.n_obs_steps, cond_dim=cond_dim,
        action_groups=layout.head_groups,
    )  # fmt: skip
    return spec, layout


def check_run(plugins: Any, config: Any, shape_meta: dict | None = None) -> dict:
    """The dry call for a resolved run config: the run's head, objective, shapes and action layout."""
    if shape_meta is None:
        shape_meta = plugins.build_env(config).shape_meta
    spec, layout = run_spec(config, shape_meta)
    mask = layout.pack_mask(None, _zeros(spec.horizon, layout.env_dim)) if layout.packed else None
    return check_pair(
        plugins, config.components.head, config.components.objective, spec,
        head_config=config.head, objective_config=config.objective, wrap=layout.blind, action_mask=mask,
    )  # fmt: skip


def _zeros(horizon: int, env_dim: int) -> Any:
    import torch

    return torch.zeros(DRY_BATCH, horizon, env_dim)
