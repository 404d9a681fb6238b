"""rendermesh: lists what a .blend needs from outside itself, without running or changing it.

Run on the submitting machine as

    blender -b --factory-startup -Y FILE.blend --python-exit-code 2 -P inspect.py -- OUT.json

(`-Y` keeps the file's own Python from running; nothing is saved.) It writes OUT.json, UTF-8:

    {
      "blend": "/abs/path/of/FILE.blend",         normalised
      "scene": "Scene",                           the scene that renders
      "engine": "CYCLES",                         scene.render.engine as is
      "frame_start": 1, "frame_end": 250, "frame_step": 1,
      "output": {"file_format": "PNG", "color_depth": "8", "color_mode": "RGBA",
                 "exr_codec": "ZIP", "extension": ".png"},
      "files": [ {"path": ..., "named": ..., "kind": ..., "user": ..., "library": ...,
                  "exists": true}, ... ],
      "unbaked": [ {"kind": "rigid body", "name": "RigidBodyWorld"}, ... ]
    }

`files` holds one entry per concrete external file the render may read, sorted by `path` and
unique by it:

    path      the file as Blender resolves it: a `//` path against the directory of the file
              that names it (the main file, or for a linked datablock its library's file),
              normalised with posixpath.normpath
    named     the raw path string as the datablock holds it (for the files a sequence, UDIM
              image or cache directory stands for: that sequence's, image's or directory's path)
    kind      image, image sequence, udim tile, movie, library, font, sound, text, volume,
              cache (Alembic/USD and mesh cache files), movie clip, point cache, fluid cache,
              other (IES and OSL files, ocean caches, anything only bpy.utils.blend_paths knows)
    user      the datablock's name; "object / modifier" for caches, "owner / node" for nodes
    library   the normalised path of the library whose datablock names the path, or null for
              the main file. Library entries themselves have null: Blender holds every library
              path, an indirect one's too, relative to the main file
    exists    os.path.isfile(path)

Packed, generated and viewer datablocks need nothing and are left out. An image sequence
stands for every file next to it with the same name around the frame digits, plus the frames
its users show over the scene's range; a UDIM image for one file per tile; disk point caches
and fluid caches for the files in their directories. A sequence or UDIM image with no file at
all gets one entry, its path as named, with `exists` false.

`unbaked` lists the simulations whose results differ when frames render out of order or in a
fresh process: a rigid body world whose cache is not baked, and cloth, soft body, particle,
dynamic paint (kind "cloth", "soft body", "particles", "dynamic paint") and smoke/fluid domain
("smoke", "fluid") caches that are not baked, each as {"kind", "name"} with the object's name.

Any failure ends Blender with status 2 and the line `rendermesh: error: MESSAGE`.
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

import json
import sys

PREFIX = "rendermesh:"


def fail(message):
    """Prints `rendermesh: error: MESSAGE` and ends Blender with status 2, at once."""
    line = f"{PREFIX} error: {message}"
    print(line, flush=True)
    print(line, file=sys.stderr, flush=True)
    sys.exit(2)


def scene_objects(scene):
    """The scene's objects and, recursively, those of the collections they instance."""
    seen, todo = {}, list(scene.objects)
    while todo:
        obj = todo.pop()
        if obj.as_pointer() in seen:
            continue
        seen[obj.as_pointer()] = obj
        if obj.instance_type == "COLLECTION" and obj.instance_collection is not None:
            todo.extend(obj.instance_collection.all_objects)
    return sorted(seen.values(), key=lambda o: o.name)


def unbaked_simulations(scene):
    """Simulations stepped live frame after frame: their results depend on render order."""
    found = []

    def add(kind, name):
        entry = {"kind": kind, "name": name}
        if entry not in found:
            found.append(entry)

    rbw = scene.rigidbody_world
    if (
        rbw is not None
        and rbw.enabled
        and rbw.collection is not None
        and len(rbw.collection.all_objects) > 0
        and not rbw.point_cache.is_baked
    ):
        add("rigid body", rbw.collection.name)

    for obj in scene_objects(scene):
        for md in obj.modifiers:
            if not md.show_render:
                continue
            if md.type == "CLOTH" and not md.point_cache.is_baked:
                add("cloth", obj.name)
            elif md.type == "SOFT_BODY" and not md.point_cache.is_baked:
                add("soft body", obj.name)
            elif md.type == "PARTICLE_SYSTEM":
                psys = md.particle_system
                # Hair without dynamics is static, and a liquid domain's own (FLIP) system is
                # never read from its cache; emitters are stepped over time.
                kind = psys.settings.type
                simulated = kind == "EMITTER" or (kind == "HAIR" and psys.use_hair_dynamics)
                if simulated and not psys.point_cache.is_baked:
                    add("particles", obj.name)
            elif md.type == "DYNAMIC_PAINT" and md.canvas_settings is not None:
                for surface in md.canvas_settings.canvas_surfaces:
                    # An Image Sequence surface writes images, not a cache to bake.
                    if (
                        surface.is_active
                        and surface.surface_format != "IMAGE"
                        and not surface.point_cache.is_baked
                    ):
                        add("dynamic paint", obj.name)
            elif md.type == "FLUID" and md.fluid_type == "DOMAIN":
                ds = md.domain_settings
                baked = ds.has_cache_baked_data
                if ds.domain_type == "LIQUID" and ds.use_mesh:
                    baked = baked and ds.has_cache_baked_mesh
                if ds.domain_type == "GAS" and ds.use_noise:
                    baked = baked and ds.has_cache_baked_noise
                if not baked:
                    add("smoke" if ds.domain_type == "GAS" else "fluid", obj.name)
    return found


def out_path():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    if len(argv) != 1:
        fail("usage: blender -b --factory-startup -Y FILE.blend -P inspect.py -- OUT.json")
    return argv[0]


def main():
    out = out_path()
    if not bpy.data.filepath:
        fail("inspect.py: no .blend file is open")
    scene = bpy.context.scene
    r = scene.render
    image = r.image_settings
    report = {
        "blend": main_file(),
        "scene": scene.name,
        "engine": r.engine,
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "frame_step": scene.frame_step,
        "output": {
            "file_format": image.file_format,
            "color_depth": image.color_depth,
            "color_mode": image.color_mode,
            "exr_codec": image.exr_codec,
            "extension": r.file_extension,
        },
        "files": external_files(scene),
        "unbaked": unbaked_simulations(scene),
    }
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    missing = sum(1 for e in report["files"] if not e["exists"])
    print(
        f"{PREFIX} inspected {report['blend']}: {len(report['files'])} external files "
        f"({missing} missing), {len(report['unbaked'])} unbaked simulations",
        flush=True,
    )


try:
    main()
except Exception as e:  # noqa: BLE001 (any failure must end with status 2 and a readable line)
    fail(f"inspect.py: {type(e).__name__}: {e}")
