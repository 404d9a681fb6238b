//! The files a job's `.blend` uses besides itself: textures, linked libraries, fonts, sounds,
//! caches. Each travels as its own blob, named by its content hash, so a texture shared by many
//! jobs crosses the network once per node.
//!
//! A dependency is identified by where it was on the submitting machine: an absolute,
//! normalised path ([`check_path`]). A worker lays every file of a job out under a directory of
//! its own by *mirroring* those paths (`/home/u/proj/tex/a.png` becomes
//! `ROOT/home/u/proj/tex/a.png`, the `.blend` too), so that every relative path the `.blend` or
//! its libraries hold resolves as it did on the submitting machine; the settings script then
//! points every path at `ROOT` + its original absolute path, so Blender reads nothing outside
//! the job's directory. Paths come from another machine: [`check_path`] refuses anything that
//! could climb out of `ROOT`.

use serde::{Deserialize, Serialize};

use crate::id::BlobHash;
use crate::{Error, limits};

/// One external file of a job, shipped by hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dependency {
    /// Where the file was on the submitting machine: absolute and normalised (see
    /// [`check_path`]). The worker lays it out at `ROOT` + this path.
    pub path: String,
    /// The path as the `.blend` (or the library that uses it) names it, e.g. `//tex/a.png`:
    /// for messages only.
    pub named: String,
    /// The file's content hash.
    pub blob: BlobHash,
    /// The file's size in bytes.
    pub size: u64,
}

/// Checks that `path` is absolute and normalised: it starts with `/`, every component between
/// slashes is non-empty and neither `.` nor `..`, it holds no NUL byte, no component is longer
/// than 255 bytes and the whole is at most [`limits::MAX_PATH_LEN`] bytes. Such a path, appended
/// to a directory, always names something inside that directory.
pub fn check_path(field: &'static str, path: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::BadSpec {
        field,
        reason: format!("`{}`: {reason}", shorten(path)),
    };
    if path.len() > limits::MAX_PATH_LEN {
        return Err(bad(&format!("longer than {} bytes", limits::MAX_PATH_LEN)));
    }
    if path.contains('\0') {
        return Err(bad("holds a NUL byte"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("not an absolute path"));
    };
    for part in rest.split('/') {
        match part {
            "" => return Err(bad("has an empty component (`//`, or a trailing `/`)")),
            "." | ".." => return Err(bad("is not normalised (holds `.` or `..`)")),
            p if p.len() > 255 => return Err(bad("has a component longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a job's file list: at most [`limits::MAX_DEPENDENCIES`] files whose paths take at
/// most [`limits::MAX_DEPENDENCY_TEXT`] bytes (so a job record stays well under
/// [`limits::MAX_MESSAGE`]), every path valid
/// ([`check_path`]) and distinct from the others and from `blend_path`, no file where another
/// needs a directory (`/a/b` and `/a/b/c`), every size at most [`limits::MAX_BLOB`], names
/// bounded.
pub fn check_dependencies(blend_path: &str, deps: &[Dependency]) -> Result<(), Error> {
    check_path("blend-path", blend_path)?;
    if deps.len() > limits::MAX_DEPENDENCIES {
        return Err(Error::BadSpec {
            field: "dependencies",
            reason: format!(
                "{} files; a job ships at most {}",
                deps.len(),
                limits::MAX_DEPENDENCIES
            ),
        });
    }
    let mut paths: Vec<&str> = Vec::with_capacity(deps.len() + 1);
    paths.push(blend_path);
    for dep in deps {
        check_path("dependencies", &dep.path)?;
        if dep.named.len() > limits::MAX_PATH_LEN {
            return Err(Error::BadSpec {
                field: "dependencies",
                reason: format!(
                    "the name of `{}` is longer than {} bytes",
                    shorten(&dep.path),
                    limits::MAX_PATH_LEN
                ),
            });
        }
        if dep.size > limits::MAX_BLOB {
            return Err(Error::BadSpec {
                field: "dependencies",
                reason: format!(
                    "`{}` is {} bytes; a file may be at most {} bytes",
                    shorten(&dep.path),
                    dep.size,
                    limits::MAX_BLOB
                ),
            });
        }
        paths.push(&dep.path);
    }
    let text: usize = deps.iter().map(|d| d.path.len() + d.named.len()).sum();
    if text > limits::MAX_DEPENDENCY_TEXT {
        return Err(Error::BadSpec {
            field: "dependencies",
            reason: format!(
                "their paths take {text} bytes; a job's paths may take at most {} bytes",
                limits::MAX_DEPENDENCY_TEXT
            ),
        });
    }
    // Sorted, a path that is a directory of another sorts right before some path that it
    // prefixes followed by `/`; equal paths sort next to each other.
    paths.sort_unstable();
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            if a == b {
                return Err(Error::BadSpec {
                    field: "dependencies",
                    reason: format!("`{}` is listed twice", shorten(a)),
                });
            }
            match b.strip_prefix(a) {
                Some(rest) if rest.starts_with('/') => {
                    return Err(Error::BadSpec {
                        field: "dependencies",
                        reason: format!(
                            "`{}` is a file, but `{}` needs it to be a directory",
                            shorten(a),
                            shorten(b)
                        ),
                    });
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    Ok(())
}

/// The total size of `deps`, or `None` if it overflows.
pub fn total_size(deps: &[Dependency]) -> Option<u64> {
    deps.iter().try_fold(0u64, |sum, d| sum.checked_add(d.size))
}

/// At most 200 bytes of `path` for a message, cut on a character boundary.
fn shorten(path: &str) -> String {
    const MAX: usize = 200;
    if path.len() <= MAX {
        return path.to_owned();
    }
    let mut end = MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(path: &str) -> Dependency {
        Dependency {
            path: path.into(),
            named: format!("//{}", path.rsplit('/').next().unwrap_or("")),
            blob: BlobHash::of(path.as_bytes()),
            size: 10,
        }
    }

    fn reason(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn paths_must_be_absolute_and_normalised() {
        for good in ["/a", "/home/u/proj/tex/a.png", "/a b/ü/c.png", "/.hidden/x"] {
            check_path("p", good).unwrap();
        }
        for (bad, why) in [
            ("", "not an absolute path"),
            ("tex/a.png", "not an absolute path"),
            ("//tex/a.png", "empty component"),
            ("/a//b", "empty component"),
            ("/a/b/", "empty component"),
            ("/", "empty component"),
            ("/a/../../etc/passwd", "not normalised"),
            ("/a/./b", "not normalised"),
            ("/a/\0b", "NUL"),
        ] {
            let e = reason(check_path("dependencies", bad).unwrap_err());
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.starts_with("bad dependencies"), "{e}");
        }
        let long = format!("/{}", "a".repeat(300));
        assert!(reason(check_path("p", &long).unwrap_err()).contains("longer than 255"));
        let huge = "/abc".repeat(limits::MAX_PATH_LEN);
        let e = reason(check_path("p", &huge).unwrap_err());
        assert!(e.contains("longer than") && e.len() < 400, "{e}");
    }

    #[test]
    fn a_file_list_is_refused_by_name_when_it_cannot_be_laid_out() {
        let blend = "/p/shot.blend";
        check_dependencies(blend, &[dep("/p/tex/a.png"), dep("/p/tex/b.png")]).unwrap();
        check_dependencies(blend, &[]).unwrap();

        let twice = check_dependencies(blend, &[dep("/p/a.png"), dep("/p/a.png")]).unwrap_err();
        assert!(reason(twice).contains("`/p/a.png` is listed twice"));
        let blend_too = check_dependencies(blend, &[dep(blend)]).unwrap_err();
        assert!(reason(blend_too).contains("listed twice"));
        let dir =
            reason(check_dependencies(blend, &[dep("/p/tex"), dep("/p/tex/a.png")]).unwrap_err());
        assert!(
            dir.contains("`/p/tex` is a file, but `/p/tex/a.png` needs it"),
            "{dir}"
        );
        // A sibling sharing a prefix is not a directory of it.
        check_dependencies(blend, &[dep("/p/tex"), dep("/p/tex.png"), dep("/p/tex2/a")]).unwrap();
        let climbing = check_dependencies(blend, &[dep("/p/../../etc/passwd")]).unwrap_err();
        assert!(reason(climbing).contains("not normalised"));
        let relative_blend = check_dependencies("shot.blend", &[]).unwrap_err();
        assert!(reason(relative_blend).contains("bad blend-path"));
    }

    #[test]
    fn file_lists_are_bounded() {
        let many: Vec<Dependency> = (0..=limits::MAX_DEPENDENCIES)
            .map(|i| dep(&format!("/p/seq/f_{i:05}.png")))
            .collect();
        let e = reason(check_dependencies("/p/s.blend", &many).unwrap_err());
        assert!(
            e.contains(&format!("at most {}", limits::MAX_DEPENDENCIES)),
            "{e}"
        );

        let long: Vec<Dependency> = (0..1100)
            .map(|i| dep(&format!("/p/{}{i}.png", "d/".repeat(500))))
            .collect();
        let e = reason(check_dependencies("/p/s.blend", &long).unwrap_err());
        assert!(e.contains("paths take"), "{e}");

        let mut big = dep("/p/huge.vdb");
        big.size = limits::MAX_BLOB + 1;
        let e = reason(check_dependencies("/p/s.blend", &[big.clone()]).unwrap_err());
        assert!(
            e.contains("`/p/huge.vdb` is") && e.contains("at most"),
            "{e}"
        );

        big.size = u64::MAX;
        assert_eq!(total_size(&[big.clone(), big]), None);
        assert_eq!(total_size(&[dep("/a"), dep("/b")]), Some(20));
    }
}
