"""Every integer option has a ceiling, every float option is finite, and KEY=VALUE means what it
says: absurd values exit 2 naming the key and the bound before anything is written.

The options are walked from the resolved config of each shipped head, so an option added later
is covered without editing this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
import typing
from importlib import metadata
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.config import parse_override, resolve_config
from polx.errors import ConfigError, UserInputError
from polx.plugins import load_plugins

HEADS = ("imf_attnres", "ddpm_transformer")


@pytest.fixture(scope="module")
def plugins():
    loaded = load_plugins(entry_points=list(metadata.entry_points(group="polx")))
    if not set(HEADS) <= set(loaded.registry.names("head")) or "pusht" not in loaded.registry.names("env"):
        pytest.skip("needs the project's plugins: heads imf_attnres and ddpm_transformer, env pusht")
    return loaded


def options_of(config, kind) -> list[str]:
    """Dotted keys of the resolved config's options of type ``kind`` (or ``kind | None``)."""
    keys = []
    for section in ("train", "eval", "policy", "data", "encoder", "exec", "head", "objective", "env"):
        for field in attrs.fields(type(getattr(config, section))):
            optional = typing.get_origin(field.type) in (typing.Union, types.UnionType) and set(typing.get_args(field.type)) == {kind, type(None)}
            if field.type in (kind, kind.__name__, f"{kind.__name__} | None") or optional:
                keys.append(f"{section}.{field.name}")
    return keys


@pytest.mark.parametrize("head, env", [(HEADS[0], "pusht"), (HEADS[1], "pusht"), (HEADS[0], "roboimi")])
def test_every_integer_option_refuses_ten_to_the_thirty_naming_itself(plugins, head, env):
    if env not in plugins.registry.names("env"):
        pytest.skip(f"needs the env {env}")
    config = resolve_config(plugins, head=head, env=env)
    keys = options_of(config, int)
    assert {"train.batch_size", "train.threads", "policy.horizon", "head.n_emb", "head.n_layer", "eval.n_test"} <= set(keys)
    for key in keys:
        with pytest.raises(ConfigError) as err:
            resolve_config(plugins, head=head, env=env, overrides=[f"{key}={10**30}"])
        assert any(line.startswith(f"{key}: ") for line in err.value.problems), (key, err.value.problems)
        assert "31-digit integer" in str(err.value) or "must lie in" in str(err.value), str(err.value)


@pytest.mark.parametrize("head", HEADS)
def test_every_float_option_refuses_inf_and_nan(plugins, head):
    keys = options_of(resolve_config(plugins, head=head, env="pusht"), float)
    assert "train.lr" in keys
    for key in keys:
        for value in (".inf", "-.inf", ".nan"):
            with pytest.raises(ConfigError, match=rf"{key}: expected a finite float"):
                resolve_config(plugins, head=head, env="pusht", overrides=[f"{key}={value}"])


@pytest.mark.parametrize("key, value, bound", [
    ("head.n_layer", 10**6, "<= 512"), ("head.n_emb", 10**5, "<= 16,384"), ("train.threads", 5000, "<= 1,024"),
    ("train.batch_size", 10**7, "<= 1,048,576"), ("policy.horizon", 10**5, "<= 10,000"), ("train.max_steps", 10**10, "<= 1,000,000,000"),
])
def test_sizes_have_sane_ceilings(plugins, key, value, bound):
    with pytest.raises(ConfigError, match=rf"{key}: must be {bound}, got {value}"):
        resolve_config(plugins, head="imf_attnres", env="pusht", overrides=[f"{key}={value}"])


@settings(max_examples=60, deadline=None)
@given(st.one_of(
    st.tuples(st.integers(0, 99), st.integers(0, 59)).map(lambda t: f"{t[0]}:{t[1]:02d}"),  # YAML 1.1 base 60
    st.integers(0, 10**6).map(hex),
    st.integers(0, 10**6).map(oct),
    st.integers(1, 10**6).map(lambda n: f"0{n:o}"),  # YAML 1.1 octal
    st.integers(0, 10**6).map(bin),
))
def test_sexagesimal_hex_and_octal_stay_strings(text):
    assert parse_override(f"train.batch_size={text}")[1] == text


@given(st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False, width=32))
@settings(max_examples=40, deadline=None)
def test_decimal_numbers_still_read_as_numbers(n, x):
    assert parse_override(f"a.b={n}")[1] == n
    assert parse_override(f"a.b={x!r}")[1] == pytest.approx(float(repr(x)))


def test_a_seed_of_5000_digits_is_one_line(plugins):
    with pytest.raises(UserInputError, match=r"train.seed=<5000 characters>: the number is too large"):
        resolve_config(plugins, head="imf_attnres", env="pusht", overrides=["train.seed=" + "7" * 5000])


def test_eval_n_test_too_large_blames_n_test(plugins):
    from polx.runs import check_seeds

    config = resolve_config(plugins, head="imf_attnres", env="pusht", overrides=["eval.n_test=1000", "eval.test_start_seed=4294967000"])
    with pytest.raises(ConfigError, match=r"^eval.n_test: 1000 episodes from eval.test_start_seed=4294967000 .* at most 296 fit"):
        check_seeds(config)


def test_the_cli_exits_2_before_a_run_directory_exists(tmp_path):
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 4)
    env = {**os.environ, "POLX_CACHE_DIR": str(tmp_path / "cache")}
    train = [sys.executable, "-m", "polx", "train", "--head", "imf_attnres", "--env", "pusht", "--out", str(tmp_path / "runs")]
    for extra, said in (
        (["--config", str(tmp_path / "weights.bin")], "weights.bin' is not text"),
        (["head.n_layer=" + str(10**30)], "head.n_layer: expected an int within 64 bits, got a 31-digit integer"),
        (["head.n_layer=100000"], "head.n_layer: must be <= 512, got 100000"),
        (["train.lr=.inf"], "train.lr: expected a finite float, got inf"),
        (["train.batch_size=1:30"], "train.batch_size: expected int, got '1:30'"),
    ):
        done = subprocess.run([*train, *extra], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, (extra, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]


@pytest.mark.parametrize("env", ["pusht", "roboimi"])
def test_a_negative_demo_seed_is_refused_at_config_time(plugins, env):
    """numpy would refuse it only when the demonstrations are generated, after the run started."""
    if env not in plugins.registry.names("env"):
        pytest.skip(f"needs the env {env}")
    with pytest.raises(ConfigError, match=r"env.default_seed: must be in \[0, 2147483647\], got -1"):
        resolve_config(plugins, head=HEADS[0], env=env, overrides=["env.default_seed=-1"])


def test_a_negative_lerobot_frame_cache_is_refused():
    from polx.data.lerobot_format import LeRobotFormatConfig

    with pytest.raises(ValueError, match=r"frame_cache_mb: must be in \[0, 1048576\], got -1"):
        LeRobotFormatConfig(frame_cache_mb=-1)
