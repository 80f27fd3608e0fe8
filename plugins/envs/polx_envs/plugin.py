"""Entry point module of polx-plugin-envs: registers ``pusht`` and ``roboimi``.

Cheap on purpose: config classes only; simulators (pymunk, MuJoCo) load when an env is built.
"""

from __future__ import annotations

from polx import hookimpl


@hookimpl
def register_components(register):
    from polx_envs.pusht.config import PUSHT_PRESET, PushTConfig
    from polx_envs.roboimi.config import ROBOIMI_PRESET, RoboIMIConfig

    register(
        "env",
        "pusht",
        PushTConfig,
        "polx_envs.pusht.adapter:PushTAdapter",
        help="PushT (pymunk): push a T block onto its goal; image, keypoints or state observations",
        preset=PUSHT_PRESET,
    )
    register(
        "env",
        "roboimi",
        RoboIMIConfig,
        "polx_envs.roboimi.adapter:RoboIMIAdapter",
        help="RoboIMI (MuJoCo): dual-arm block transfer, cameras r_vis/top/front, EE actions",
        preset=ROBOIMI_PRESET,
    )


@hookimpl
def render_trajectory(env, episode, path):
    module = type(getattr(env, "unwrapped", env)).__module__
    if module.startswith("polx_envs.pusht"):
        from polx_envs.pusht.render import render_trajectory as draw
    elif module.startswith("polx_envs.roboimi"):
        from polx_envs.roboimi.render import render_trajectory as draw
    else:
        return None
    return draw(env, episode, path)
