"""Configs: attrs frozen keyword-only classes, one strict cattrs converter, layered sources.

Sources, later wins: class defaults <- env preset <- head preset <- objective preset <-
``--config FILE`` (YAML or TOML) <- ``KEY=VALUE`` overrides (values parsed as YAML scalars, as
Hydra users type them). Every problem is reported as one line starting with its dotted path::

    train.max_stepz: unknown key (did you mean train.max_steps?)
    head.n_emb: expected int, got 'abc'
"""

from __future__ import annotations

import difflib
import json
import math
import re
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs
import cattrs
import yaml
from attrs import define, field

from polx.errors import ConfigError, UserInputError
from polx.components import check_pairing

# ---------------------------------------------------------------------------------------------
# validators that name the field, the rule and the value (usable by plugins' config classes)


#: the largest integer a count option (``positive``, ``non_negative``) accepts unless its field says
#: less (``at_most``): beyond it a size or step count is a typo, and the libraries fail on it raw or hang
MAX_COUNT = 10**9


def show(value: Any) -> str:
    """``repr(value)``, short for huge integers (Python will not print one of more than 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"a {len(str(abs(value))) if value.bit_length() < 14000 else 'many'}-digit integer".replace("a many", "an over-4300")
    return repr(value)


def _check_bound(attribute: attrs.Attribute, value: Any, hi: float) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > hi:
        raise ValueError(f"{attribute.name}: must be <= {hi:,}, got {show(value)}")


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name}: must be > 0, got {show(value)}")
    _check_bound(attribute, value, MAX_COUNT)


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"{attribute.name}: must be >= 0, got {show(value)}")
    _check_bound(attribute, value, MAX_COUNT)


def at_most(hi: int) -> Any:
    """An integer option's sane ceiling (a model width, a layer count, threads), named in the error."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            _check_bound(attribute, value, hi)

    return check


def in_range(lo: float, hi: float) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None and not lo <= value <= hi:
            raise ValueError(f"{attribute.name}: must be in [{lo}, {hi}], got {value!r}")

    return check


def one_of(*choices: Any) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name}: must be one of {', '.join(map(str, choices))}; got {value!r}")

    return check


# ---------------------------------------------------------------------------------------------
# core sections


def doc(text: str, **kwargs: Any) -> Any:
    """An attrs field with its one-line documentation (``--print-config`` prints it as a comment)."""
    return field(metadata={"doc": text}, **kwargs)


@define(frozen=True, kw_only=True)
class ComponentsConfig:
    """Which components the run uses (set by ``--head``/``--env``/``--objective``/``--logger``)."""

    head: str = doc("network head (--head)")
    env: str = doc("environment (--env)")
    objective: str = doc("training objective and sampler (--objective; default: the head's own)")
    loggers: tuple[str, ...] = doc("loggers the run opens (--logger; json unless --logger none)", default=("json",))


@define(frozen=True, kw_only=True)
class TrainConfig:
    """The optimisation loop: steps, AdamW, warmup + cosine schedule, EMA, validation, checkpoints."""

    max_steps: int = doc("optimizer steps of the whole run", default=100_000, validator=positive)
    max_minutes: float | None = doc(
        "stop early once training steps have taken this many minutes (checked every log_every steps; the final "
        "checkpoint and rollout follow as at max_steps; the LR schedule still spans max_steps); null: no limit",
        default=None,
        validator=positive,
    )
    batch_size: int = doc("windows per step (per process under torchrun)", default=64, validator=[positive, at_most(1 << 20)])
    lr: float = doc("peak learning rate, reached after warmup_steps", default=1e-4, validator=positive)
    min_lr: float = doc("learning rate at max_steps, the end of the cosine decay (<= lr)", default=0.0, validator=non_negative)
    weight_decay: float = doc("AdamW weight decay of the head's decayed group", default=1e-3, validator=non_negative)
    betas: tuple[float, float] = doc("AdamW betas", default=(0.9, 0.95))
    warmup_steps: int = doc("linear warmup from 0 to lr", default=500, validator=non_negative)
    schedule_start: int = doc(
        "step at which the warmup and cosine start (0: the run's first step); a stage resumed from another run's "
        "checkpoint, as polx dagger's rounds are, restarts its schedule here",
        default=0, validator=non_negative,
    )  # fmt: skip
    grad_clip: float = doc("max gradient norm; 0 disables clipping", default=1.0, validator=non_negative)
    ema: bool = doc("keep an EMA copy of the weights, used for validation sampling and rollouts", default=True)
    ema_power: float = doc("EMA warmup: decay = 1 - (1 + step)^-ema_power, capped at ema_max", default=0.75, validator=positive)
    ema_max: float = doc("largest EMA decay", default=0.9999, validator=in_range(0.0, 1.0))
    seed: int = doc("seed of weights, data order and noise (each process adds its rank)", default=42)
    device: str = doc("auto | cpu | cuda | cuda:N (auto: cuda when available)", default="auto")
    # None: torch's default, one per physical core (what measured fastest on a 2-core machine:
    # 0.09 s against 0.12 s per quickstart step with one thread)
    threads: int | None = doc("torch CPU threads; null: torch's default (one per physical core)", default=None, validator=[positive, at_most(1024)])
    num_workers: int = doc("DataLoader worker processes; 0 loads batches in the training process", default=0, validator=[non_negative, at_most(256)])
    log_every: int = doc("steps between training log records (mean loss over the window)", default=50, validator=positive)
    val_every: int = doc("steps between validations (val_loss, val_action_mse); 0 = never", default=1000, validator=non_negative)
    val_batches: int = doc("validation batches per validation", default=4, validator=positive)
    val_sample_steps: int | None = doc("sampling steps for val_action_mse; null: the objective's default", default=None, validator=positive)
    checkpoint_every: int = doc("steps between checkpoints/latest.ckpt writes; 0 = only at the end", default=5000, validator=non_negative)
    topk: int = doc("best checkpoints kept by test_mean_score, besides latest.ckpt", default=3, validator=non_negative)
    progress: bool = doc("show a progress bar", default=True)
    init_from: str | None = doc(
        "checkpoint whose weights (EMA when kept, normalizer included; not optimizer or step) start this run; null: fresh",
        default=None,
    )  # fmt: skip

    @device.validator
    def _check_device(self, attribute: attrs.Attribute, value: str) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError(f"device: must be auto, cpu, cuda or cuda:N; got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr: must be <= train.lr (the cosine decays from lr to min_lr); got {self.min_lr} > {self.lr}")
        if self.schedule_start >= self.max_steps:
            raise ValueError(f"schedule_start: must be < train.max_steps (the schedule runs from it to max_steps); got {self.schedule_start} >= {self.max_steps}")


@define(frozen=True, kw_only=True)
class EvalConfig:
    """Rollouts in the env: when, how many episodes from which seeds, how many drawn."""

    rollout_every: int = doc("steps between rollouts; 0 = only at the end", default=10_000, validator=non_negative)
    at_end: bool = doc("roll out once more when training ends", default=True)
    n_test: int = doc("test episodes per rollout (test_mean_score)", default=50, validator=non_negative)
    n_train: int = doc("episodes on training seeds per rollout (train_mean_score)", default=6, validator=non_negative)
    test_start_seed: int = doc("seed of the first test episode; episode k uses test_start_seed + k", default=100000)
    train_start_seed: int = doc("seed of the first train-seed episode", default=0)
    max_steps: int = doc("env steps per episode at most", default=300, validator=positive)
    n_envs: int = doc("processes that run episodes; results do not depend on it", default=1, validator=[positive, at_most(1024)])
    n_vis: int = doc("test episodes drawn as trajectory PNGs (the first n_vis)", default=4, validator=non_negative)
    num_steps: int | None = doc("sampling steps per chunk; null: the objective's default", default=None, validator=positive)
    sample_steps: tuple[int, ...] = doc(
        "at each validation, val_action_mae_<n>step (masked, per action group) with each n sampling steps, e.g. [1, 4, 16]; [] = none",
        default=(),
    )  # fmt: skip

    @sample_steps.validator
    def _check_sample_steps(self, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
        if any(n < 1 for n in value):
            raise ValueError(f"sample_steps: every step count must be >= 1; got {list(value)!r}")


@define(frozen=True, kw_only=True)
class PolicyConfig:
    """The action chunk: how long it is, how much history conditions it, how much of it runs."""

    horizon: int = doc("steps in a predicted action chunk", default=16, validator=[positive, at_most(10_000)])
    n_obs_steps: int = doc("observation steps that condition a chunk", default=2, validator=[positive, at_most(10_000)])
    n_action_steps: int = doc("actions executed per chunk, from the newest observation's step", default=8, validator=positive)
    action_layout: str = doc(
        "natural: the env's action as it is; packed: each action group zero-padded to group_width (padding masked)",
        default="natural", validator=one_of("natural", "packed"),
    )  # fmt: skip
    group_width: int | None = doc("packed layout: dims per action group; null: the widest group", default=None, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(
                f"n_action_steps: n_obs_steps - 1 + n_action_steps must be <= horizon "
                f"({self.n_obs_steps} - 1 + {self.n_action_steps} > {self.horizon})"
            )


@define(frozen=True, kw_only=True)
class DataConfig:
    """The demonstration dataset and how it is split and normalized."""

    path: str | None = doc("dataset path (--dataset): zarr, hdf5 episode directory or LeRobot directory; null: the env's default dataset", default=None)
    format: str | None = doc("dataset format (--dataset-format): zarr, hdf5, lerobot or a plugin's; null: detected from the path", default=None)
    val_ratio: float = doc("share of episodes held out for validation", default=0.02, validator=in_range(0.0, 0.9))
    max_train_episodes: int | None = doc("use at most this many training episodes; null: all", default=None, validator=positive)
    split_seed: int = doc("seed of the train/validation episode split", default=42)
    normalizer: str = doc("limits (min/max to [-1, 1]) or gaussian (mean/std)", default="limits", validator=one_of("limits", "gaussian"))


def _channels(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 1 <= len(value) <= 8 or any(not 1 <= c <= 1024 for c in value):
        raise ValueError(f"{attribute.name}: 1 to 8 stages of 1 to 1024 channels each; got {list(value)!r}")


@define(frozen=True, kw_only=True)
class EncoderConfig:
    """The observation encoder: an image backbone per camera (or one shared) plus the normalized low-dim keys."""

    backbone: str = doc(
        "image backbone: resnet18 (Diffusion Policy's, 11 M parameters per camera, for a GPU) or "
        "convnet (a few GroupNorm conv stages and a spatial-softmax read-out, made to train on a CPU)",
        default="resnet18",
        validator=one_of("resnet18", "convnet"),
    )
    channels: tuple[int, ...] = doc(
        "convnet only: output channels of its conv stages; the first two halve the image, the rest keep it",
        default=(32, 64, 64, 64),
        validator=_channels,
    )
    readout: str = doc(
        "convnet only: spatial_softmax (the expected x, y of each feature map: where things are) or avg (mean pooling)",
        default="spatial_softmax",
        validator=one_of("spatial_softmax", "avg"),
    )
    shared: bool = doc("one backbone for every camera", default=False)
    image_size: int | None = doc(
        "square side camera frames are resized to at load when training from --dataset without --env (96 there); "
        "null: as stored. With an env the env renders its own size, and a different value here is refused",
        default=None,
        validator=in_range(8, 1024),
    )
    crop_shape: tuple[int, int] | None = doc("random crop in training, center crop in evaluation; null: none", default=(84, 84))
    pretrained: str | None = doc("path of a local torchvision state dict; never downloaded; null: random init", default=None)
    group_norm: bool = doc("GroupNorm instead of BatchNorm in the backbone", default=True)
    feature_dim: int = doc("features per camera", default=512, validator=positive)
    weight_decay: float = doc("AdamW weight decay of the encoder", default=1e-6, validator=non_negative)


def _check_ray_address(value: str | None) -> None:
    if value is not None and value != "auto" and not re.fullmatch(r"(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", value):
        raise ValueError(f"ray_address: must be auto, HOST:PORT (or ray://HOST:PORT) or null; got {value!r}")


@define(frozen=True, kw_only=True)
class ExecConfig:
    """Where parallel work runs: rollouts (in training and polx eval), DAgger collection, sweep cells."""

    backend: str = doc(
        "local: processes on this machine (eval.n_envs of them); ray: Ray actors and tasks on a Ray cluster "
        "(pip install 'polx[ray]')",
        default="local", validator=one_of("local", "ray"),
    )  # fmt: skip
    ray_address: str | None = doc(
        "the Ray cluster: auto (the one `ray start` made on this machine, or RAY_ADDRESS), HOST:PORT of its head; "
        "null: a Ray started for this command and stopped after it",
        default=None, validator=lambda inst, attr, value: _check_ray_address(value),
    )  # fmt: skip
    cpus_per_cell: float = doc("Ray: CPUs each sweep cell reserves", default=1.0, validator=in_range(0.0, 1024.0))
    gpus_per_cell: float = doc("Ray: GPUs each sweep cell reserves (fractions share a GPU)", default=0.0, validator=in_range(0.0, 64.0))


CORE_SECTIONS: dict[str, type] = {
    "train": TrainConfig,
    "eval": EvalConfig,
    "policy": PolicyConfig,
    "data": DataConfig,
    "encoder": EncoderConfig,
    "exec": ExecConfig,
}
DYNAMIC_SECTIONS = ("head", "objective", "env", "loggers")


@define(frozen=True, kw_only=True)
class RunConfig:
    """The resolved configuration of a run."""

    components: ComponentsConfig
    train: TrainConfig
    eval: EvalConfig
    policy: PolicyConfig
    data: DataConfig
    encoder: EncoderConfig
    exec: ExecConfig
    head: Any
    objective: Any
    env: Any
    loggers: dict[str, Any]

    def to_dict(self) -> dict:
        return _plain(converter.unstructure(self))

    def to_yaml(self, comments: bool = False) -> str:
        """The config as YAML; ``comments``: each field's ``doc`` as a trailing comment (``--print-config``)."""
        if not comments:
            return yaml.safe_dump(self.to_dict(), sort_keys=False)
        data, lines = self.to_dict(), []
        for name in data:
            value = getattr(self, name)
            if name == "loggers":
                lines.append("loggers:")
                for logger, cfg in value.items():
                    lines += _commented(logger, data[name][logger], type(cfg) if attrs.has(type(cfg)) else None, "  ")
            else:
                lines += _commented(name, data[name], type(value) if attrs.has(type(value)) else None, "")
        return "\n".join(lines) + "\n"


def _commented(key: str, value: Any, cls: type | None, indent: str) -> list[str]:
    """YAML lines for ``key: value``, with the docs of ``cls``'s fields as trailing comments."""
    head = f"{indent}{key}:"
    if cls is not None and cls.__doc__ and indent == "":
        head = f"# {cls.__doc__.strip().splitlines()[0].replace('``', '')}\n{head}"
    if not isinstance(value, dict) or not value:
        return [f"{head} {_scalar(value)}"]
    lines = [head]
    docs = {a.name: a.metadata.get("doc") for a in attrs.fields(cls)} if cls is not None else {}
    hints = typing.get_type_hints(cls) if cls is not None else {}
    for sub, sub_value in value.items():
        sub_cls = hints.get(sub) if isinstance(hints.get(sub), type) and attrs.has(hints.get(sub)) else None
        sub_lines = _commented(sub, sub_value, sub_cls, indent + "  ")
        if docs.get(sub):
            sub_lines[0] += f"  # {docs[sub]}"
        lines += sub_lines
    return lines


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()


# ---------------------------------------------------------------------------------------------
# the converter: strict scalars (3.5 is not an int, "abc" is not a float) and no extra keys


class _TypeMismatch(ValueError):
    pass


def _strict(expected: str, ok: Any, convert: Any = lambda v: v) -> Any:
    def hook(value: Any, _type: Any) -> Any:
        if not ok(value):
            raise _TypeMismatch(f"expected {expected}, got {show(value)}")
        return convert(value)

    return hook


converter = cattrs.Converter(forbid_extra_keys=True)
_is_int = _strict("int", lambda v: isinstance(v, int) and not isinstance(v, bool))
_is_float = _strict("float", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), float)
converter.register_structure_hook(int, lambda v, t: _strict("an int within 64 bits", lambda v: -(2**63) <= v < 2**63)(_is_int(v, t), t))
# inf and nan are no setting: a learning rate of .inf dies at step 2, with its run directory made
converter.register_structure_hook(float, lambda v, t: _strict("a finite float", math.isfinite)(_is_float(v, t), t))
converter.register_structure_hook(bool, _strict("bool (true/false)", lambda v: isinstance(v, bool)))
converter.register_structure_hook(str, _strict("string", lambda v: isinstance(v, str)))
converter.register_unstructure_hook(tuple, list)


def _is_variadic_tuple(type_: Any) -> bool:
    args = typing.get_args(type_)
    return typing.get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


def _variadic_tuple(value: Any, type_: Any) -> tuple:
    """``tags=baseline`` means ``("baseline",)``: a lone string is one element, not its characters."""
    item = typing.get_args(type_)[0]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise _TypeMismatch(f"expected a list, got {value!r}")
    return tuple(converter.structure(v, item) for v in items)


converter.register_structure_hook_func(_is_variadic_tuple, _variadic_tuple)


def _is_dict(type_: Any) -> bool:
    return typing.get_origin(type_) is dict


def _dict_hook(type_: Any) -> Any:
    """A mapping-valued option (``env.action_groups={left: [0, 8]}``): refused unless a YAML mapping,
    then cattrs' own mapping hook (whose errors name the key)."""
    structure = converter.gen_structure_mapping(type_)

    def hook(value: Any, _type: Any) -> dict:
        if not isinstance(value, Mapping):
            raise _TypeMismatch(f"expected a mapping, e.g. {{name: value, ...}}, got {value!r}")
        return structure(value, _type)

    return hook


converter.register_structure_hook_factory(_is_dict, _dict_hook)


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


# ---------------------------------------------------------------------------------------------
# sources


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as a string; researchers mean a float (as YAML 1.2 does)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


# YAML 1.1 reads ``1:30`` as 90 (base 60), ``0x10`` as 16 and ``010`` as 8; nobody typing an option
# means that. Integers and floats are decimal here (as in YAML 1.2's JSON schema), so those stay
# strings and a numeric option refuses them by name.
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBER_TAGS or not any(map(regexp.match, ("1:30", "1:30.5", "0x10", "010")))]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_override(text: str) -> tuple[list[str], Any]:
    """``head.n_emb=384`` -> (["head", "n_emb"], 384); the value is parsed as a YAML scalar."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
        raise UserInputError(f"bad override {text!r}: expected KEY=VALUE with a dotted key, e.g. train.max_steps=5000")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserInputError(f"bad override {text!r}: value is not valid YAML ({exc.problem})") from None
    except ValueError:  # an integer of more than 4300 digits (Python's own limit on parsing one)
        raise UserInputError(f"bad override {key}=<{len(raw.strip())} characters>: the number is too large for any option") from None
    return key.split("."), value


def load_config_file(path: str | Path) -> dict:
    """Read a YAML or TOML config file (by extension) into a nested dict."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"config file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"config file {str(p)!r} is not text (byte {exc.start} is not UTF-8); expected a YAML or TOML file") from None
    except OSError as exc:
        raise UserInputError(f"config file {str(p)!r} could not be read: {exc.strerror or exc}") from None
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = _yaml_load(text)
    except Exception as exc:
        raise UserInputError(f"config file {str(p)!r} could not be parsed: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"config file {str(p)!r} must hold a mapping of sections, got {type(data).__name__}")
    return data


def deep_merge(base: dict, update: Mapping) -> dict:
    """A new dict: ``update`` merged into ``base`` recursively (mappings merge, other values replace)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def set_dotted(tree: dict, path: list[str], value: Any) -> dict:
    return deep_merge(tree, _nest(path, value))


def _nest(path: list[str], value: Any) -> dict:
    out: Any = value
    for part in reversed(path):
        out = {part: out}
    return out


# ---------------------------------------------------------------------------------------------
# resolution


def defaults_of(cls: type) -> dict:
    """The class's defaults as plain data; required fields (no default) are left out."""
    out = {}
    for a in attrs.fields(cls):
        if a.default is attrs.NOTHING:
            continue
        default = a.default.factory() if isinstance(a.default, attrs.Factory) else a.default  # type: ignore[attr-defined]
        out[a.name] = _plain(converter.unstructure(default))
    return out


def _valid_keys(prefix: str, cls: type) -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for a in attrs.fields(cls):
        t = hints.get(a.name)
        if isinstance(t, type) and attrs.has(t):
            keys += _valid_keys(f"{prefix}{a.name}.", t)
        else:
            keys.append(f"{prefix}{a.name}")
    return keys


def unknown_keys(raw: Mapping, schema: Mapping[str, type | None], prefix: str = "") -> list[str]:
    """Dotted paths in ``raw`` that no schema class has; schema maps section -> attrs class."""
    problems = []
    all_keys: list[str] = []
    for sec, cls in schema.items():
        all_keys += _valid_keys(f"{sec}.", cls) if cls is not None else [sec]
    for path in _leaf_paths(raw):
        if path in all_keys or any(path.startswith(k + ".") for k in all_keys):
            continue  # an option, or inside a mapping-valued one (its type check names what is wrong)
        if any(k.startswith(path + ".") for k in all_keys):
            problems.append(f"{path}: expected a mapping of options, got a value")
            continue
        close = difflib.get_close_matches(path, all_keys, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"{path}: unknown key{hint}")
    return problems


def _leaf_paths(tree: Mapping, prefix: str = "") -> Iterable[str]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaf_paths(value, path + ".")  # an empty mapping sets nothing
        else:
            yield path


def structure_section(section: str, data: Any, cls: type, problems: list[str]) -> Any:
    try:
        return converter.structure(data, cls)
    except cattrs.ClassValidationError as exc:
        for line in cattrs.transform_error(exc, path=section, format_exception=_format_exception):
            msg, _, where = line.rpartition(" @ ")
            problems.append(_attribute(where, msg))
    except (ValueError, TypeError) as exc:  # a validator in the class's __init__ / post-init
        problems.append(_attribute(section, str(exc)))
    return None


def _attribute(where: str, msg: str) -> str:
    """``head`` + ``n_emb: must be > 0`` -> ``head.n_emb: must be > 0`` (validators name their field)."""
    name, sep, rest = msg.partition(": ")
    if sep and re.fullmatch(r"[A-Za-z_]\w*", name):
        return f"{where}.{name}: {rest}"
    return f"{where}: {msg}"


def _format_exception(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown keys: {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, (_TypeMismatch, ValueError, TypeError)):
        return str(exc)  # strict hooks and validators already say what was expected and what came
    return f"{type(exc).__name__}: {exc}"


def defaults_tree(schema: Mapping[str, type]) -> dict:
    """Every schema section's defaults, nested by its dotted name (``loggers.json`` -> ``{"loggers": {"json": ...}}``)."""
    tree: dict = {}
    for sec, cls in schema.items():
        tree = set_dotted(tree, sec.split("."), defaults_of(cls))
    return tree


def _section_data(tree: Mapping, section: str) -> Any:
    node: Any = tree
    for part in section.split("."):
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    return node


def resolve_sections(
    schema: Mapping[str, type], tree: Mapping, overrides: Iterable[str] = (), *, only_schema: bool = False
) -> dict[str, Any]:
    """The one section resolver: ``tree`` -> ``KEY=VALUE`` overrides -> unknown keys -> structured sections.

    ``schema`` maps a dotted section name (``train``, ``loggers.json``) to its attrs class; ``tree``
    is where resolution starts (defaults and presets, or a saved config). Returns section ->
    structured instance. Raises ``ConfigError`` listing every problem, each with its dotted path.
    ``only_schema``: a command that reads a few sections refuses an override outside them by name
    (rather than calling it an unknown key). Every config polx reads is resolved here:
    ``resolve_config`` (a run), an env adapter alone (``polx.runs.build_env_adapter``), an exported
    policy's env and eval (``polx.deploy.evaluate``) and ``dagger.*``.
    """
    tops = sorted({sec.split(".")[0] for sec in schema})
    for text in overrides:
        keys, value = parse_override(text)
        if only_schema and (keys[0] not in tops or len(keys) < 2):
            names = [f"{top}.KEY=VALUE" for top in tops]
            allowed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
            raise UserInputError(f"{text!r}: only {allowed} overrides apply here")
        tree = set_dotted(dict(tree), keys, value)
    problems = unknown_keys(tree, schema)
    if problems:
        raise ConfigError(problems)
    sections = {sec: structure_section(sec, _section_data(tree, sec), cls, problems) for sec, cls in schema.items()}
    if problems:
        raise ConfigError(problems)
    return sections


def resolve_config(
    plugins: Any,
    *,
    head: str,
    env: str,
    objective: str | None = None,
    loggers: Iterable[str] = (),
    config_files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    base: Mapping | None = None,
) -> RunConfig:
    """Resolve the layered configuration; raises ``ConfigError`` listing every problem.

    ``base`` (a saved config.yaml's contents) replaces the defaults and presets: that is how
    ``--resume`` and ``polx eval`` rebuild a run's exact config before applying new overrides.
    """
    reg = plugins.registry
    head_c = reg.get("head", head)
    env_c = reg.get("env", env)
    objective = objective or head_c.default_objective
    if not objective:
        raise UserInputError(
            f"head {head!r} names no default objective; pass --objective (available: {', '.join(reg.names('objective'))})"
        )
    obj_c = reg.get("objective", objective)
    check_pairing(head_c, obj_c)  # before anything is written: the head must answer the objective's call
    logger_names = tuple(dict.fromkeys(loggers))
    for name in logger_names:
        reg.get("logger", name)

    logger_classes = {name: reg.get("logger", name).config_cls for name in reg.names("logger")}
    schema: dict[str, type] = dict(CORE_SECTIONS)
    schema.update(head=head_c.config_cls, objective=obj_c.config_cls, env=env_c.config_cls)
    for name, cls in logger_classes.items():
        schema[f"loggers.{name}"] = cls

    if base is None:
        tree = defaults_tree(schema)
        for comp in (env_c, head_c, obj_c):
            tree = deep_merge(tree, comp.preset)
    else:
        tree = {k: v for k, v in base.items() if k != "components"}
        logger_defaults = defaults_tree({f"loggers.{n}": c for n, c in logger_classes.items()}).get("loggers", {})
        tree["loggers"] = deep_merge(logger_defaults, tree.get("loggers") or {})

    for path in config_files:
        data = load_config_file(path)
        if isinstance(data.get("components"), Mapping):
            del data["components"]  # a run's config.yaml as --config: components come from the flags
        tree = deep_merge(tree, data)
    overrides = list(overrides)
    for text in overrides:
        keys, _ = parse_override(text)
        if keys[0] == "components":
            raise UserInputError(f"{'.'.join(keys)}: set components with --head/--env/--objective/--logger")

    sections = resolve_sections(schema, tree, overrides)
    loggers_cfg = {name: sections.pop(f"loggers.{name}") for name in logger_classes}
    components = ComponentsConfig(head=head, env=env, objective=objective, loggers=logger_names)
    return RunConfig(components=components, loggers=loggers_cfg, **sections)
