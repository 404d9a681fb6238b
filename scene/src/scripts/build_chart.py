"""rendermesh: builds a chart scene from rendermesh's scene XML, then saves and/or renders it.

Run as

    blender -b --factory-startup -Y --python-exit-code 2 -P build_chart.py -- SCENE.xml \
        [--save OUT.blend] [--render OUT.png] [--samples N] \
        [--inspect REPORT.json --inspect-script inspect.py]

SCENE.xml is written by `rendermesh_scene::chart::to_xml` (close to Cycles' XML format; Blender
axes, Z up). The factory scene's objects are removed; the chart's meshes, shaders (Cycles'
diffuse, glossy and glass BSDFs), world, sun and camera are built; Cycles on the CPU renders one
frame at 100 % of the XML's size, with denoising (this Blender has no OpenImageDenoise),
compositing, sequencer, dither and adaptive sampling off, so that a tiled render of the saved
file equals its whole-frame render pixel for pixel. Any problem prints
`rendermesh: error: ...` and ends Blender with status 2.

With `--inspect`, once everything else is done, the saved file is opened again as a fresh
Blender would open it (its own Python kept from running) and `inspect.py` writes its report on
it: the submitting side needs no second Blender start (about 2 s) to learn what it already made.
"""

import argparse
import math
import os
import runpy
import sys
import xml.etree.ElementTree as ET

import bpy
from mathutils import Matrix, Vector

PREFIX = "rendermesh:"
# The chart font: Blender's own DejaVu Sans from its datafiles (the font of its interface). The
# font compiled into Blender draws Latin-1 only; it stands in when the file is missing.
# scene/src/chart/font_table.rs holds this font's advances, measured by scripts/chart-font-table.
FONT_FILE = "DejaVuSans.woff2"


def fail(message):
    line = f"{PREFIX} error: {message}"
    print(line, flush=True)
    print(line, file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="build_chart.py", add_help=False)
    parser.add_argument("scene")
    parser.add_argument("--save")
    parser.add_argument("--render")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--inspect")
    parser.add_argument("--inspect-script")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        fail(f"build_chart.py: unknown arguments {unknown}")
    if (args.inspect is None) != (args.inspect_script is None) or (args.inspect and not args.save):
        fail("build_chart.py: --inspect needs --inspect-script and --save")
    return args


def floats(text, n=None, what="numbers"):
    try:
        values = [float(x) for x in text.split()]
    except (AttributeError, ValueError):
        fail(f"scene XML: {what} are not numbers: {text!r:.80}")
    if n is not None and len(values) != n:
        fail(f"scene XML: {what}: expected {n} numbers, found {len(values)}")
    return values


def ints(text, what):
    try:
        return [int(x) for x in text.split()]
    except (AttributeError, ValueError):
        fail(f"scene XML: {what} are not whole numbers")


def clear_scene():
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for collection in (bpy.data.meshes, bpy.data.materials, bpy.data.cameras, bpy.data.lights):
        for block in list(collection):
            collection.remove(block)


def setup_render(scene, film, samples):
    width = int(film.get("width", "0"))
    height = int(film.get("height", "0"))
    if width < 1 or height < 1:
        fail(f"scene XML: film size {width}x{height} is not an image size")
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x = width
    r.resolution_y = height
    r.resolution_percentage = 100
    r.use_border = False
    r.use_compositing = False
    r.use_sequencer = False
    r.dither_intensity = 0.0
    r.film_transparent = False
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    r.image_settings.color_depth = "8"
    scene.frame_start = 1
    scene.frame_end = 1
    scene.frame_set(1)
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples if samples is not None else int(film.get("samples", "64"))
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    for view_layer in scene.view_layers:
        view_layer.cycles.use_denoising = False
    # Colours as written in the chart file: no filmic tone curve.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"


def setup_world(scene, background):
    node = background.find("background")
    if node is None:
        fail("scene XML: <background> has no background shader")
    world = bpy.data.worlds.new("chart-world")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (*floats(node.get("color"), 3, "background color"), 1.0)
    bg.inputs["Strength"].default_value = float(node.get("strength", "1"))
    scene.world = world


def add_sun(scene, light):
    data = bpy.data.lights.new("chart-sun", type="SUN")
    data.energy = float(light.get("strength", "2.5"))
    data.angle = math.radians(5.0)
    obj = bpy.data.objects.new("chart-sun", data)
    direction = Vector(floats(light.get("dir"), 3, "light direction"))
    # A sun shines down its local -Z.
    obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(obj)


def add_camera(scene, transform):
    node = transform.find("camera")
    if node is None:
        fail("scene XML: <transform> holds no <camera>")
    m = floats(transform.get("matrix"), 16, "camera matrix")
    data = bpy.data.cameras.new("chart-camera")
    kind = node.get("type", "perspective")
    if kind == "orthographic":
        data.type = "ORTHO"
        data.ortho_scale = float(node.get("ortho_scale"))
    elif kind == "perspective":
        data.type = "PERSP"
        data.sensor_fit = "AUTO"
        data.angle = math.radians(float(node.get("fov")))
    else:
        fail(f"scene XML: unknown camera type {kind!r}")
    data.clip_start = float(node.get("nearclip", "0.01"))
    data.clip_end = float(node.get("farclip", "1000"))
    obj = bpy.data.objects.new("chart-camera", data)
    obj.matrix_world = Matrix([m[0:4], m[4:8], m[8:12], m[12:16]])
    scene.collection.objects.link(obj)
    scene.camera = obj


def make_material(shader):
    name = shader.get("name")
    nodes_in = [n for n in shader if n.tag not in ("connect", "attribute")]
    if len(nodes_in) != 1:
        fail(f"scene XML: shader {name!r} must hold exactly one BSDF")
    bsdf = nodes_in[0]
    # A surface's colour comes from its vertices' colour attribute.
    attribute = shader.find("attribute")
    color = (*floats(bsdf.get("color"), 3, f"shader {name} color"), 1.0)
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    tree = mat.node_tree
    for node in list(tree.nodes):
        tree.nodes.remove(node)
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    distribution = {"beckmann": "BECKMANN", "sharp": "SHARP"}
    colored = None  # the node whose "Color" input takes the chart's colour
    if bsdf.tag == "diffuse_bsdf":
        node = tree.nodes.new("ShaderNodeBsdfDiffuse")
        node.inputs["Color"].default_value = color
        node.inputs["Roughness"].default_value = float(bsdf.get("roughness", "0"))
        tree.links.new(node.outputs["BSDF"], out.inputs["Surface"])
        colored = node
    elif bsdf.tag == "glossy_bsdf":
        # A coloured base under a clear glossy coat, mixed by Fresnel at the chart's IOR:
        # the look of lacquer or plastic rather than of a tinted mirror.
        base = tree.nodes.new("ShaderNodeBsdfDiffuse")
        base.inputs["Color"].default_value = color
        coat = tree.nodes.new("ShaderNodeBsdfGlossy")
        coat.distribution = distribution[bsdf.get("distribution", "beckmann")]
        coat.inputs["Roughness"].default_value = float(bsdf.get("roughness", "0"))
        fresnel = tree.nodes.new("ShaderNodeFresnel")
        fresnel.inputs["IOR"].default_value = float(bsdf.get("ior", "1.45"))
        mix = tree.nodes.new("ShaderNodeMixShader")
        tree.links.new(fresnel.outputs["Fac"], mix.inputs["Fac"])
        tree.links.new(base.outputs["BSDF"], mix.inputs[1])
        tree.links.new(coat.outputs["BSDF"], mix.inputs[2])
        tree.links.new(mix.outputs["Shader"], out.inputs["Surface"])
        colored = base
    elif bsdf.tag == "glass_bsdf":
        node = tree.nodes.new("ShaderNodeBsdfGlass")
        node.distribution = distribution[bsdf.get("distribution", "beckmann")]
        node.inputs["Color"].default_value = color
        node.inputs["Roughness"].default_value = float(bsdf.get("roughness", "0"))
        node.inputs["IOR"].default_value = float(bsdf.get("IOR", "1.45"))
        tree.links.new(node.outputs["BSDF"], out.inputs["Surface"])
        colored = node
    else:
        fail(f"scene XML: unknown shader node <{bsdf.tag}> in {name!r}")
    if attribute is not None:
        source = tree.nodes.new("ShaderNodeAttribute")
        source.attribute_name = attribute.get("attribute", "Col")
        tree.links.new(source.outputs["Color"], colored.inputs["Color"])
    mat.diffuse_color = color
    return mat


def add_mesh(scene, state, materials):
    shader = state.get("shader")
    if shader not in materials:
        fail(f"scene XML: mesh uses unknown shader {shader!r}")
    for node in state.findall("mesh"):
        name = node.get("name", shader)
        p = floats(node.get("P"), None, f"mesh {name} points")
        if len(p) % 3:
            fail(f"scene XML: mesh {name}: point list is not a list of triples")
        verts = [tuple(p[i : i + 3]) for i in range(0, len(p), 3)]
        counts = ints(node.get("nverts", ""), f"mesh {name} face sizes")
        indices = ints(node.get("verts", ""), f"mesh {name} face corners")
        if sum(counts) != len(indices) or any(i < 0 or i >= len(verts) for i in indices):
            fail(f"scene XML: mesh {name}: faces do not match its points")
        faces, at = [], 0
        for n in counts:
            faces.append(indices[at : at + n])
            at += n
        normals = floats(node.get("N", ""), None, f"mesh {name} normals")
        colors = floats(node.get("C", ""), None, f"mesh {name} colours")
        for what, values in (("normals", normals), ("colours", colors)):
            if values and len(values) != len(p):
                fail(f"scene XML: mesh {name}: {what} do not match its points")
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata(verts, [], faces)
        mesh.validate()
        if colors:
            layer = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
            rgba = []
            for i in range(0, len(colors), 3):
                rgba.extend((colors[i], colors[i + 1], colors[i + 2], 1.0))
            layer.data.foreach_set("color", rgba)
        if normals:
            # Smooth shading with the height field's own normals.
            mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))
            mesh.use_auto_smooth = True
            mesh.normals_split_custom_set_from_vertices(
                [tuple(normals[i : i + 3]) for i in range(0, len(normals), 3)]
            )
        mesh.materials.append(materials[shader])
        obj = bpy.data.objects.new(name, mesh)
        scene.collection.objects.link(obj)


def chart_font():
    """The chart font (None: Blender's compiled-in one) and its cap height at size 1."""
    fonts = bpy.utils.system_resource("DATAFILES", path="fonts")
    path = os.path.join(fonts, FONT_FILE) if fonts else ""
    font = None
    if os.path.isfile(path):
        font = bpy.data.fonts.load(path, check_existing=True)
    else:
        print(f"{PREFIX} warning: {FONT_FILE} is not in Blender's datafiles; "
              "texts use its compiled-in font", flush=True)
    curve = bpy.data.curves.new("chart-font-probe", type="FONT")
    curve.body = "H"
    curve.size = 1.0
    curve.align_y = "BOTTOM_BASELINE"
    if font is not None:
        curve.font = font
    probe = bpy.data.objects.new("chart-font-probe", curve)
    bpy.context.scene.collection.objects.link(probe)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = bpy.data.meshes.new_from_object(probe.evaluated_get(depsgraph))
    cap = max((v.co.y for v in mesh.vertices), default=0.0)
    bpy.data.meshes.remove(mesh)
    bpy.data.objects.remove(probe, do_unlink=True)
    bpy.data.curves.remove(curve)
    if cap <= 0.0:
        fail("the chart font draws nothing for \"H\"")
    return font, cap


def add_texts(scene, states, materials):
    """Each <text> becomes a text object in the chart font, then a mesh: the saved scene
    holds meshes only, with no reference to a font file."""
    pending = []
    for state in states:
        shader = state.get("shader")
        if shader not in materials:
            fail(f"scene XML: text uses unknown shader {shader!r}")
        for node in state.findall("text"):
            pending.append((node, materials[shader]))
    if not pending:
        return 0
    font, cap = chart_font()
    aligns = {"left": "LEFT", "center": "CENTER", "right": "RIGHT"}
    made = []
    for node, material in pending:
        name = node.get("name", "text")
        align = node.get("align", "left")
        if align not in aligns:
            fail(f"scene XML: text {name}: unknown align {align!r}")
        size = floats(node.get("size"), 1, f"text {name} size")[0]
        depth = floats(node.get("depth", "0"), 1, f"text {name} depth")[0]
        m = floats(node.get("matrix"), 16, f"text {name} matrix")
        curve = bpy.data.curves.new(name, type="FONT")
        curve.body = node.get("body", "")
        if font is not None:
            curve.font = font
        # Sizes are cap heights: the font is scaled so that "H" is exactly `size` tall.
        curve.size = size / cap
        curve.align_x = aligns[align]
        curve.align_y = "BOTTOM_BASELINE"
        curve.extrude = depth / 2.0 / curve.size
        obj = bpy.data.objects.new(name, curve)
        scene.collection.objects.link(obj)
        made.append((obj, material, Matrix([m[0:4], m[4:8], m[8:12], m[12:16]])))
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for obj, material, matrix in made:
        name, curve = obj.name, obj.data
        mesh = bpy.data.meshes.new_from_object(obj.evaluated_get(depsgraph))
        mesh.name = name
        mesh.materials.clear()
        mesh.materials.append(material)
        bpy.data.objects.remove(obj, do_unlink=True)
        bpy.data.curves.remove(curve)
        text = bpy.data.objects.new(name, mesh)
        text.matrix_world = matrix
        scene.collection.objects.link(text)
    if font is not None:
        bpy.data.fonts.remove(font)
    return len(made)


def main():
    args = parse_args()
    try:
        root = ET.parse(args.scene).getroot()
    except (OSError, ET.ParseError) as e:
        fail(f"cannot read the scene XML {args.scene}: {e}")
    if root.tag != "cycles":
        fail(f"scene XML: the root is <{root.tag}>, expected <cycles>")
    if args.samples is not None and args.samples < 1:
        fail(f"--samples must be at least 1, not {args.samples}")

    clear_scene()
    scene = bpy.context.scene
    film = root.find("film")
    if film is None:
        fail("scene XML: no <film>")
    setup_render(scene, film, args.samples)
    background = root.find("background")
    if background is not None:
        setup_world(scene, background)
    for light in root.findall("light"):
        add_sun(scene, light)
    transform = root.find("transform")
    if transform is None:
        fail("scene XML: no camera <transform>")
    add_camera(scene, transform)
    materials = {s.get("name"): make_material(s) for s in root.findall("shader")}
    states = root.findall("state")
    meshes = [s for s in states if s.find("mesh") is not None]
    for state in meshes:
        add_mesh(scene, state, materials)
    texts = add_texts(scene, [s for s in states if s.find("text") is not None], materials)

    r = scene.render
    print(
        f"{PREFIX} chart scene: {len(meshes)} meshes, {texts} texts, "
        f"{len(materials)} materials, {r.resolution_x}x{r.resolution_y}, "
        f"{scene.cycles.samples} samples",
        flush=True,
    )
    if args.save:
        bpy.ops.wm.save_as_mainfile(filepath=args.save, compress=False, check_existing=False)
        print(f"{PREFIX} saved {args.save}", flush=True)
    if args.render:
        r.filepath = args.render
        r.use_file_extension = False
        bpy.ops.render.render(write_still=True)
        print(f"{PREFIX} rendered {args.render}", flush=True)
    if args.inspect:
        inspect_saved(args.save, args.inspect, args.inspect_script)


def inspect_saved(blend, report, script):
    """Opens `blend` again, as `blender -b -Y BLEND` would, and runs inspect.py on it."""
    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False, use_scripts=False)
    sys.argv = [sys.argv[0], "--", report]
    runpy.run_path(script, run_name="__main__")


main()
