//! Blender runner (being written).
