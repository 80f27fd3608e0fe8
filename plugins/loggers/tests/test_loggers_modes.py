"""Mode resolution (config > <TRACKER>_MODE > online with a key > offline) and the config classes."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

from polx.config import converter, defaults_of, structure_section
from polx.errors import UserInputError
from polx_loggers.config import SWANLAB_MODES, WANDB_MODES, SwanLabConfig, WandbConfig
from polx_loggers.modes import resolve_mode

OFFLINE_NOTICE = "no {P}_API_KEY in the environment, logging offline"

# configured mode, environment, expected mode, notice expected
TABLE = [
    ("offline", {}, "offline", False),
    ("disabled", {"{P}_MODE": "online", "{P}_API_KEY": "k"}, "disabled", False),  # config beats everything
    (None, {"{P}_MODE": "disabled", "{P}_API_KEY": "k"}, "disabled", False),  # env mode beats the key rule
    (None, {"{P}_MODE": " Offline "}, "offline", False),  # env values are trimmed, case-insensitive
    (None, {"{P}_API_KEY": "k"}, "online", False),
    (None, {"{P}_API_KEY": "  "}, "offline", True),  # a blank key is no key
    (None, {"{P}_MODE": ""}, "offline", True),  # a blank mode is no mode
    (None, {}, "offline", True),
]


@pytest.mark.parametrize("tracker,modes", [("swanlab", SWANLAB_MODES), ("wandb", WANDB_MODES)])
@pytest.mark.parametrize("configured,env,expected,notice", TABLE)
def test_mode_resolution_table(tracker, modes, configured, env, expected, notice):
    environ = {k.format(P=tracker.upper()): v for k, v in env.items()}
    mode, message = resolve_mode(tracker, configured, modes, environ)
    assert mode == expected
    assert (message is not None) == notice
    if notice:
        assert OFFLINE_NOTICE.format(P=tracker.upper()) in message


def test_local_mode_is_swanlab_only():
    assert resolve_mode("swanlab", None, SWANLAB_MODES, {"SWANLAB_MODE": "local"})[0] == "local"
    with pytest.raises(UserInputError, match=r"WANDB_MODE='local' is not a wandb mode; use one of online, offline, disabled"):
        resolve_mode("wandb", None, WANDB_MODES, {"WANDB_MODE": "local"})
    with pytest.raises(UserInputError, match=r"loggers.wandb.mode: must be one of online, offline, disabled; got 'local'"):
        resolve_mode("wandb", "local", WANDB_MODES, {})


@pytest.mark.parametrize("cls", [SwanLabConfig, WandbConfig])
def test_every_option_has_a_default_and_round_trips(cls):
    defaults = defaults_of(cls)
    assert set(defaults) == {a.name for a in attrs.fields(cls)}
    assert converter.structure(defaults, cls) == cls()


def test_config_values_are_structured_and_bad_modes_named():
    cfg = converter.structure({"mode": "local", "tags": ["a", "b"], "project": "p"}, SwanLabConfig)
    assert cfg.mode == "local" and cfg.tags == ("a", "b")
    problems: list[str] = []
    structure_section("loggers.wandb", {"mode": "local"}, WandbConfig, problems)
    assert problems == ["loggers.wandb.mode: must be one of online, offline, disabled; got 'local'"]


def test_plugin_import_is_cheap():
    code = (
        "import sys, polx.plugins as p; names = p.load_plugins().registry.names('logger'); "
        "heavy = [m for m in ('swanlab', 'wandb', 'torch') if m in sys.modules]; print(names, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'json', 'swanlab', 'wandb'" in out and out.strip().endswith("[]")
