"""A small offscreen renderer for named MuJoCo cameras, cheap by default on CPU rasterisers.

Like ``mujoco.Renderer``, but it creates its GL context from ``_gl.GL_BACKEND`` itself (see
``_gl``) and exposes the scene between ``update`` and ``render``, where user geoms (trajectory
markers) are added. Cheap mode turns off shadows and reflections; the MJCF also sets
``shadowsize=0`` and ``offsamples=0`` (no multisampling). On CPU this is ~10x faster.
"""

from __future__ import annotations

from polx_envs.roboimi._gl import GL_BACKEND

import mujoco
import numpy as np


def _gl_context_class():
    if GL_BACKEND == "egl":
        from mujoco.egl import GLContext
    elif GL_BACKEND == "osmesa":
        from mujoco.osmesa import GLContext
    else:  # glfw, glx, ...: whatever mujoco chose for MUJOCO_GL
        from mujoco.rendering.classic.gl_context import GLContext
    return GLContext


class CameraRenderer:
    """Renders ``size`` x ``size`` RGB images from the model's named cameras."""

    def __init__(self, model: mujoco.MjModel, size: int, *, cheap: bool = True, max_geom: int = 2000):
        buffer = min(model.vis.global_.offwidth, model.vis.global_.offheight)
        if size > buffer:
            raise ValueError(f"image size {size} exceeds the model's offscreen buffer ({buffer} px)")
        self.model, self.size = model, size
        self._context = self._mjr = None  # so close() is safe if creation fails half way
        self._context = _gl_context_class()(size, size)
        self._context.make_current()
        self._mjr = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._mjr)
        self.scene = mujoco.MjvScene(model, maxgeom=max_geom)
        if cheap:
            self.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            self.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, size, size)
        self._pixels = np.empty((size, size, 3), dtype=np.uint8)

    def camera_id(self, name: str) -> int:
        cam = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cam < 0:
            names = [self.model.camera(i).name for i in range(self.model.ncam)]
            raise ValueError(f"camera {name!r} does not exist; cameras: {', '.join(names)}")
        return cam

    def update(self, data: mujoco.MjData, camera: str) -> None:
        """Rebuild ``scene`` from ``data`` as seen by the named camera."""
        self._camera.fixedcamid = self.camera_id(camera)
        mujoco.mjv_updateScene(self.model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self.scene)

    def render(self) -> np.ndarray:
        """uint8 (size, size, 3) image of the current ``scene``, top row first."""
        self._context.make_current()
        mujoco.mjr_render(self._rect, self.scene, self._mjr)
        mujoco.mjr_readPixels(self._pixels, None, self._rect, self._mjr)
        return np.flipud(self._pixels).copy()  # OpenGL's rows start at the bottom

    def close(self) -> None:
        if self._mjr is not None:
            self._context.make_current()
            self._mjr.free()
            self._mjr = None
        if self._context is not None:
            self._context.free()
            self._context = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the GL library may already be gone
            pass
