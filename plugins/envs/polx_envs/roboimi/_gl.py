"""Choose MuJoCo's headless OpenGL backend before ``mujoco`` is imported.

MuJoCo reads ``MUJOCO_GL`` once, when it is first imported, and PyOpenGL fixes its platform on
first use, so the choice cannot be changed later in the process. Every module of this package
that imports ``mujoco`` imports this one first; ``camera.CameraRenderer`` then creates its GL
context from ``GL_BACKEND`` itself, so rendering works even when someone imported ``mujoco``
earlier without setting ``MUJOCO_GL`` (mujoco would then have picked GLFW, which needs a display).

A backend the user set wins (``MUJOCO_GL``, else ``PYOPENGL_PLATFORM``). Otherwise EGL is used
when an EGL device can be initialised (GPU drivers or Mesa's software device), and OSMesa when
EGL cannot be but libOSMesa is installed.
The probe talks to libEGL through ctypes, not PyOpenGL, so it commits nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_EGL_PLATFORM_DEVICE_EXT = 0x313F


def _egl_works() -> bool:
    """True when some EGL device display initialises (what mujoco.egl does on import)."""
    lib = ctypes.util.find_library("EGL")
    if lib is None:
        return False
    try:
        egl = ctypes.CDLL(lib)
        get_proc = egl.eglGetProcAddress
        get_proc.restype, get_proc.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        query_addr = get_proc(b"eglQueryDevicesEXT")
        display_addr = get_proc(b"eglGetPlatformDisplayEXT")
        if not query_addr or not display_addr:
            return False
        pointer = ctypes.POINTER
        query = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, pointer(ctypes.c_void_p), pointer(ctypes.c_int))(query_addr)
        get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(display_addr)
        devices = (ctypes.c_void_p * 16)()
        count = ctypes.c_int(0)
        if not query(16, devices, ctypes.byref(count)):
            return False
        egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        egl.eglTerminate.argtypes = [ctypes.c_void_p]
        for i in range(count.value):
            display = get_display(_EGL_PLATFORM_DEVICE_EXT, devices[i], None)
            if display and egl.eglInitialize(display, None, None):
                egl.eglTerminate(display)
                return True
    except (OSError, AttributeError):
        return False
    return False


def select_gl_backend() -> str:
    """Set ``MUJOCO_GL`` unless the user did, and return the backend to use (lower case)."""
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"].strip().lower()
    pyopengl = os.environ.get("PYOPENGL_PLATFORM", "").strip().lower()
    if pyopengl in ("egl", "osmesa"):  # PyOpenGL is pinned to one: MuJoCo must use the same
        backend = pyopengl
    elif _egl_works() or ctypes.util.find_library("OSMesa") is None:
        backend = "egl"  # also when nothing works: MuJoCo's own error then names the backend
    else:
        backend = "osmesa"
    os.environ.setdefault("MUJOCO_GL", backend)
    return backend


def load_triton_first() -> None:
    """Import triton (torch's kernel compiler) before MuJoCo renders, if it is installed.

    Loaded into a process after libEGL (Mesa) has been initialised, triton segfaults (torch 2.14,
    mujoco 4); loaded first, both work. torchvision imports it, so training with RoboIMI in one
    process (the cached dataset generated, then the policy built) would otherwise crash.
    """
    try:
        import triton  # noqa: F401
    except Exception:  # absent or broken: nothing to protect
        pass


load_triton_first()  # before the EGL probe below: loading libEGL first is enough to crash triton later
GL_BACKEND = select_gl_backend()
