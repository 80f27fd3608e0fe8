"""RoboIMI: a MuJoCo dual-arm block transfer (right arm to left), cameras r_vis/top/front, EE actions.

Modules: ``config`` (cheap, attrs only), ``scene`` (MJCF), ``env`` (``RoboIMIEnv``), ``expert``
(scripted waypoints), ``demos`` (datasets), ``adapter`` (``RoboIMIAdapter``), ``camera`` and
``render`` (offscreen images, trajectory PNGs).
"""
