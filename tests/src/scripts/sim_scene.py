"""rendermesh: builds a tiny animation whose rigid-body simulation is NOT baked.

    blender -b --factory-startup -Y -P sim_scene.py -- OUT.blend

Writes OUT.blend: frames 1-8 at 8 fps, 64x48, Cycles on the CPU, 4 samples, denoising off. A
tilted cube (an active rigid body) starts above a ground slab (a passive rigid body), falls,
strikes the slab on a corner at frame 6, then bounces and tumbles over frames 7-8. An
orthographic camera sees the whole fall against a dark world, lit by a sun. The cube moves
between any two consecutive frames, so every frame differs from the one before it.

The rigid body world's point cache (frames 1-8) is left unbaked. Measured with Blender 3.4.1:
`blender -b FILE -a` and `-f N` both render the cube at its start, every frame; only a session
that sets the frames one after another (`scene.frame_set(1)`, `(2)`, ... then render each, as
settings.py --serve does) shows it fall, and then only when it starts at frame 1. Baked, it
falls in every render, whatever the order. No `.blend1` backups are written.

Layout seen by the camera (looking along +Y, x to the right, z up, 8 pixels per unit):

    z = 2.8   the cube's centre at frame 1 (1.2 units wide, tilted 25 degrees about X, 30 about Y)
    z = 0     the top of the ground slab, 8 x 4 x 0.5 units
"""

import math
import os
import sys

import bpy

FRAMES = (1, 8)
FPS = 8  # with Earth's gravity the cube lands at frame 6; its bounce keeps it moving after


def out_path():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    if len(argv) != 1:
        print("rendermesh: error: usage: sim_scene.py -- OUT.blend", flush=True)
        sys.exit(2)
    return os.path.abspath(argv[0])


def reset():
    """An empty file, and no `.blend1` backups (factory settings turn them back on)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0


def diffuse(name, colour):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = colour
    bsdf.inputs["Roughness"].default_value = 0.8
    return mat


def box(name, size, location, mat, collection):
    """A box mesh of `size` (x, y, z) centred on `location`."""
    sx, sy, sz = (s / 2 for s in size)
    verts = [(x * sx, y * sy, z * sz) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    collection.objects.link(obj)
    return obj


def build(path):
    reset()
    scene = bpy.context.scene
    top = scene.collection
    scene.frame_start, scene.frame_end = FRAMES
    scene.render.fps, scene.render.fps_base = FPS, 1.0

    ground = box("Ground", (8, 4, 0.5), (0, 0, -0.25), diffuse("Grey", (0.5, 0.5, 0.5, 1)), top)
    cube = box("Cube", (1.2, 1.2, 1.2), (0, 0, 2.8), diffuse("Orange", (1, 0.35, 0.05, 1)), top)
    cube.rotation_euler = (math.radians(25), math.radians(30), 0)

    # The rigid body world (and its collection) comes with the first rigid body.
    with bpy.context.temp_override(scene=scene, object=ground, active_object=ground,
                                   selected_objects=[ground]):
        bpy.ops.rigidbody.object_add(type="PASSIVE")
    with bpy.context.temp_override(scene=scene, object=cube, active_object=cube,
                                   selected_objects=[cube]):
        bpy.ops.rigidbody.object_add(type="ACTIVE")
    ground.rigid_body.restitution = 0.8
    cube.rigid_body.restitution = 0.8
    cube.rigid_body.collision_shape = "BOX"
    rbw = scene.rigidbody_world
    rbw.point_cache.frame_start, rbw.point_cache.frame_end = FRAMES

    cam_data = bpy.data.cameras.new("Camera")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = 8.0  # 8 x 6 units at 64 x 48 pixels
    cam = bpy.data.objects.new("Camera", cam_data)
    cam.location = (0, -10, 1.8)
    cam.rotation_euler = (math.radians(90), 0, 0)  # looking along +Y
    top.objects.link(cam)
    scene.camera = cam

    sun_data = bpy.data.lights.new("Sun", "SUN")
    sun_data.energy = 4.0
    sun = bpy.data.objects.new("Sun", sun_data)
    sun.rotation_euler = (math.radians(50), math.radians(20), math.radians(-30))
    top.objects.link(sun)

    world = bpy.data.worlds.new("World")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.05, 0.06, 0.1, 1)
    scene.world = world

    scene.frame_set(FRAMES[0])
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y, r.resolution_percentage = 64, 48, 100
    r.image_settings.file_format = "PNG"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    for view_layer in scene.view_layers:
        view_layer.cycles.use_denoising = False

    if rbw.point_cache.is_baked:
        print("rendermesh: error: sim_scene.py: the rigid body cache is baked", flush=True)
        sys.exit(2)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=path)
    print(f"rendermesh: saved {path}", flush=True)


build(out_path())
