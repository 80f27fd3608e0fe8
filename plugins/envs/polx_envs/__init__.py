"""polx_envs: a polx plugin (see plugin.py for what it registers).

Importing it also registers the gymnasium ids ``polx/PushT-v0`` and ``polx/RoboIMI-Transfer-v0``
(by entry-point string, so no simulator loads until ``gymnasium.make``).
"""

__version__ = "0.1.0"

GYM_ENVS = {
    "polx/PushT-v0": "polx_envs.pusht.env:PushTEnv",
    "polx/RoboIMI-Transfer-v0": "polx_envs.roboimi.env:RoboIMIEnv",
}


def _register_gym_envs() -> None:
    import gymnasium

    for env_id, entry_point in GYM_ENVS.items():
        if env_id not in gymnasium.registry:  # re-imports (e.g. importlib.reload) must not re-register
            gymnasium.register(id=env_id, entry_point=entry_point)


_register_gym_envs()
