"""rendermesh: render settings applied to the opened .blend before it renders.

Run by a rendermesh worker as

    blender -b --factory-startup -Y FILE.blend -E CYCLES -P settings.py -o ... -a -- [ARGS]

with ARGS (all optional):

    --samples N              Cycles samples per pixel
    --resolution-percent P   render resolution percentage
    --exact                  turn off what keeps tiles from stitching exactly (compositing,
                             sequencer, dither, adaptive sampling)
    --tile C R COLS ROWS     render only tile (C, R) of a COLS x ROWS grid, cropped; implies
                             --exact. Row 0 is the top row.
    --serve                  after applying the settings, render on request (see `serve`)
                             instead of letting `-a` render: one start-up for many tasks.

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
    parser.add_argument("--exact", action="store_true")
    parser.add_argument("--tile", type=int, nargs=4, metavar=("C", "R", "COLS", "ROWS"))
    parser.add_argument("--serve", action="store_true")
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
    if args.tile is not None:
        col, row, cols, rows = args.tile
        if cols < 1 or rows < 1 or not 0 <= col < cols or not 0 <= row < rows:
            fail(f"settings.py: --tile {col} {row} {cols} {rows} is not a tile of its grid")
    return args


def make_exact(scene):
    """Pixels that depend on nothing but their own samples: tiles then stitch exactly."""
    r = scene.render
    r.use_compositing = False
    r.use_sequencer = False
    r.dither_intensity = 0.0
    scene.cycles.use_adaptive_sampling = False


def edge(i, n, size):
    # The same formula as `rendermesh_scene::Tile::rect`: whole pixels, integer division.
    return i * size // n


def apply_tile(scene, col, row, cols, rows, width, height):
    """Renders only the tile's pixels, cropped, via the render border.

    Blender's border is in fractions of the frame with y counted from the bottom; an integer
    pixel edge `px` becomes `min((px + 0.5) / size, 1)` (plain `px / size` lands a pixel off on
    some edges).
    """
    if cols > width or rows > height:
        fail(f"a {cols}x{rows} tile grid does not fit a {width}x{height} frame")
    x0, x1 = edge(col, cols, width), edge(col + 1, cols, width)
    y0, y1 = edge(row, rows, height), edge(row + 1, rows, height)
    r = scene.render
    r.use_border = True
    r.use_crop_to_border = True
    r.border_min_x = min((x0 + 0.5) / width, 1.0)
    r.border_max_x = min((x1 + 0.5) / width, 1.0)
    r.border_min_y = min((height - y1 + 0.5) / height, 1.0)
    r.border_max_y = min((height - y0 + 0.5) / height, 1.0)
    print(
        f"{PREFIX} tile {col},{row} of {cols}x{rows}: pixels x {x0}..{x1}, y {y0}..{y1}",
        flush=True,
    )


def serve(scene, width, height):
    """Renders on request, one line of stdin each, until stdin closes or says `quit`.

        frame N PATH                 renders frame N whole and saves it as PATH
        tile C R COLS ROWS N PATH    renders tile (C, R) of frame N and saves it as PATH

    PATH is the rest of the line. The output format is the one set by `-F` before this script.
    After each saved file it prints `rendermesh: done N`; a failure ends Blender with status 2
    and a `rendermesh: error:` line, as for any settings error. The pixels are those `-a`
    would render: the frame is set the same way, and every other setting stays as applied.
    """
    print(f"{PREFIX} ready", flush=True)
    for line in sys.stdin:
        words = line.rstrip("\n").split(" ")
        try:
            if words[0] == "quit":
                break
            if words[0] == "frame" and len(words) >= 3:
                frame, path = int(words[1]), " ".join(words[2:])
            elif words[0] == "tile" and len(words) >= 7:
                col, row, cols, rows, frame = (int(w) for w in words[1:6])
                if cols < 1 or rows < 1 or not 0 <= col < cols or not 0 <= row < rows:
                    fail(f"tile {col} {row} {cols} {rows} is not a tile of its grid")
                apply_tile(scene, col, row, cols, rows, width, height)
                path = " ".join(words[6:])
            else:
                fail(f"serve: cannot read the request {line.strip()!r}")
        except ValueError:
            fail(f"serve: cannot read the request {line.strip()!r}")
        scene.frame_set(frame)
        scene.render.filepath = path
        try:
            bpy.ops.render.render(write_still=True)
        except RuntimeError as e:
            fail(f"frame {frame}: {e}".strip())
        print(f"{PREFIX} done {frame}", flush=True)


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
    if args.exact or args.tile is not None:
        make_exact(scene)
    if args.tile is not None:
        apply_tile(scene, *args.tile, width, height)
    print(
        f'{PREFIX} scene "{scene.name}": {r.engine} on {scene.cycles.device}, '
        f"{scene.cycles.samples} samples, {width}x{height} "
        f"({r.resolution_percentage}% of {r.resolution_x}x{r.resolution_y}), denoising off",
        flush=True,
    )
    if args.serve:
        serve(scene, width, height)


main()
