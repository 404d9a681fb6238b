"""rendermesh: builds a small example animation from scratch and saves it.

    blender -b --factory-startup -Y -P example_scene.py -- OUT.blend

Frames 1-24: a red cube turning and a blue sphere rolling past it on a grey floor, lit by a sun
and a blue-grey sky. Cycles on the CPU, 480x270 at 100%, 16 samples, denoising off.
"""

import math
import sys

import bpy
from mathutils import Vector

FRAMES = (1, 24)


def out_path():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    if len(argv) != 1:
        print("rendermesh: error: usage: example_scene.py -- OUT.blend", flush=True)
        sys.exit(2)
    return argv[0]


def clear():
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for datablocks in (bpy.data.meshes, bpy.data.materials, bpy.data.lights, bpy.data.cameras):
        for block in list(datablocks):
            datablocks.remove(block)


def material(name, rgb, roughness=0.5, metallic=0.0):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    mat.diffuse_color = (*rgb, 1.0)
    return mat


def mesh_object(name, op, mat, **kwargs):
    op(**kwargs)
    obj = bpy.context.active_object
    obj.name = name
    obj.data.materials.append(mat)
    return obj


def linear(obj):
    for fcurve in obj.animation_data.action.fcurves:
        for key in fcurve.keyframe_points:
            key.interpolation = "LINEAR"


def build(scene):
    start, end = FRAMES
    red = material("Red", (0.8, 0.08, 0.05), roughness=0.35)
    blue = material("Blue", (0.05, 0.2, 0.8), roughness=0.2, metallic=0.3)
    floor = material("Floor", (0.4, 0.4, 0.37), roughness=0.8)

    mesh_object("Floor", bpy.ops.mesh.primitive_plane_add, floor, size=20)

    cube = mesh_object(
        "Cube", bpy.ops.mesh.primitive_cube_add, red, size=1.6, location=(0, 0, 0.8)
    )
    cube.rotation_euler = (0, 0, 0)
    cube.keyframe_insert("rotation_euler", frame=start)
    cube.rotation_euler = (0, 0, math.radians(90))
    cube.keyframe_insert("rotation_euler", frame=end)
    linear(cube)

    sphere = mesh_object(
        "Sphere",
        bpy.ops.mesh.primitive_uv_sphere_add,
        blue,
        radius=0.6,
        location=(-2.5, -1.6, 0.6),
        segments=32,
        ring_count=16,
    )
    bpy.ops.object.shade_smooth()
    sphere.keyframe_insert("location", frame=start)
    sphere.location = (2.5, -1.6, 0.6)
    sphere.keyframe_insert("location", frame=end)
    linear(sphere)

    sun_data = bpy.data.lights.new("Sun", type="SUN")
    sun_data.energy = 3.0
    sun_data.angle = math.radians(10)
    sun = bpy.data.objects.new("Sun", sun_data)
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)

    cam_data = bpy.data.cameras.new("Camera")
    cam_data.lens = 40
    cam = bpy.data.objects.new("Camera", cam_data)
    cam.location = (6.5, -7.0, 4.2)
    direction = Vector((0, 0, 0.6)) - cam.location
    cam.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(cam)
    scene.camera = cam

    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (0.35, 0.45, 0.6, 1.0)
    background.inputs["Strength"].default_value = 0.6


def settings(scene):
    scene.frame_start, scene.frame_end = FRAMES
    scene.frame_set(FRAMES[0])
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y, r.resolution_percentage = 480, 270, 100
    r.image_settings.file_format = "PNG"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    for view_layer in scene.view_layers:
        view_layer.cycles.use_denoising = False


def main():
    out = out_path()
    scene = bpy.context.scene
    clear()
    build(scene)
    settings(scene)
    bpy.ops.wm.save_as_mainfile(filepath=out)
    print(f"rendermesh: saved example scene to {out}", flush=True)


main()
