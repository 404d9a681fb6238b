"""rendermesh: bakes every unbaked simulation of a .blend into a copy, leaving the .blend as is.

Run on the submitting machine as either of

    blender -b --factory-startup -Y FILE.blend --python-exit-code 2 -P bake.py -- OUT.blend CACHE_DIR
    blender -b --factory-startup -Y --python-exit-code 2 -P bake.py -- FILE.blend OUT.blend CACHE_DIR

FILE.blend    the user's file. It is never written. In the second form this script opens it
              itself, and makes every unbaked cache write elsewhere before Blender evaluates
              the file for the first time; in the first form Blender has already evaluated it
              (see "Nothing is written next to FILE.blend" for what that can cost).
OUT.blend     the baked copy to write (its directory must exist). rendermesh opens it from
              FILE.blend's own location, so every relative `//` path in it stays exactly as
              FILE.blend names it.
CACHE_DIR     an existing, empty directory for what Blender can only bake to disk (fluid
              domains and dynamic paint). rendermesh ships its files with OUT.blend: OUT.blend
              names them by absolute paths under CACHE_DIR, and inspect.py lists them.

An unbaked simulation renders wrong on a farm: a worker renders frames in a fresh Blender, one
at a time or out of order, so the steps before the frame never run. This script bakes, each
over its cache's own frame range, the simulations that inspect.py lists as `unbaked` (rigid
body world, cloth, soft body, particles, dynamic paint, smoke and fluid domains) in the scene
that renders and in the scenes its render uses (background sets, compositor Render Layers
nodes, sequencer scene strips). Then it saves the copy with
`bpy.ops.wm.save_as_mainfile(filepath=OUT, copy=True, relative_remap=False)`, which keeps
FILE.blend's own compression.

Two kinds inspect.py lists are not baked, as nothing about them depends on the render's order:
a fluid domain's own particle system (FLIP, spray, foam...: the domain's cache holds them) and
a dynamic paint surface in Image Sequence format (it writes its images only when asked to
bake, and the render reads them as ordinary image files).

How each kind bakes, headless (measured with Blender 3.4):

    rigid body, cloth, soft body, particles, dynamic paint (point caches)
        `bpy.ops.ptcache.bake_all(bake=True)`, once per scene, in a context override of the
        scene and its view layer: all of them step together from the earliest start frame, as
        they would in playback, so simulations that act on one another bake as they play. It
        skips caches already baked, and hair: hair with dynamics then bakes alone with
        `bpy.ops.ptcache.bake(bake=True)` (override `point_cache`).
    smoke, fluid (mantaflow domains)
        `bpy.ops.fluid.bake_all()`, with the domain as the override's object and active object,
        after setting its cache type to All.

Nothing is written next to FILE.blend, nor next to any library it links:

- A cloth, soft body or particle cache on disk writes `//blendcache_<name>/` next to the file,
  and switching it to memory with `use_disk_cache = False` DELETES the files already there. So
  it is first made an external cache aimed at a directory that does not exist, switched to
  memory, then made internal again: nothing is read, renamed or deleted, and its baked frames
  are saved inside OUT.blend. A rigid body world's cache is always in memory.
- A dynamic paint cache is always written to disk, whatever `use_disk_cache` says: it is made
  an external cache in `CACHE_DIR/dpaint_NN_<object>`.
- A mantaflow domain bakes to its `cache_directory` only: it is pointed at
  `CACHE_DIR/fluid_NN_<object>`, with cache type All (a Replay cache writes as frames step).
- This is done for every unbaked cache and domain of those scenes, rendered or not, since
  stepping the frames writes each of them. A linked object's cache cannot be changed: on disk
  it is an error; in memory it is left alone, unless the render shows it, which is an error
  too, as OUT.blend would not hold its baked frames (bake it in its library).
- Merely opening a file lets Blender 3.4 rewrite unbaked particle and dynamic paint caches on
  disk next to it (it deletes every frame but the first, then writes that one again), before
  any `-P` script runs. The second form prevents it: it opens FILE.blend with a `load_post`
  handler, which runs before Blender first evaluates the file. In the first form the script
  can only warn: `rendermesh: warning: opening the file may have rewritten ...`.

It prints, flushed (Blender itself prints `bake: frame N :: END` lines while a point cache
bakes):

    rendermesh: cache: KIND "NAME" bakes to CACHE_DIR/...       for each cache sent to CACHE_DIR
    rendermesh: baking KIND "NAME" (frames A-B)                 before each simulation bakes
    rendermesh: baked N simulations                             after OUT.blend is saved

KIND and NAME as in inspect.py's `unbaked` (NAME: the rigid body world's collection, else the
object); one line per cache, so an object with two particle systems has two lines, and N
counts caches. Any failure (a bake that fails, or a simulation still unbaked after baking)
ends Blender with status 2 and the line `rendermesh: error: MESSAGE` naming the simulation.
"""

import os
import re
import sys

import bpy
from bpy.app.handlers import persistent

PREFIX = "rendermesh:"


def fail(message):
    """Prints `rendermesh: error: MESSAGE` and ends Blender with status 2, at once."""
    line = f"{PREFIX} error: {message}"
    print(line, flush=True)
    print(line, file=sys.stderr, flush=True)
    sys.exit(2)


def say(message):
    print(f"{PREFIX} {message}", flush=True)


def parse_args():
    """(FILE.blend or None, OUT.blend, CACHE_DIR), all absolute."""
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    if len(argv) not in (2, 3):
        fail("usage: blender -b --factory-startup -Y [FILE.blend] --python-exit-code 2 "
             "-P bake.py -- [FILE.blend] OUT.blend CACHE_DIR")
    paths = [os.path.abspath(a) for a in argv]
    blend = paths.pop(0) if len(paths) == 3 else None
    out, cache_dir = paths
    if blend is not None and not os.path.isfile(blend):
        fail(f"bake.py: no file {blend}")
    if not os.path.isdir(os.path.dirname(out)):
        fail(f"bake.py: no directory for {out}")
    if not os.path.isdir(cache_dir):
        fail(f"bake.py: {cache_dir} is not a directory")
    return blend, out, cache_dir


# ---- What is simulated (inspect.py's `unbaked`, less what needs no bake) ----


class Sim:
    """One cache to bake.

    kind     as in inspect.py: rigid body, cloth, soft body, particles, dynamic paint, smoke, fluid
    name     the rigid body world's collection, else the object's name
    scene    the scene it bakes in
    owner    the ID whose data holds the cache (the scene for a rigid body world, else the object)
    cache    its PointCache (None for smoke/fluid domains)
    domain   the fluid modifier (smoke/fluid only)
    psys     the particle system (particles only)
    """

    def __init__(self, kind, name, scene, owner, cache=None, domain=None, psys=None):
        self.kind, self.name, self.scene, self.owner = kind, name, scene, owner
        self.cache, self.domain, self.psys = cache, domain, psys
        # `ptcache.bake_all` skips hair: hair with dynamics bakes alone.
        self.hair = psys is not None and psys.settings.type == "HAIR"

    def label(self):
        return f'{self.kind} "{self.name}"'

    def frames(self):
        if self.domain is not None:
            ds = self.domain.domain_settings
            return ds.cache_frame_start, ds.cache_frame_end
        if self.psys is not None:
            # A particle cache's range is set as it bakes (measured): from the first emission
            # frame to the last frame a particle lives, within the scene (or preview) range.
            part, sc = self.psys.settings, self.scene
            end = int(part.frame_end + part.lifetime + 1)
            return max(1, int(part.frame_start)), min(end, max(sc.frame_preview_end, sc.frame_end))
        return self.cache.frame_start, self.cache.frame_end

    def is_baked(self):
        if self.domain is not None:
            return fluid_baked(self.domain.domain_settings)
        return self.cache.is_baked


def fluid_baked(ds):
    baked = ds.has_cache_baked_data
    if ds.domain_type == "LIQUID" and ds.use_mesh:
        baked = baked and ds.has_cache_baked_mesh
    if ds.domain_type == "GAS" and ds.use_noise:
        baked = baked and ds.has_cache_baked_noise
    return baked


def is_fluid_particles(psys):
    """A fluid domain's own particles (FLIP, spray, foam, ...): the domain's cache holds them,
    their point cache is never used."""
    return psys.settings.type not in ("EMITTER", "HAIR")


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


def unbaked(scene):
    """The unbaked simulations the render of `scene` shows, one per cache."""
    found = []
    rbw = scene.rigidbody_world
    if (
        rbw is not None
        and rbw.enabled
        and rbw.collection is not None
        and len(rbw.collection.all_objects) > 0
        and not rbw.point_cache.is_baked
    ):
        found.append(Sim("rigid body", rbw.collection.name, scene, scene, cache=rbw.point_cache))

    for obj in scene_objects(scene):
        for md in obj.modifiers:
            if not md.show_render:
                continue
            if md.type in ("CLOTH", "SOFT_BODY") and not md.point_cache.is_baked:
                kind = "cloth" if md.type == "CLOTH" else "soft body"
                found.append(Sim(kind, obj.name, scene, obj, cache=md.point_cache))
            elif md.type == "PARTICLE_SYSTEM":
                psys = md.particle_system
                # Hair without dynamics is static; every other system is stepped over time.
                if is_fluid_particles(psys):
                    continue
                simulated = psys.settings.type != "HAIR" or psys.use_hair_dynamics
                if simulated and not psys.point_cache.is_baked:
                    found.append(Sim("particles", obj.name, scene, obj,
                                     cache=psys.point_cache, psys=psys))
            elif md.type == "DYNAMIC_PAINT" and md.canvas_settings is not None:
                for surface in md.canvas_settings.canvas_surfaces:
                    if surface.surface_format == "IMAGE":
                        continue
                    if surface.is_active and not surface.point_cache.is_baked:
                        found.append(Sim("dynamic paint", obj.name, scene, obj,
                                         cache=surface.point_cache))
            elif md.type == "FLUID" and md.fluid_type == "DOMAIN":
                if not fluid_baked(md.domain_settings):
                    kind = "smoke" if md.domain_settings.domain_type == "GAS" else "fluid"
                    found.append(Sim(kind, obj.name, scene, obj, domain=md))
    return found


def every_unbaked(scene):
    """(object, modifier, kind, point cache or None for a fluid domain) for every unbaked cache
    of the scene's objects, rendered or not: all of them step, and write, when frames step."""
    for obj in scene_objects(scene):
        for md in obj.modifiers:
            caches = []
            if md.type == "CLOTH":
                caches = [("cloth", md.point_cache)]
            elif md.type == "SOFT_BODY":
                caches = [("soft body", md.point_cache)]
            elif md.type == "PARTICLE_SYSTEM" and not is_fluid_particles(md.particle_system):
                caches = [("particles", md.particle_system.point_cache)]
            elif md.type == "DYNAMIC_PAINT" and md.canvas_settings is not None:
                caches = [("dynamic paint", s.point_cache)
                          for s in md.canvas_settings.canvas_surfaces]
            elif md.type == "FLUID" and md.fluid_type == "DOMAIN":
                if not fluid_baked(md.domain_settings):
                    kind = "smoke" if md.domain_settings.domain_type == "GAS" else "fluid"
                    yield obj, md, kind, None
            for kind, cache in caches:
                if not cache.is_baked:
                    yield obj, md, kind, cache


def scenes_used(scene):
    """The scene that renders, then every scene its render uses: background sets, compositor
    Render Layers nodes and sequencer scene strips, recursively."""
    found, todo = [], [scene]
    while todo:
        sc = todo.pop(0)
        if sc is None or any(sc == s for s in found):
            continue
        found.append(sc)
        todo.append(sc.background_set)
        if sc.use_nodes and sc.node_tree is not None and sc.render.use_compositing:
            for node in sc.node_tree.nodes:
                if node.bl_idname == "CompositorNodeRLayers" and not node.mute:
                    todo.append(node.scene)
        if sc.sequence_editor is not None and sc.render.use_sequencer:
            for strip in sc.sequence_editor.sequences_all:
                if strip.type == "SCENE" and not strip.mute:
                    todo.append(strip.scene)
    return found


def render_view_layer(scene):
    """The view layer a scene's simulations bake in: the window's for the scene that renders,
    else the first one that renders."""
    if scene == bpy.context.scene and bpy.context.view_layer is not None:
        return bpy.context.view_layer
    for view_layer in scene.view_layers:
        if view_layer.use:
            return view_layer
    return scene.view_layers[0]


# ---- Keeping every write away from the user's directories ----


def library_path(library):
    return os.path.normpath(bpy.path.abspath(library.filepath))


def safe_name(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:60] or "object"


class CacheDirs:
    """Sends unbaked caches to OUT.blend (memory) or to directories under CACHE_DIR."""

    def __init__(self, cache_dir):
        self.cache_dir, self.count = cache_dir, 0
        self.nowhere = f"{cache_dir}/.rendermesh-none"  # never created

    def new(self, kind, obj):
        self.count += 1
        return f"{self.cache_dir}/{kind}_{self.count:02d}_{safe_name(obj.name)}"

    def to_memory(self, label, cache):
        """A cloth, soft body or particle cache on disk goes to memory, leaving its files.

        `use_disk_cache = False` loads the frames on disk and deletes their files: made external
        first, aimed at a directory that does not exist, the cache has nothing to load or
        delete. Setting `filepath` of an internal disk cache would rename its files."""
        if not cache.use_disk_cache:
            return
        if cache.use_external:
            fail(f"cannot bake {label}: its cache is an external cache ({cache.filepath}), "
                 "which Blender only reads")
        cache.use_external = True
        cache.filepath = self.nowhere
        cache.use_disk_cache = False
        cache.use_external = False
        cache.filepath = ""
        if cache.use_disk_cache or cache.use_external:
            fail(f"cannot bake {label}: its disk cache cannot be switched to memory")

    def dynamic_paint(self, label, obj, cache):
        """A dynamic paint cache is written as a stream, always to disk: into
        `//blendcache_<name>/`, or its external directory. Made external, under CACHE_DIR."""
        if cache.use_external:
            fail(f"cannot bake {label}: its cache is an external cache ({cache.filepath}), "
                 "which Blender only reads")
        directory = self.new("dpaint", obj)
        cache.use_external = True
        cache.filepath = directory
        if cache.filepath != directory or not cache.use_external:
            fail(f"cannot bake {label}: its cache cannot be moved to {directory}")
        say(f"cache: {label} bakes to {directory}")

    def fluid(self, label, obj, md):
        """A mantaflow domain bakes into its `cache_directory` only."""
        ds = md.domain_settings
        directory = self.new("fluid", obj)
        ds.cache_directory = directory
        ds.cache_type = "ALL"  # `fluid.bake_all` bakes it all; a Replay cache writes as it plays
        if ds.cache_directory != directory:
            fail(f"cannot bake {label}: its cache directory cannot be set to {directory}")
        say(f"cache: {label} bakes to {directory}")


def prepare(scenes, dirs):
    """Makes every unbaked cache of `scenes` write only into OUT.blend or CACHE_DIR."""
    for scene in scenes:
        for obj, md, kind, cache in every_unbaked(scene):
            label = f'{kind} "{obj.name}"'
            on_disk = cache is None or kind == "dynamic paint" or cache.use_disk_cache
            if obj.library is not None:
                if on_disk:
                    fail(f"cannot bake {label}: the object is linked from "
                         f"{library_path(obj.library)} and its cache would be written next "
                         "to that file; bake it there")
                continue  # in memory: `bake_scene` refuses it if the render shows it
            if cache is None:
                dirs.fluid(label, obj, md)
            elif kind == "dynamic paint":
                dirs.dynamic_paint(label, obj, cache)
            else:
                dirs.to_memory(label, cache)


def warn_if_rewritten(scenes):
    """Opening a file lets Blender rewrite unbaked particle and dynamic paint disk caches."""
    for scene in scenes:
        for obj, _md, kind, cache in every_unbaked(scene):
            on_disk = kind == "dynamic paint" or (kind == "particles" and cache.use_disk_cache)
            if on_disk and not cache.use_external:
                say(f'warning: opening the file may have rewritten the disk cache of {kind} '
                    f'"{obj.name}" next to it; pass FILE.blend after -- to prevent it')


def open_prepared(blend, dirs):
    """Opens `blend` with its caches prepared before Blender first evaluates it: a `load_post`
    handler runs before that evaluation."""
    done = []

    @persistent
    def on_load(_):
        bpy.app.handlers.load_post.remove(on_load)
        try:
            prepare(scenes_checked(), dirs)
        except SystemExit:
            os._exit(2)  # before Blender evaluates anything
        except Exception as e:  # noqa: BLE001
            print(f"{PREFIX} error: bake.py: {type(e).__name__}: {e}", flush=True)
            os._exit(2)
        done.append(True)

    bpy.app.handlers.load_post.append(on_load)
    try:
        bpy.ops.wm.open_mainfile(filepath=blend, load_ui=True, use_scripts=False)
    except RuntimeError as e:
        fail(f"cannot open {blend}: {e}".strip())
    if not done:
        fail(f"cannot open {blend}")


def scenes_checked():
    """The scenes to bake; a linked one with unbaked simulations is an error."""
    scenes = scenes_used(bpy.context.scene)
    for scene in scenes:
        if scene.library is not None and unbaked(scene):
            fail(f'cannot bake the scene "{scene.name}": it is linked from '
                 f"{library_path(scene.library)}; bake it there")
    return scenes


# ---- Baking ----


def announce(sim):
    a, b = sim.frames()
    say(f"baking {sim.label()} (frames {a}-{b})")


def run(sim, operator, args, **context):
    """Runs `operator(**args)` in an override of the simulation's scene, view layer and
    `context`."""
    scene = sim.scene
    try:
        with bpy.context.temp_override(scene=scene, view_layer=render_view_layer(scene),
                                       **context):
            result = operator(**args)
    except (RuntimeError, TypeError) as e:
        reason = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        fail(f"baking {sim.label()} failed: {reason}")
    if "FINISHED" not in result:
        fail(f"baking {sim.label()} failed: {operator.idname_py()} returned {sorted(result)}")


def bake_scene(scene):
    """Bakes the scene's unbaked simulations; returns how many caches."""
    sims = unbaked(scene)
    for sim in sims:
        if sim.owner.library is not None:
            fail(f"cannot bake {sim.label()}: it is linked from "
                 f"{library_path(sim.owner.library)}, so its baked cache would not be saved; "
                 "bake it in that file")
    together = [s for s in sims if s.cache is not None and not s.hair]
    if together:
        for sim in together:
            announce(sim)
        run(together[0], bpy.ops.ptcache.bake_all, {"bake": True},
            point_cache=together[0].cache)
    for sim in sims:
        if sim.hair:
            announce(sim)
            run(sim, bpy.ops.ptcache.bake, {"bake": True}, point_cache=sim.cache)
        elif sim.domain is not None:
            announce(sim)
            run(sim, bpy.ops.fluid.bake_all, {}, object=sim.owner, active_object=sim.owner)
    for sim in sims:
        if not sim.is_baked():
            if not evaluated(sim):
                fail(f"cannot bake {sim.label()}: Blender does not evaluate it in the view layer "
                     f'"{render_view_layer(scene).name}" (is its collection excluded?)')
            fail(f"baking {sim.label()} failed: it is still unbaked after baking")
    return len(sims)


def evaluated(sim):
    """Whether the simulation's object is in its scene's view layer depsgraph (a rigid body
    world always is)."""
    if sim.owner == sim.scene:
        return True
    depsgraph = render_view_layer(sim.scene).depsgraph
    return any(obj.original == sim.owner for obj in depsgraph.objects)


def main():
    blend, out, cache_dir = parse_args()
    # No `OUT.blend1` when OUT.blend exists (factory settings keep one backup).
    bpy.context.preferences.filepaths.save_version = 0
    dirs = CacheDirs(cache_dir)
    if blend is not None:
        open_prepared(blend, dirs)
        scenes = scenes_used(bpy.context.scene)
    else:
        if not bpy.data.filepath:
            fail("bake.py: no .blend file is open")
        scenes = scenes_checked()
        warn_if_rewritten(scenes)
        prepare(scenes, dirs)

    count = sum(bake_scene(scene) for scene in scenes)
    for scene in scenes:
        left = unbaked(scene)
        if left:
            fail(f"{left[0].label()} is still unbaked after baking")
    try:
        bpy.ops.wm.save_as_mainfile(filepath=out, copy=True, relative_remap=False)
    except RuntimeError as e:
        fail(f"cannot save {out}: {e}".strip())
    if not os.path.isfile(out):
        fail(f"cannot save {out}")
    say(f"baked {count} simulations")


try:
    main()
except Exception as e:  # noqa: BLE001 (any failure must end with status 2 and a readable line)
    fail(f"bake.py: {type(e).__name__}: {e}")
