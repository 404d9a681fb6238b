//! A [`SceneDesc`] as XML, written with quick-xml, close to Cycles' own XML scene format:
//! a `<cycles>` root; `<film>` and `<integrator>`; a `<camera>` inside the `<transform>` that
//! places it; a `<background>` shader; a `<light>`; one `<shader>` per material made of a Cycles
//! BSDF node (`diffuse_bsdf`, `glossy_bsdf`, `glass_bsdf`) connected to the output; and meshes as
//! `<state shader="..."><mesh P="..." nverts="..." verts="..."/></state>`. Texts are
//! `<state shader="..."><text name body size align depth matrix/></state>`: one line of 3D
//! text, `size` the height of a capital "H", `matrix` text to world (row-major).
//!
//! A surface's mesh also has `N` (a normal per vertex: smooth shading) and `C` (a linear colour
//! per vertex), and its shader takes its colour from an `<attribute attribute="Col">` node.
//!
//! Differences from Cycles' format, all additive: `<film>` carries `width`, `height` and
//! `samples` (Cycles reads those from the command line), `<mesh>` has a `name`, glossy
//! shaders keep the chart's IOR (`ior`) for the builder's Fresnel mix, and `<text>`.
//!
//! Numbers are written with up to 6 decimals, trailing zeros trimmed, so the text is stable and
//! diffable.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, Event};

use super::model::{Distribution, Keyword, Material};
use super::scene::{SceneDesc, ShaderDesc};

/// The scene as XML text (UTF-8, with an XML declaration, indented by two spaces).
pub fn to_xml(scene: &SceneDesc) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing into a Vec<u8> cannot fail.
    let _ = write_scene(&mut w, scene);
    let mut text = String::from_utf8(w.into_inner()).unwrap_or_default();
    text.push('\n');
    text
}

type Result = std::io::Result<()>;

fn write_scene(w: &mut Writer<Vec<u8>>, scene: &SceneDesc) -> Result {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("cycles")
        .with_attribute(("generator", "rendermesh chart"))
        .write_inner_content(|w| {
            w.create_element("film")
                .with_attribute(("width", scene.width.to_string().as_str()))
                .with_attribute(("height", scene.height.to_string().as_str()))
                .with_attribute(("samples", scene.samples.to_string().as_str()))
                .write_empty()?;
            w.create_element("integrator")
                .with_attribute(("method", "path"))
                .with_attribute(("use_denoising", "false"))
                .with_attribute(("use_adaptive_sampling", "false"))
                .write_empty()?;
            write_camera(w, scene)?;
            write_world(w, scene)?;
            let direction = numbers(&scene.sun.direction);
            w.create_element("light")
                .with_attribute(("type", "distant"))
                .with_attribute(("dir", direction.as_str()))
                .with_attribute(("strength", num(scene.sun.strength).as_str()))
                .write_empty()?;
            for shader in &scene.shaders {
                write_shader(w, shader)?;
            }
            for mesh in &scene.meshes {
                let shader = &scene.shaders[mesh.shader].name;
                let points: Vec<f64> = mesh.vertices.iter().flatten().copied().collect();
                let nverts: Vec<String> = mesh.faces.iter().map(|f| f.len().to_string()).collect();
                let verts: Vec<String> =
                    mesh.faces.iter().flatten().map(|v| v.to_string()).collect();
                w.create_element("state")
                    .with_attribute(("shader", shader.as_str()))
                    .write_inner_content(|w| {
                        let mut element = w
                            .create_element("mesh")
                            .with_attribute(("name", mesh.name.as_str()))
                            .with_attribute(("P", numbers(&points).as_str()))
                            .with_attribute(("nverts", nverts.join(" ").as_str()))
                            .with_attribute(("verts", verts.join(" ").as_str()));
                        let normals: Vec<f64> = mesh.normals.iter().flatten().copied().collect();
                        let colors: Vec<f64> = mesh.colors.iter().flatten().copied().collect();
                        if !normals.is_empty() {
                            element = element.with_attribute(("N", numbers(&normals).as_str()));
                        }
                        if !colors.is_empty() {
                            element = element.with_attribute(("C", numbers(&colors).as_str()));
                        }
                        element.write_empty()?;
                        Ok(())
                    })?;
            }
            for text in &scene.texts {
                let shader = &scene.shaders[text.shader].name;
                let matrix: Vec<f64> = text.matrix.iter().flatten().copied().collect();
                w.create_element("state")
                    .with_attribute(("shader", shader.as_str()))
                    .write_inner_content(|w| {
                        w.create_element("text")
                            .with_attribute(("name", text.name.as_str()))
                            .with_attribute(("body", text.body.as_str()))
                            .with_attribute(("size", num(text.size).as_str()))
                            .with_attribute(("align", text.align.name()))
                            .with_attribute(("depth", num(text.depth).as_str()))
                            .with_attribute(("matrix", numbers(&matrix).as_str()))
                            .write_empty()?;
                        Ok(())
                    })?;
            }
            Ok(())
        })?;
    Ok(())
}

fn write_camera(w: &mut Writer<Vec<u8>>, scene: &SceneDesc) -> Result {
    let c = &scene.camera;
    let matrix: Vec<f64> = c.matrix.iter().flatten().copied().collect();
    let kind = c.kind.name();
    w.create_element("transform")
        .with_attribute(("matrix", numbers(&matrix).as_str()))
        .write_inner_content(|w| {
            w.create_element("camera")
                .with_attribute(("type", kind))
                .with_attribute(("fov", num(c.fov_degrees).as_str()))
                .with_attribute(("ortho_scale", num(c.ortho_scale).as_str()))
                .with_attribute(("nearclip", num(c.clip_start).as_str()))
                .with_attribute(("farclip", num(c.clip_end).as_str()))
                .write_empty()?;
            Ok(())
        })?;
    Ok(())
}

fn write_world(w: &mut Writer<Vec<u8>>, scene: &SceneDesc) -> Result {
    w.create_element("background").write_inner_content(|w| {
        w.create_element("background")
            .with_attribute(("name", "bg"))
            .with_attribute(("color", numbers(&scene.world.color).as_str()))
            .with_attribute(("strength", num(scene.world.strength).as_str()))
            .write_empty()?;
        connect(w, "bg background", "output surface")
    })?;
    Ok(())
}

fn write_shader(w: &mut Writer<Vec<u8>>, shader: &ShaderDesc) -> Result {
    let (name, material) = (shader.name.as_str(), shader.material);
    let color = numbers(&shader.color);
    w.create_element("shader")
        .with_attribute(("name", name))
        .write_inner_content(|w| {
            let node = match material {
                Material::Diffuse { roughness } => w
                    .create_element("diffuse_bsdf")
                    .with_attribute(("roughness", num(roughness).as_str())),
                Material::Glossy {
                    distribution,
                    roughness,
                    ior,
                } => w
                    .create_element("glossy_bsdf")
                    .with_attribute(("distribution", dist(distribution)))
                    .with_attribute(("roughness", num(roughness).as_str()))
                    .with_attribute(("ior", num(ior).as_str())),
                Material::Glass {
                    distribution,
                    roughness,
                    ior,
                } => w
                    .create_element("glass_bsdf")
                    .with_attribute(("distribution", dist(distribution)))
                    .with_attribute(("roughness", num(roughness).as_str()))
                    .with_attribute(("IOR", num(ior).as_str())),
            };
            node.with_attribute(("name", "bsdf"))
                .with_attribute(("color", color.as_str()))
                .write_empty()?;
            if shader.vertex_color {
                w.create_element("attribute")
                    .with_attribute(("name", "col"))
                    .with_attribute(("attribute", "Col"))
                    .write_empty()?;
                connect(w, "col color", "bsdf color")?;
            }
            connect(w, "bsdf bsdf", "output surface")
        })?;
    Ok(())
}

fn connect(w: &mut Writer<Vec<u8>>, from: &str, to: &str) -> Result {
    w.create_element("connect")
        .with_attribute(("from", from))
        .with_attribute(("to", to))
        .write_empty()?;
    Ok(())
}

fn dist(d: Distribution) -> &'static str {
    d.name()
}

/// A number with at most 6 decimals, trailing zeros and `-0` trimmed.
pub fn num(x: f64) -> String {
    let mut s = format!("{x:.6}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

fn numbers(xs: &[f64]) -> String {
    let parts: Vec<String> = xs.iter().map(|x| num(*x)).collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_stable() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(-0.0000001), "0");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(-2.5), "-2.5");
        assert_eq!(num(1.0 / 3.0), "0.333333");
    }
}
