"""rendermesh: builds a test animation that uses every kind of external file we ship.

    blender -b --factory-startup -Y -P deps_scene.py -- DIR

Writes, under DIR:

    DIR/proj/main.blend          frames 1-3, 96x64, Cycles on the CPU, 4 samples, denoising off
    DIR/proj/missing.blend       the same scene, but its relative texture is `//tex/gone.png`
                                 (an image datablock named `gone.png` whose file does not exist)
    DIR/proj/tex/a.png           a relative texture, named `//tex/a.png`
    DIR/abs/c.png                an absolute texture, named by its absolute path
    DIR/shared/b.png             a texture that climbs out of the project: `//../shared/b.png`
    DIR/proj/lib/lib.blend       a linked library, named `//lib/lib.blend`: its collection
                                 `LibCol` holds the plane `LibPlane`, instanced in main.blend
    DIR/proj/lib/tex/l.png       the library's own texture, named `//tex/l.png` relative to the
                                 library file (not to main.blend)
    DIR/proj/seq/s_0001.png ..   an image sequence (one colour per frame, frames 1-3), named
             s_0003.png          `//seq/s_0001.png`
    DIR/proj/fonts/font.ttf      a text object's font (DejaVu Sans Bold), `//fonts/font.ttf`

Each file is shown on a plane (or the text) of its own, seen from an orthographic camera through
an emission shader with Closest interpolation, so that a wrong or missing file changes pixels.
The sequence makes every frame differ from the others. No `.blend1` backups are written.

Layout seen by the camera (x to the right, y up, 16 pixels per unit):

    a.png     c.png     b.png
    s_000N    l.png     "Rm" (font.ttf)
"""

import os
import shutil
import sys

import bpy

FONT_SOURCE = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
FRAMES = (1, 3)
SEQUENCE_COLOURS = [(1, 0, 0, 1), (0, 1, 0, 1), (0, 0, 1, 1)]


def out_dir():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    if len(argv) != 1:
        print("rendermesh: error: usage: deps_scene.py -- DIR", flush=True)
        sys.exit(2)
    return os.path.abspath(argv[0])


def reset():
    """An empty file, and no `.blend1` backups (factory settings turn them back on)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0


def write_png(path, size, colour1, colour2, cells):
    """Writes a `size` x `size` PNG checkerboard of `cells` x `cells` squares."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = bpy.data.images.new("checker", size, size)
    pixels = []
    for y in range(size):
        for x in range(size):
            even = (x * cells // size + y * cells // size) % 2 == 0
            pixels.extend(colour1 if even else colour2)
    img.pixels = pixels
    img.filepath_raw = path
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def write_files(d):
    """The external files themselves, each with its own colours and checker size."""
    write_png(f"{d}/proj/tex/a.png", 32, (1, 0, 0, 1), (1, 1, 0, 1), 4)
    write_png(f"{d}/abs/c.png", 32, (0, 1, 0, 1), (0, 0, 1, 1), 4)
    write_png(f"{d}/shared/b.png", 32, (1, 0, 1, 1), (0, 1, 1, 1), 8)
    write_png(f"{d}/proj/lib/tex/l.png", 32, (1, 0.5, 0, 1), (0, 0, 0, 1), 2)
    for frame, colour in enumerate(SEQUENCE_COLOURS, start=1):
        write_png(f"{d}/proj/seq/s_{frame:04d}.png", 16, colour, (1, 1, 1, 1), 2)
    os.makedirs(f"{d}/proj/fonts", exist_ok=True)
    shutil.copyfile(FONT_SOURCE, f"{d}/proj/fonts/font.ttf")


def emission(name, image=None, colour=(1, 1, 1, 1)):
    """An emission material showing `image` (Closest interpolation) or a plain colour.

    Returns the material and its image texture node (None without an image).
    """
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    em = nodes.new("ShaderNodeEmission")
    links.new(em.outputs["Emission"], out.inputs["Surface"])
    tex = None
    if image is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.interpolation = "Closest"
        links.new(tex.outputs["Color"], em.inputs["Color"])
    else:
        em.inputs["Color"].default_value = colour
    return mat, tex


def plane(name, location, mat, collection):
    mesh = bpy.data.meshes.new(name)
    h = 0.9  # 1.8 units wide on a 2-unit grid: a gap of 0.2 between neighbours
    mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
    mesh.uv_layers.new(name="UVMap")
    uv = mesh.uv_layers["UVMap"].data
    for i, (u, v) in enumerate([(0, 0), (1, 0), (1, 1), (0, 1)]):
        uv[i].uv = (u, v)
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    collection.objects.link(obj)
    return obj


def build_library(d):
    """DIR/proj/lib/lib.blend: collection `LibCol` with a plane showing `//tex/l.png`."""
    reset()
    bpy.ops.wm.save_as_mainfile(filepath=f"{d}/proj/lib/lib.blend")
    image = bpy.data.images.load("//tex/l.png")  # relative to lib.blend
    col = bpy.data.collections.new("LibCol")
    bpy.context.scene.collection.children.link(col)
    plane("LibPlane", (0, 0, 0), emission("LibMat", image)[0], col)
    bpy.ops.wm.save_mainfile()


def build_main(d):
    """DIR/proj/main.blend, then DIR/proj/missing.blend from it."""
    reset()
    bpy.ops.wm.save_as_mainfile(filepath=f"{d}/proj/main.blend")
    scene = bpy.context.scene
    top = scene.collection

    # Textures named three ways: relative, absolute outside the project, climbing with `..`.
    a = bpy.data.images.load("//tex/a.png")
    c = bpy.data.images.load(f"{d}/abs/c.png")
    b = bpy.data.images.load("//../shared/b.png")
    plane("A", (-2, 1, 0), emission("MatA", a)[0], top)
    plane("C", (0, 1, 0), emission("MatC", c)[0], top)
    plane("B", (2, 1, 0), emission("MatB", b)[0], top)

    # An image sequence: frame N of the scene shows s_000N.png.
    seq = bpy.data.images.load("//seq/s_0001.png")
    seq.source = "SEQUENCE"
    mat, tex = emission("MatS", seq)
    tex.image_user.frame_start = FRAMES[0]
    tex.image_user.frame_duration = FRAMES[1] - FRAMES[0] + 1
    tex.image_user.frame_offset = 0
    tex.image_user.use_auto_refresh = True
    plane("S", (-2, -1, 0), mat, top)

    # The library's collection, linked and instanced where the camera sees it.
    with bpy.data.libraries.load("//lib/lib.blend", link=True, relative=True) as (src, dst):
        dst.collections = ["LibCol"]
    inst = bpy.data.objects.new("LibInstance", None)
    inst.instance_type = "COLLECTION"
    inst.instance_collection = dst.collections[0]
    inst.location = (0, -1, 0)
    top.objects.link(inst)

    # A text object in its own font.
    font = bpy.data.fonts.load("//fonts/font.ttf")
    curve = bpy.data.curves.new("Text", "FONT")
    curve.body = "Rm"
    curve.font = font
    curve.align_x, curve.align_y = "CENTER", "CENTER"
    curve.size = 1.3
    curve.materials.append(emission("MatText", colour=(0.9, 0.9, 0.9, 1))[0])
    text = bpy.data.objects.new("Text", curve)
    text.location = (2, -1, 0)
    top.objects.link(text)

    cam_data = bpy.data.cameras.new("Camera")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = 6.0  # 6 x 4 units at 96 x 64 pixels
    cam = bpy.data.objects.new("Camera", cam_data)
    cam.location = (0, 0, 10)  # looking down -Z
    top.objects.link(cam)
    scene.camera = cam

    scene.frame_start, scene.frame_end = FRAMES
    scene.frame_set(FRAMES[0])
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y, r.resolution_percentage = 96, 64, 100
    r.image_settings.file_format = "PNG"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    for view_layer in scene.view_layers:
        view_layer.cycles.use_denoising = False
    bpy.ops.wm.save_mainfile()
    print(f"rendermesh: saved {bpy.data.filepath}", flush=True)

    # missing.blend: the relative texture now names a file that does not exist.
    a.name = "gone.png"
    a.filepath = "//tex/gone.png"
    bpy.ops.wm.save_as_mainfile(filepath=f"{d}/proj/missing.blend", copy=True)
    print(f"rendermesh: saved {d}/proj/missing.blend", flush=True)


def main():
    d = out_dir()
    write_files(d)
    build_library(d)
    build_main(d)


main()
