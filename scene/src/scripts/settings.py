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
    --root ROOT              the job's files are laid out under ROOT by their original absolute
                             paths (`/home/u/tex/a.png` is at `ROOT/home/u/tex/a.png`, the .blend
                             itself too): re-root every external path of the file under ROOT
                             before anything renders (see `reroot`), then print
                             `rendermesh: files: N external files re-rooted under ROOT`.
    --allow-missing          warn about missing external files instead of failing.
    --spare                  Blender was started with no file: wait for one (see
                             `open_requested`), then go on as if it had been opened with the
                             ARGS the request gives.

It forces Cycles on the CPU with denoising off (this Blender build has no OpenImageDenoise and
fails otherwise), makes Blender write every frame afresh under its plain name, and refuses,
with a readable line and a non-zero exit status, a scene that has no camera, rather than
letting Blender print an error and stop.

Before rendering it checks that every external file the render reads exists (the same list as
inspect.py's `files`). If any is missing it fails with status 2 and the lines

    rendermesh: error: N missing external files           ("1 missing external file")
    rendermesh: error: missing file PATH (named "NAMED") used by KIND "USER"
    ...                                                   (one line per missing file)

where PATH is the file's original path (without the ROOT prefix). With --allow-missing each
missing file is a line `rendermesh: warning: missing file PATH (named "NAMED") used by KIND
"USER"` instead, and the render goes on (Blender renders a missing texture magenta).
"""

# ---- BEGIN SHARED: external files (keep identical in inspect.py and settings.py) ----
#
# Both scripts run alone with `-P` (rendermesh embeds each as text), so they cannot import each
# other: this block is copied verbatim into both. Measured with Blender 3.4:
#
# - Every library's `filepath`, indirect ones included, is relative to the MAIN file: Blender
#   rewrites an indirect library's path (stored relative to its parent library) on load. So a
#   library path resolves against the main file, never against `lib.parent`.
# - A datablock linked from a library names `//` paths relative to that library's file.
# - Point caches on disk live in `//blendcache_<blend name>/` next to the file that owns the
#   object (the library's when linked, unless `use_library_path` is off), as
#   `<cache name, or the object's name in hex>_<frame, 6 digits>_<index, 2 digits>.bphys`.
#   A rigid body world keeps its cache in memory (setting its `use_disk_cache` crashes 3.4).
# - A fluid domain's `cache_directory` (default `//cache_fluid_<hex>`) resolves against the file
#   that owns the object.

import os
import posixpath
import re

import bpy

BUILTIN_FONT = "<builtin>"


def normalise(path):
    """`posixpath.normpath`, with the POSIX "two leading slashes" kept as one."""
    path = posixpath.normpath(path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path


def main_file():
    return normalise(bpy.path.abspath(bpy.data.filepath))


def resolve_against(named, owner_file):
    """Resolves a datablock path the way Blender does: `//` is the directory of `owner_file`
    (the .blend that names the path); an absolute path stays; any other relative path is
    relative to the working directory. Normalised, so `..` never climbs above `/`."""
    if named.startswith("//"):
        return normalise(posixpath.dirname(owner_file) + "/" + named[2:])
    return normalise(os.path.abspath(named))


def library_file(lib):
    """A library's resolved path (library paths are all relative to the main file)."""
    return resolve_against(lib.filepath, main_file())


def owner_file(library):
    """The .blend whose datablocks name paths relative to it: the library's, or the main one."""
    return main_file() if library is None else library_file(library)


def resolve(named, library):
    return resolve_against(named, owner_file(library))


class Slot:
    """One path held by a datablock: what `inspect` lists and `--root` rewrites.

    kind      one of the kinds listed in inspect.py's docstring
    user      the datablock's name ("object / modifier" for caches)
    library   the Library whose file `//` is relative to, or None for the main file
    named     the raw path string as the datablock holds it
    setter    sets the raw path (None: the path cannot or need not be rewritten)
    expand    resolved path -> the concrete files it stands for (None: just that one file)
    """

    def __init__(self, kind, user, library, named, setter=None, expand=None):
        self.kind, self.user, self.library, self.named = kind, user, library, named
        self.setter, self.expand = setter, expand

    def files(self):
        resolved = resolve(self.named, self.library)
        return self.expand(resolved) if self.expand else [resolved]


def setter_of(obj, attr):
    """A setter writing `obj.attr`."""

    def set_path(value):
        setattr(obj, attr, value)

    return set_path


def is_packed(idb):
    if getattr(idb, "packed_file", None) is not None:
        return True
    return len(getattr(idb, "packed_files", ())) > 0


def files_in(directory, pattern=None):
    """The files directly in `directory` whose name fully matches `pattern` (all if None)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(
        directory + "/" + name
        for name in names
        if (pattern is None or pattern.fullmatch(name))
        and os.path.isfile(directory + "/" + name)
    )


def files_under(directory):
    """Every file below `directory`, recursively."""
    found = []
    for top, dirs, names in os.walk(directory):
        dirs.sort()
        found.extend(normalise(top + "/" + name) for name in sorted(names))
    return found


def sequence_expander(required_frames=()):
    """Expands the path of one frame of a sequence (`s_0001.png`) into every file of the
    directory with the same text around the last digits of the name (Blender's rule), plus the
    files of `required_frames` (which may be missing). A path whose name has no digits, or
    whose sequence has no file at all, stands for itself."""

    def expand(resolved):
        directory, name = posixpath.split(resolved)
        m = re.match(r"^(.*?)(\d+)(\D*)$", name)
        if not m:
            return [resolved]
        head, digits, tail = m.groups()
        found = files_in(directory, re.compile(re.escape(head) + r"\d+" + re.escape(tail)))
        for frame in required_frames:
            if frame >= 0:
                path = f"{directory}/{head}{frame:0{len(digits)}d}{tail}"
                if path not in found:
                    found.append(path)
        return sorted(found) or [resolved]

    return expand


def udim_expander(image):
    """Expands a tiled image's `<UDIM>` / `<UVTILE>` path into one file per tile. Tiles that
    exist are listed with the missing ones; when no tile exists, the token path stands alone."""

    def expand(resolved):
        if "<UDIM>" not in resolved and "<UVTILE>" not in resolved:
            return [resolved]
        paths = []
        for tile in image.tiles:
            n = tile.number
            uvtile = f"u{(n - 1001) % 10 + 1}_v{(n - 1001) // 10 + 1}"
            paths.append(resolved.replace("<UDIM>", str(n)).replace("<UVTILE>", uvtile))
        if not any(os.path.isfile(p) for p in paths):
            return [resolved]
        return paths

    return expand


def node_trees():
    """(owner ID, node tree) for every node tree, embedded or not."""
    for datablocks in (
        bpy.data.materials,
        bpy.data.worlds,
        bpy.data.lights,
        bpy.data.textures,
        bpy.data.scenes,
        bpy.data.linestyles,
    ):
        for idb in datablocks:
            if getattr(idb, "node_tree", None) is not None:
                yield idb, idb.node_tree
    for group in bpy.data.node_groups:
        yield group, group


def image_user_frame(cfra, start, duration, offset, cyclic):
    """The image frame an auto-refreshing image user shows at scene frame `cfra`, or None when
    the frame is outside the user's range (measured against Blender 3.4's evaluated users)."""
    if duration <= 0:
        return None
    frame = cfra - start + 1
    if cyclic:
        frame = frame % duration or duration
    elif not 1 <= frame <= duration:
        return None
    return frame + offset


def sequence_frames_used(scene):
    """Image pointer -> the image frames its auto-refreshing users show over the scene's range.

    Covers image users of shader/compositor nodes and image textures; a sequence used only
    elsewhere (e.g. by geometry nodes) lists the files that exist."""
    users = []
    for _owner, tree in node_trees():
        for node in tree.nodes:
            image = getattr(node, "image", None)
            if image is None:
                continue
            iu = getattr(node, "image_user", None)
            if iu is None and node.bl_idname == "CompositorNodeImage":
                iu = node  # the compositor's Image node holds its image user's settings
            if iu is not None:
                users.append((image, iu))
    for tex in bpy.data.textures:
        if getattr(tex, "image", None) is not None:
            users.append((tex.image, tex.image_user))
    frames = {}
    scene_frames = range(scene.frame_start, scene.frame_end + 1, max(scene.frame_step, 1))
    for image, iu in users:
        if image.source != "SEQUENCE" or not iu.use_auto_refresh:
            continue
        used = frames.setdefault(image.as_pointer(), set())
        for cfra in scene_frames:
            frame = image_user_frame(
                cfra, iu.frame_start, iu.frame_duration, iu.frame_offset, iu.use_cyclic
            )
            if frame is not None:
                used.add(frame)
    return frames


def point_cache_prefix(obj, item):
    if item.name or item.use_external:
        return item.name
    return obj.name.encode("utf-8").hex().upper()


def point_cache_slots(obj):
    """Disk point caches of cloth, soft body, particle systems and dynamic paint surfaces."""
    caches = []
    for md in obj.modifiers:
        if md.type in ("CLOTH", "SOFT_BODY"):
            caches.append((md, md.point_cache))
        elif md.type == "PARTICLE_SYSTEM":
            caches.append((md, md.particle_system.point_cache))
        elif md.type == "DYNAMIC_PAINT" and md.canvas_settings is not None:
            for surface in md.canvas_settings.canvas_surfaces:
                caches.append((md, surface.point_cache))
    for md, cache in caches:
        for item in cache.point_caches:
            if not item.use_disk_cache:
                continue  # a memory cache is saved inside the .blend
            prefix = point_cache_prefix(obj, item)
            pattern = re.compile(re.escape(prefix) + r"_\d+(_\d+)?\.bphys")

            def expand(directory, item=item, prefix=prefix, pattern=pattern):
                found = files_in(directory, pattern)
                if not found and item.is_baked:
                    found = [f"{directory}/{prefix}_{item.frame_start:06d}_{item.index:02d}.bphys"]
                return found

            user = f"{obj.name} / {md.name}"
            if item.use_external:
                if not item.filepath:
                    continue
                # An external cache directory is relative to the main file.
                yield Slot("point cache", user, None, item.filepath,
                           setter_of(item, "filepath"), expand)
            else:
                # `//blendcache_<name>/` next to its owner file: it moves with that file.
                library = obj.library if item.use_library_path else None
                name = posixpath.basename(owner_file(library))
                stem = name[:-6] if len(name) > 6 else name
                yield Slot("point cache", user, library, f"//blendcache_{stem}/", None, expand)


def modifier_slots(obj):
    """Paths held by an object's modifiers: fluid caches, point caches, mesh and ocean caches."""
    lib = obj.library
    for md in obj.modifiers:
        user = f"{obj.name} / {md.name}"
        if md.type == "FLUID" and md.fluid_type == "DOMAIN" and md.domain_settings.cache_directory:
            ds = md.domain_settings

            def expand(directory, ds=ds):
                found = files_under(directory)
                return found or ([directory] if ds.has_cache_baked_any else [])

            yield Slot("fluid cache", user, lib, ds.cache_directory,
                       setter_of(ds, "cache_directory"), expand)
        elif md.type == "MESH_CACHE" and md.filepath:
            yield Slot("cache", user, lib, md.filepath, setter_of(md, "filepath"))
        elif md.type == "OCEAN" and md.filepath:

            def expand(directory, md=md):
                return files_under(directory) if md.is_cached else []

            yield Slot("other", user, lib, md.filepath, setter_of(md, "filepath"), expand)
    yield from point_cache_slots(obj)


def path_slots(scene):
    """Every external path of the open file, libraries first (see `Slot`)."""
    for lib in bpy.data.libraries:
        if lib.packed_file is None:
            # Relative to the main file even when indirect (see the notes above).
            yield Slot("library", lib.name, None, lib.filepath)

    frames_used = sequence_frames_used(scene)
    for image in bpy.data.images:
        if image.source in ("GENERATED", "VIEWER") or not image.filepath or is_packed(image):
            continue
        if image.source == "SEQUENCE":
            kind = "image sequence"
            expand = sequence_expander(sorted(frames_used.get(image.as_pointer(), ())))
        elif image.source == "TILED":
            kind, expand = "udim tile", udim_expander(image)
        elif image.source == "MOVIE":
            kind, expand = "movie", None
        else:
            kind, expand = "image", None
        yield Slot(kind, image.name, image.library, image.filepath,
                   setter_of(image, "filepath"), expand)

    for font in bpy.data.fonts:
        if font.filepath and font.filepath != BUILTIN_FONT and not is_packed(font):
            yield Slot("font", font.name, font.library, font.filepath, setter_of(font, "filepath"))
    for sound in bpy.data.sounds:
        if sound.filepath and not is_packed(sound):
            yield Slot("sound", sound.name, sound.library, sound.filepath,
                       setter_of(sound, "filepath"))
    for text in bpy.data.texts:
        if text.filepath and not text.is_in_memory:
            yield Slot("text", text.name, text.library, text.filepath, setter_of(text, "filepath"))
    for volume in bpy.data.volumes:
        if volume.filepath and not is_packed(volume):
            yield Slot("volume", volume.name, volume.library, volume.filepath,
                       setter_of(volume, "filepath"),
                       sequence_expander() if volume.is_sequence else None)
    for cache in bpy.data.cache_files:
        expand = sequence_expander() if cache.is_sequence else None
        if cache.filepath:
            yield Slot("cache", cache.name, cache.library, cache.filepath,
                       setter_of(cache, "filepath"), expand)
        for layer in cache.layers:
            if layer.filepath:
                yield Slot("cache", cache.name, cache.library, layer.filepath,
                           setter_of(layer, "filepath"), expand)
    for clip in bpy.data.movieclips:
        if clip.filepath:
            yield Slot("movie clip", clip.name, clip.library, clip.filepath,
                       setter_of(clip, "filepath"),
                       sequence_expander() if clip.source == "SEQUENCE" else None)

    # Files named by shader nodes: IES light profiles and OSL scripts.
    for owner, tree in node_trees():
        for node in tree.nodes:
            if node.bl_idname in ("ShaderNodeTexIES", "ShaderNodeScript"):
                if node.mode == "EXTERNAL" and node.filepath:
                    yield Slot("other", f"{owner.name} / {node.name}", owner.library,
                               node.filepath, setter_of(node, "filepath"))

    for obj in bpy.data.objects:
        yield from modifier_slots(obj)

    # Sequencer strips (a sound strip's file is its sound datablock's, above).
    for sc in bpy.data.scenes:
        if sc.sequence_editor is None:
            continue
        for strip in sc.sequence_editor.sequences_all:
            if strip.type == "IMAGE" and strip.directory:

                def expand(directory, strip=strip):
                    return [normalise(directory + "/" + e.filename) for e in strip.elements]

                kind = "image sequence" if len(strip.elements) > 1 else "image"
                def set_directory(value, strip=strip):
                    strip.directory = value.rstrip("/") + "/"

                yield Slot(kind, strip.name, sc.library, strip.directory, set_directory, expand)
            elif strip.type == "MOVIE" and strip.filepath:
                yield Slot("movie", strip.name, sc.library, strip.filepath,
                           setter_of(strip, "filepath"))


def external_files(scene):
    """The concrete external files the render may read, as inspect.py writes them: a list of
    {"path", "named", "kind", "user", "library", "exists"}, one per path, sorted by path.

    After the slots, `bpy.utils.blend_paths` is asked too, and any path it knows that the slots
    did not cover is added as kind "other", so that nothing is ever missed."""
    entries = {}
    covered = set()  # paths as named (a sequence's first frame, a UDIM token path, a cache dir)

    def add(path, named, kind, user, library):
        path = normalise(path)
        if path not in entries:
            entries[path] = {
                "path": path,
                "named": named,
                "kind": kind,
                "user": user,
                "library": library,
                "exists": os.path.isfile(path),
            }

    for slot in path_slots(scene):
        covered.add(resolve(slot.named, slot.library))
        library = None if slot.library is None else library_file(slot.library)
        for path in slot.files():
            add(path, slot.named, slot.kind, slot.user, library)

    for path in bpy.utils.blend_paths(absolute=True, packed=False, local=False):
        if not path:
            continue  # e.g. a point cache with no external path
        path = normalise(path)
        if path in entries or path in covered:
            continue
        if os.path.isdir(path):
            for found in files_under(path):
                add(found, path, "other", "", None)
        else:
            add(path, path, "other", "", None)
    return [entries[p] for p in sorted(entries)]


# ---- END SHARED ----

import argparse
import json
import sys

PREFIX = "rendermesh:"
# The engines rendermesh renders with (`rendermesh_scene::Engine`).
ENGINES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH")


def fail(message):
    """Prints `rendermesh: error: MESSAGE` and ends Blender with status 2, at once.

    `sys.exit` raises SystemExit, which Blender's Python turns into a real process exit
    (unlike `bpy.ops.wm.quit_blender()`, which only queues a quit and lets the render run).
    """
    line = f"{PREFIX} error: {message}"
    print(line, flush=True)
    print(line, file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="settings.py", add_help=False)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--resolution-percent", type=int)
    parser.add_argument("--exact", action="store_true")
    parser.add_argument("--tile", type=int, nargs=4, metavar=("C", "R", "COLS", "ROWS"))
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--root")
    parser.add_argument("--allow-missing", action="store_true")
    parser.add_argument("--engine", default="CYCLES")
    parser.add_argument("--spare", action="store_true")
    args, unknown = parser.parse_known_args(argv)
    if args.engine not in ENGINES:
        fail(f"settings.py: --engine must be one of {', '.join(ENGINES)}, not {args.engine}")
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
    if args.root is not None:
        if not os.path.isdir(args.root):
            fail(f"settings.py: --root {args.root} is not a directory")
        args.root = normalise(os.path.abspath(args.root))
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


class Root:
    """The job directory ROOT under which the job's files mirror their original paths."""

    def __init__(self, root):
        self.root = root
        self.prefix = "" if root == "/" else root

    def holds(self, path):
        return path == self.root or path.startswith(self.prefix + "/")

    def original(self, local):
        """A local path's original path (ROOT removed), or None when it is not under ROOT."""
        if not self.holds(local):
            return None
        return local[len(self.prefix) :] or "/"

    def local(self, original):
        return self.prefix + original


def reroot(scene, root):
    """Points every external path of the open file at its copy under ROOT.

    The original location of the file that names a path is its local path with ROOT removed
    (the main file's, or for a linked datablock its library's). A `//` path is resolved against
    that original directory and normalised (so `..` never climbs above `/`), an absolute path is
    normalised, and the datablock is set to ROOT + that original path. A path whose local
    resolution already lands there (a relative path that stays inside ROOT) is left as is.

    Libraries go first: each whose path changes is set and reloaded, pass after pass, since a
    reload can bring in indirect libraries (their paths, like every library path, are relative
    to the main file). Then images (linked ones too), fonts, sounds, texts, volumes, cache files,
    movie clips, IES/OSL files, fluid, ocean and mesh caches, external point caches and
    sequencer strips. Disk point caches need nothing: `//blendcache_NAME/` resolves next to the
    re-rooted main (or library) file, and so does a relative fluid cache that stays inside.

    Blender reads libraries (and fonts) while it opens the file, before this script runs: only
    a sandbox keeps those first reads inside ROOT.

    Returns {new raw path: raw path as the file named it}, so that messages can quote the
    file's own paths.
    """
    main_local = main_file()
    main_original = root.original(main_local)
    if main_original is None:
        fail(f"--root {root.root}: the open file {main_local} is not under it")

    renamed = {}
    written = set()  # library paths set here: already local, never re-rooted twice
    passes = 0
    while True:
        changed = 0
        for lib in list(bpy.data.libraries):
            if lib.filepath in written:
                continue
            wanted = root.local(resolve_against(lib.filepath, main_original))
            if library_file(lib) == wanted:
                continue
            try:
                named = lib.filepath
                lib.filepath = wanted
                written.add(lib.filepath)
                renamed.setdefault(lib.filepath, renamed.get(named, named))
                # A packed library needs no file; a missing one cannot reload (Blender raises)
                # and is reported with the other missing files.
                if lib.packed_file is None and os.path.isfile(wanted):
                    lib.reload()
            except (AttributeError, TypeError, ValueError, RuntimeError) as e:
                fail(f'cannot re-root library "{lib.name}" ({lib.filepath}): {e}')
            changed += 1
        if not changed:
            break
        passes += 1
        if passes > len(bpy.data.libraries):
            fail(f"cannot re-root the libraries under {root.root}: their paths keep changing")

    for slot in list(path_slots(scene)):
        if slot.kind == "library" or slot.setter is None:
            continue
        owner_original = root.original(owner_file(slot.library))
        if owner_original is None:
            fail(
                f'cannot re-root {slot.kind} "{slot.user}" (named "{slot.named}"): its library '
                f"{owner_file(slot.library)} is not under {root.root}"
            )
        wanted = root.local(resolve_against(slot.named, owner_original))
        if resolve(slot.named, slot.library) == wanted:
            continue
        try:
            slot.setter(wanted)
        except (AttributeError, TypeError, ValueError, RuntimeError) as e:
            fail(f'cannot re-root {slot.kind} "{slot.user}" (named "{slot.named}"): {e}')
        renamed.setdefault(wanted, slot.named)
        renamed.setdefault(wanted.rstrip("/") + "/", slot.named)  # a strip's directory
    return renamed


def say(level, lines):
    """Prints each line as `rendermesh: LEVEL: LINE`, on stdout and stderr."""
    for line in lines:
        text = f"{PREFIX} {level}: {line}"
        print(text, flush=True)
        print(text, file=sys.stderr, flush=True)


def check_files(scene, root, allow_missing, renamed):
    """Fails (or warns, with --allow-missing) when an external file the render reads is missing;
    with a ROOT, also fails when any path still points outside it. `renamed` maps re-rooted raw
    paths back to the ones the file holds, which the messages quote."""
    files = external_files(scene)
    for e in files:
        e["named"] = renamed.get(e["named"], e["named"])

    def original(path):
        return path if root is None else (root.original(path) or path)

    if root is not None:
        outside = [e for e in files if not root.holds(e["path"])]
        if outside:
            say(
                "error",
                [
                    f'cannot re-root {e["path"]} (named "{e["named"]}") used by {e["kind"]} '
                    f'"{e["user"]}": it stays outside {root.root}'
                    for e in outside
                ],
            )
            sys.exit(2)
        print(
            f"{PREFIX} files: {len(files)} external files re-rooted under {root.root}",
            flush=True,
        )

    missing = [
        f'missing file {original(e["path"])} (named "{e["named"]}") used by {e["kind"]} '
        f'"{e["user"]}"'
        for e in files
        if not e["exists"]
    ]
    if not missing:
        return
    if allow_missing:
        say("warning", missing)
        return
    n = len(missing)
    say("error", [f"{n} missing external file{'' if n == 1 else 's'}"] + missing)
    sys.exit(2)


def has_camera(scene):
    # Blender 3.4 renders with the scene's active camera, or one bound to a timeline marker;
    # it does not fall back to other camera objects ("Error: Cannot render, no camera").
    return scene.camera is not None or any(m.camera for m in scene.timeline_markers)


# The output formats a spare is asked for, as `-F` names them.
FORMATS = ("PNG", "JPEG", "BMP", "OPEN_EXR")
# What a spare prints, and its exit status, when it cannot set the format as `-F` would.
DECLINED = f"{PREFIX} spare declined"
DECLINED_STATUS = 3


def set_output_format(scene, fmt):
    """What `-F FMT -x 1` does to the open scene (None: keep the file's format, only `-x 1`).

    `-F` sets the file type alone. Set from Python, the type also moves a colour depth or mode
    the new type lacks to one it has (a 32-bit EXR scene asked for PNG becomes 16-bit), and the
    writers do not write the same pixels from the two (measured: `-F PNG` on a 32-bit EXR scene
    writes 8-bit pixels up to 0.19 brighter). So when Python would change either, the spare
    declines: it prints `rendermesh: spare declined` and ends with status 3, and the worker
    starts Blender with the file and `-F` instead.
    """
    settings = scene.render.image_settings
    if fmt is not None and settings.file_format != fmt:
        before = (settings.color_depth, settings.color_mode)
        settings.file_format = fmt
        if (settings.color_depth, settings.color_mode) != before:
            print(f"{DECLINED}: {fmt} would change the file's colour depth or mode", flush=True)
            sys.exit(DECLINED_STATUS)
    scene.render.use_file_extension = True


def warm_up():
    """Renders the factory scene once, at 1 % and 1 sample, and keeps nothing: Cycles' first
    render in a process sets itself up (measured: the first frame of a job took 0.82 s and the
    next ones 0.58 s on one core; after this, 0.56-0.70 s), and a spare does that before its
    job comes. The file opened next replaces the scene."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_percentage = 1
    bpy.ops.render.render()


def open_requested():
    """A spare Blender (`--spare`, started with no file): says `rendermesh: spare`, reads one
    line of stdin, a JSON object {"blend": PATH, "format": FMT or null, "args": [ARG, ...]},
    opens PATH as the command line would have (its own Python stays off: `-Y` holds for every
    file this Blender opens), applies FMT as `-F FMT -x 1` would, and returns ARGS parsed.
    Stdin closed first: exits 0, nothing was asked. Cycles is warmed up first (`warm_up`)."""
    warm_up()
    print(f"{PREFIX} spare", flush=True)
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    try:
        request = json.loads(line)
        blend, fmt, argv = request["blend"], request["format"], request["args"]
        if not isinstance(blend, str) or not isinstance(argv, list):
            raise TypeError("blend must be a string and args a list")
        if not all(isinstance(a, str) for a in argv):
            raise TypeError("args must be strings")
    except (ValueError, KeyError, TypeError) as e:
        fail(f"spare: cannot read the request: {e}")
    if fmt is not None and fmt not in FORMATS:
        fail(f"spare: format must be one of {', '.join(FORMATS)}, not {fmt}")
    if not os.path.isfile(blend):
        fail(f"spare: cannot open {blend}: no such file")
    try:
        bpy.ops.wm.open_mainfile(filepath=blend, load_ui=True, use_scripts=False)
    except RuntimeError as e:
        fail(f"cannot open {blend}: {e}".strip())
    args = parse_args(argv)
    if args.spare:
        fail("spare: a request cannot ask for another spare")
    set_output_format(bpy.context.scene, fmt)
    return args


def main():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    args = parse_args(argv)
    if args.spare:
        args = open_requested()
    scene = bpy.context.scene
    root = None if args.root is None else Root(args.root)
    renamed = {}
    if root is not None:
        # First, before anything (even the camera check) reads a linked datablock.
        renamed = reroot(scene, root)
    if not has_camera(scene):
        hint = ""
        if any(o.type == "CAMERA" for o in scene.objects):
            hint = " (it holds camera objects, but none is set as the scene's camera)"
        fail(f'scene "{scene.name}" has no camera{hint}')

    scene.render.engine = args.engine
    scene.cycles.device = "CPU"
    if args.samples is not None:
        if args.engine == "CYCLES":
            scene.cycles.samples = args.samples
        elif args.engine == "BLENDER_EEVEE":
            scene.eevee.taa_render_samples = args.samples
        else:
            # Workbench's anti-aliasing samples come in fixed steps (5, 8, 11, 16, 32): the
            # largest not above the request, FXAA below 5.
            steps = [v for v in (5, 8, 11, 16, 32) if v <= args.samples]
            scene.display.render_aa = str(steps[-1]) if steps else "FXAA"
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
    check_files(scene, root, args.allow_missing, renamed)
    samples = {
        "CYCLES": lambda: scene.cycles.samples,
        "BLENDER_EEVEE": lambda: scene.eevee.taa_render_samples,
        "BLENDER_WORKBENCH": lambda: scene.display.render_aa,
    }[args.engine]()
    print(
        f'{PREFIX} scene "{scene.name}": {r.engine} on {scene.cycles.device}, '
        f"{samples} samples, {width}x{height} "
        f"({r.resolution_percentage}% of {r.resolution_x}x{r.resolution_y}), denoising off",
        flush=True,
    )
    if args.serve:
        serve(scene, width, height)


main()
