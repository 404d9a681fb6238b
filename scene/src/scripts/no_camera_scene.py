"""rendermesh: removes every camera from the open file and saves it (a test fixture).

Appended to example_scene.py to build the "scene with no camera" fixture in one run:

    blender -b --factory-startup -Y -P no_camera_scene.py -- OUT.blend

and on its own it strips the cameras from any file:

    blender -b --factory-startup -Y IN.blend -P no_camera_scene.py -- OUT.blend
"""

import sys

import bpy

argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
if len(argv) != 1:
    print("rendermesh: error: usage: no_camera_scene.py -- OUT.blend", flush=True)
    sys.exit(2)
for obj in [o for o in bpy.data.objects if o.type == "CAMERA"]:
    bpy.data.objects.remove(obj, do_unlink=True)
for scene in bpy.data.scenes:
    scene.camera = None
bpy.ops.wm.save_as_mainfile(filepath=argv[0])
print(f"rendermesh: saved a scene with no camera to {argv[0]}", flush=True)
