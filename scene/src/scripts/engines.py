"""rendermesh: which render engines this Blender runs headless.

Run as `blender -b --factory-startup -Y --python-exit-code 2 -P engines.py`. Renders an 8x8
Workbench image in memory (nothing is written) and prints `rendermesh: engine
BLENDER_WORKBENCH ok`, or `rendermesh: engine BLENDER_WORKBENCH failed: REASON`.

Cycles needs no probe: it runs on the CPU wherever Blender runs. Workbench and EEVEE both need
an OpenGL context, which headless Blender 3.4 gets through surfaceless EGL where the drivers
allow (Mesa's llvmpipe will do); a Workbench render is the cheapest way to find out (about a
second), and it stands for EEVEE too. rendermesh treats a node whose Workbench render works as
able to run both.
"""

import bpy

scene = bpy.context.scene
scene.render.resolution_x = 8
scene.render.resolution_y = 8
scene.render.resolution_percentage = 100
scene.render.engine = "BLENDER_WORKBENCH"
try:
    bpy.ops.render.render()
    print("rendermesh: engine BLENDER_WORKBENCH ok", flush=True)
except Exception as e:  # noqa: BLE001 - any failure means "cannot"
    print(f"rendermesh: engine BLENDER_WORKBENCH failed: {e}", flush=True)
