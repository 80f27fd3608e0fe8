"""The RoboIMI scene as MJCF text built from primitives: table, block, two 6-joint arms, cameras.

World frame: z up, table top at z = 0 spanning x in [-0.6, 0.6], y in [0.1, 0.9]. The left arm
stands at x = -0.45 facing +x, the right arm at x = +0.45 facing -x; the front camera looks
along +y from y < 0. Each arm: waist (z), shoulder (pitch), elbow (pitch), forearm roll, wrist
pitch, wrist roll, then a parallel-jaw gripper with two slide fingers.

The gripper body ``<arm>_ee`` has its origin at the grasp point (between the finger pads), +z
pointing from the palm towards the fingertips and the fingers closing along its y axis. A mocap
body ``<arm>_mocap`` is welded to it with identity relative pose, so an EE action is simply the
pose that body should take. Arm links are gravity-compensated and damped: the weld alone moves
them, like the ACT simulation's EE control.
"""

from __future__ import annotations

import numpy as np

from polx_envs.roboimi.config import RoboIMIConfig

BASE_X = 0.45  # |x| of each arm's base
BASE_Y = 0.5
UPPER_ARM, FOREARM, WRIST_1, WRIST_2, EE_OFFSET = 0.30, 0.25, 0.05, 0.06, 0.10  # link lengths
SHOULDER_Z = 0.12
FINGER_TRAVEL = 0.04  # each finger's slide range: 0 closed .. 0.04 open
BLOCK_HALF = (0.05, 0.02, 0.02)  # a bar: one arm grips each half
#: home joint angles (waist, shoulder, elbow, forearm roll, wrist pitch, wrist roll), both arms
HOME_QPOS = (0.0, -0.5, 0.5, 0.0, 0.8, 0.0)

TABLE_GEOM, BLOCK_GEOM = "table", "block"
FINGER_GEOMS = {arm: (f"{arm}_finger_a", f"{arm}_finger_b") for arm in ("left", "right")}


def look_at(pos, target) -> str:
    """MJCF ``xyaxes`` for a camera at ``pos`` looking at ``target`` with world z up."""
    forward = np.asarray(target, float) - np.asarray(pos, float)
    z = -forward / np.linalg.norm(forward)  # MuJoCo cameras look along their -z
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return " ".join(f"{v:.5f}" for v in (*x, *y))


def _arm(name: str, side: float) -> str:
    """One arm; ``side`` = -1 for the left arm (faces +x), +1 for the right arm (faces -x)."""
    yaw_quat = "1 0 0 0" if side < 0 else "0 0 0 1"
    # the wrist camera sits beside the palm, looking along the fingers, tilted 25 degrees towards them
    cam = '<camera name="r_vis" pos="0.06 0 -0.11" xyaxes="0 1 0 0.906 0 0.423" fovy="75"/>' if name == "right" else ""
    fingers = "".join(
        f"""
              <body name="{name}_finger_{tag}" gravcomp="1">
                <joint name="{name}_finger_{tag}" class="finger" axis="0 {sgn} 0"/>
                <geom name="{name}_finger_{tag}" class="finger" pos="0 {sgn * 0.009} -0.025" size="0.012 0.007 0.04"/>
              </body>"""
        for tag, sgn in (("a", 1), ("b", -1))
    )
    return f"""
    <body name="{name}_base" pos="{side * BASE_X} {BASE_Y} 0" quat="{yaw_quat}" childclass="arm">
      <geom type="cylinder" size="0.06 0.02" pos="0 0 0.02" material="dark"/>
      <body name="{name}_waist" gravcomp="1" pos="0 0 0.04">
        <joint name="{name}_waist" axis="0 0 1"/>
        <geom type="cylinder" size="0.04 0.04" pos="0 0 0.04"/>
        <body name="{name}_upper_arm" gravcomp="1" pos="0 0 {SHOULDER_Z - 0.04}">
          <joint name="{name}_shoulder" axis="0 1 0"/>
          <geom type="capsule" fromto="0 0 0 0 0 {UPPER_ARM}" size="0.03"/>
          <body name="{name}_forearm" gravcomp="1" pos="0 0 {UPPER_ARM}">
            <joint name="{name}_elbow" axis="0 1 0"/>
            <geom type="capsule" fromto="0 0 0 {FOREARM} 0 0" size="0.025"/>
            <body name="{name}_forearm_roll" gravcomp="1" pos="{FOREARM} 0 0">
              <joint name="{name}_forearm_roll" axis="1 0 0"/>
              <geom type="capsule" fromto="0 0 0 {WRIST_1} 0 0" size="0.022"/>
              <body name="{name}_wrist" gravcomp="1" pos="{WRIST_1} 0 0">
                <joint name="{name}_wrist_pitch" axis="0 1 0"/>
                <geom type="capsule" fromto="0 0 0 {WRIST_2} 0 0" size="0.02"/>
                <body name="{name}_wrist_roll" gravcomp="1" pos="{WRIST_2} 0 0">
                  <joint name="{name}_wrist_roll" axis="1 0 0"/>
                  <body name="{name}_ee" gravcomp="1" pos="{EE_OFFSET} 0 0" xyaxes="0 0 -1 0 1 0">
                    <geom name="{name}_palm" class="gripper" pos="0 0 -0.075" size="0.02 0.05 0.01"/>
                    <geom class="visual" type="cylinder" pos="0 0 -0.09" size="0.02 0.01" material="dark"/>
                    {cam}{fingers}
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def build_mjcf(config: RoboIMIConfig) -> str:
    """The whole scene as MJCF text; ``config`` sets timestep, buffer size and render quality."""
    buffer = max(config.image_size, config.trajectory_image_size)
    if config.cheap_render:  # what costs most on a CPU rasteriser: shadow maps and multisampling
        quality, shadow = 'shadowsize="0" offsamples="0"', "false"
    else:
        quality, shadow = 'shadowsize="4096" offsamples="4"', "true"
    front_pos, top_pos = (0.0, -0.5, 0.7), (0.0, 0.5, 1.0)
    front_axes = look_at(front_pos, (0.0, 0.5, 0.08))
    hx, hy, hz = BLOCK_HALF
    actuators = "\n    ".join(
        f'<position name="{a}_finger_{t}" joint="{a}_finger_{t}" class="finger" kp="300" kv="10" forcerange="-15 15"/>'
        for a in ("left", "right")
        for t in ("a", "b")
    )
    table = 'material="wood" contype="0" conaffinity="0"'  # the visual parts of the table
    return f"""<mujoco model="roboimi_transfer">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{config.physics_dt}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="{buffer}" offheight="{buffer}"/>
    <quality {quality}/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5" specular="0.1 0.1 0.1"/>
  </visual>
  <asset>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.55 0.57 0.6" rgb2="0.45 0.47 0.5" width="64" height="64"/>
    <material name="floor" texture="floor" texrepeat="6 6"/>
    <material name="wood" rgba="0.78 0.66 0.48 1"/>
    <material name="arm" rgba="0.82 0.84 0.88 1"/>
    <material name="dark" rgba="0.18 0.2 0.24 1"/>
    <material name="block" rgba="0.15 0.45 0.95 1"/>
  </asset>
  <default>
    <default class="arm">
      <joint damping="8" armature="0.05"/>
      <geom contype="0" conaffinity="0" material="arm" group="1"/>
      <default class="gripper">
        <geom type="box" contype="1" conaffinity="1" material="dark" friction="1.5 0.02 0.001" condim="4"/>
      </default>
      <default class="finger">
        <joint type="slide" range="0 {FINGER_TRAVEL}" damping="5" armature="0.01"/>
        <position ctrlrange="0 {FINGER_TRAVEL}"/>
        <geom type="box" contype="1" conaffinity="1" material="dark" friction="2 0.05 0.001" condim="4" solref="0.005 1"/>
      </default>
      <default class="visual">
        <geom contype="0" conaffinity="0"/>
      </default>
    </default>
  </default>
  <worldbody>
    <light name="sun" pos="0.3 -0.3 2" dir="-0.15 0.3 -1" diffuse="0.6 0.6 0.6" castshadow="{shadow}"/>
    <geom name="floor" type="plane" pos="0 0.5 -0.75" size="3 3 0.1" material="floor" contype="0" conaffinity="0"/>
    <geom name="{TABLE_GEOM}" type="box" pos="0 0.5 -0.02" size="0.6 0.4 0.02" material="wood" friction="0.8 0.02 0.001"/>
    <geom type="box" pos="0 0.5 -0.4" size="0.55 0.35 0.35" rgba="0.6 0.5 0.36 1" {table}/>
    <geom name="wall" type="box" pos="0 2 0.5" size="3 0.05 1.25" rgba="0.72 0.75 0.78 1" contype="0" conaffinity="0"/>
    <camera name="top" pos="{top_pos[0]} {top_pos[1]} {top_pos[2]}" xyaxes="1 0 0 0 1 0" fovy="60"/>
    <camera name="front" pos="{front_pos[0]} {front_pos[1]} {front_pos[2]}" xyaxes="{front_axes}" fovy="55"/>
    <body name="block" pos="0.05 0.5 {hz}">
      <freejoint name="block"/>
      <geom name="{BLOCK_GEOM}" type="box" size="{hx} {hy} {hz}" mass="0.05" material="block"
            friction="1.5 0.02 0.001" condim="4"/>
    </body>
    {_arm("left", -1.0)}
    {_arm("right", 1.0)}
    <body name="left_mocap" mocap="true"/>
    <body name="right_mocap" mocap="true"/>
  </worldbody>
  <equality>
    <weld body1="left_mocap" body2="left_ee" relpose="0 0 0 1 0 0 0" solref="0.01 1"/>
    <weld body1="right_mocap" body2="right_ee" relpose="0 0 0 1 0 0 0" solref="0.01 1"/>
  </equality>
  <actuator>
    {actuators}
  </actuator>
</mujoco>
"""
