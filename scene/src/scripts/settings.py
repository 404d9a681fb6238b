"""rendermesh: render settings applied to the opened .blend before it renders.

Run by a rendermesh worker as

    blender -b --factory-startup -Y FILE.blend -E CYCLES -P settings.py -o ... -a -- [ARGS]

with ARGS (both optional):

    --samples N              Cycles samples per pixel
    --resolution-percent P   render resolution percentage

It forces Cycles on the CPU with denoising off (this Blender build has no OpenImageDenoise and
fails otherwise), makes Blender write every frame afresh under its plain name, and refuses,
with a readable line and a non-zero exit status, a scene that has no camera, rather than
letting Blender print an error and stop.
"""

import argparse
import sys

import bpy

PREFIX = "rendermesh:"


def fail(message):
    """Prints `rendermesh: error: MESSAGE` and ends Blender with status 2, at once.

    `sys.exit` raises SystemExit, which Blender's Python turns into a real process exit
    (unlike `bpy.ops.wm.quit_blender()`, which only queues a quit and lets the render run).
    """
    line = f"{PREFIX} error: {message}"
    print(line, flush=True)
    print(line, file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="settings.py", add_help=False)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--resolution-percent", type=int)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        fail(f"settings.py: unknown arguments {unknown}")
    if args.samples is not None and args.samples < 1:
        fail(f"settings.py: --samples must be at least 1, not {args.samples}")
    if args.resolution_percent is not None and not 1 <= args.resolution_percent <= 100:
        fail(
            "settings.py: --resolution-percent must be in 1..=100, "
            f"not {args.resolution_percent}"
        )
    return args


def has_camera(scene):
    # Blender 3.4 renders with the scene's active camera, or one bound to a timeline marker;
    # it does not fall back to other camera objects ("Error: Cannot render, no camera").
    return scene.camera is not None or any(m.camera for m in scene.timeline_markers)


def main():
    args = parse_args()
    scene = bpy.context.scene
    if not has_camera(scene):
        hint = ""
        if any(o.type == "CAMERA" for o in scene.objects):
            hint = " (it holds camera objects, but none is set as the scene's camera)"
        fail(f'scene "{scene.name}" has no camera{hint}')

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    if args.samples is not None:
        scene.cycles.samples = args.samples
    if args.resolution_percent is not None:
        scene.render.resolution_percentage = args.resolution_percent

    # Denoising off everywhere: Debian's Blender is built without OpenImageDenoise.
    scene.cycles.use_denoising = False
    scene.cycles.use_preview_denoising = False
    for view_layer in scene.view_layers:
        view_layer.cycles.use_denoising = False

    r = scene.render
    # Every expected file is written afresh, once per frame, under the name rendermesh expects:
    # a file saved with "Overwrite" off or "Placeholders" on would skip frames or leave empty
    # files, and stereo views would add a suffix per view.
    r.use_overwrite = True
    r.use_placeholder = False
    r.use_multiview = False

    width = r.resolution_x * r.resolution_percentage // 100
    height = r.resolution_y * r.resolution_percentage // 100
    print(
        f'{PREFIX} scene "{scene.name}": {r.engine} on {scene.cycles.device}, '
        f"{scene.cycles.samples} samples, {width}x{height} "
        f"({r.resolution_percentage}% of {r.resolution_x}x{r.resolution_y}), denoising off",
        flush=True,
    )


main()
