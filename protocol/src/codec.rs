//! The one place that knows the wire format: bincode 2 (standard config) over serde, with a
//! hard size limit on both sides, and a 4-byte big-endian length prefix on streams.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, limits};

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ limits::MAX_MESSAGE }>()
}

/// Encodes `msg`; refuses to produce more than `max` bytes.
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, Error> {
    let bytes = bincode::serde::encode_to_vec(msg, config()).map_err(|e| Error::Encode {
        reason: e.to_string(),
    })?;
    if bytes.len() > max {
        return Err(Error::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

/// Decodes one whole message from `bytes`; refuses more than `max` bytes, malformed content and
/// trailing bytes. Never allocates more than the limit, whatever a length field inside claims.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, Error> {
    if bytes.len() > max {
        return Err(Error::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    let (msg, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| Error::Malformed {
            reason: e.to_string(),
        })?;
    if read != bytes.len() {
        return Err(Error::Malformed {
            reason: format!("{} trailing bytes after the message", bytes.len() - read),
        });
    }
    Ok(msg)
}

/// Checks a stream frame's length prefix before anything is read or allocated.
pub fn check_frame_len(prefix: [u8; 4], max: usize) -> Result<usize, Error> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(Error::TooLarge { size: len, max });
    }
    Ok(len)
}

/// The length prefix for a frame of `len` bytes.
pub fn frame_prefix(len: usize) -> [u8; 4] {
    (len as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Dependency;
    use crate::id::{BlobHash, JobId, NodeId, Term};
    use crate::job::{FrameRange, Job, JobSpec, Output, OutputFormat, TileGrid, Tiling, plan};
    use crate::message::{Assignment, Gossip, Heartbeat, Request, Response, Role};

    fn spec() -> JobSpec {
        JobSpec {
            name: "shot.blend".into(),
            blend: BlobHash::of(b"blend"),
            blend_size: 5,
            frames: FrameRange::new(1, 12).unwrap(),
            samples: Some(8),
            resolution_percent: Some(25),
            format: OutputFormat::Png,
            chunk: None,
            tiles: None,
            blender_version: Some("Blender 3.4.1".into()),
            blend_path: Some("/home/u/shot.blend".into()),
            deps: vec![Dependency {
                path: "/home/u/tex/a.png".into(),
                named: "//tex/a.png".into(),
                blob: BlobHash::of(b"a"),
                size: 1,
            }],
            missing: vec!["/home/u/tex/gone.png".into()],
            engine: Default::default(),
            keep_file_format: false,
        }
    }

    /// As many files as a spec may list, with paths as long as the limits allow.
    fn most_files(spec: &mut JobSpec) {
        let per = limits::MAX_DEPENDENCY_TEXT / limits::MAX_DEPENDENCIES / 2;
        spec.deps = (0..limits::MAX_DEPENDENCIES)
            .map(|i| {
                let path = format!("/{i:05}/{}", "p".repeat(per - 7));
                Dependency {
                    named: format!("//{}", &path[..per - 2]),
                    path,
                    blob: BlobHash::of(&i.to_le_bytes()),
                    size: u64::MAX,
                }
            })
            .collect();
        spec.missing.clear();
    }

    /// A finished job as large as the limits allow: every task done by a node with a real-length
    /// peer id, every task and frame with an output and its thumbnail.
    fn largest_job(spec: JobSpec) -> Job {
        let plan = plan(&spec, 1);
        let mut job = Job::new(JobId([1; 16]), spec, node("o"), plan, Term(1), 5);
        let worker = node("12D3KooWLjtgLwd9dJfpwSpXbMN5VXtWzgY3iVvzzcT2j9XB6J1f");
        for i in 0..job.tasks.len() as u32 {
            let attempt = job.assign(i, worker.clone(), Term(1)).unwrap();
            let frames = job.tasks[i as usize].frames;
            let outputs = frames
                .iter()
                .map(|frame| Output {
                    frame,
                    blob: BlobHash::of(&frame.to_le_bytes()),
                    size: u64::MAX,
                    thumb: Some(BlobHash::of(b"thumbnail")),
                })
                .collect();
            job.complete(i, attempt, &worker, outputs, Term(1)).unwrap();
        }
        for frame in job.frames_to_stitch() {
            let output = Output {
                frame,
                blob: BlobHash::of(b"stitched"),
                size: u64::MAX,
                thumb: Some(BlobHash::of(b"thumbnail")),
            };
            job.add_stitched(output, Term(1)).unwrap();
        }
        job
    }

    fn node(s: &str) -> NodeId {
        NodeId::from_bytes(s.as_bytes()).expect("a node id")
    }

    #[test]
    fn every_request_round_trips() {
        let requests = vec![
            Request::BlobInfo(BlobHash::of(b"x")),
            Request::BlobChunk {
                hash: BlobHash::of(b"x"),
                index: 7,
            },
            Request::Submit {
                id: JobId([3; 16]),
                spec: spec(),
            },
            Request::Cancel(JobId([4; 16])),
            Request::Remove(JobId([5; 16])),
            Request::Assign(Assignment {
                term: Term(3),
                job: JobId([1; 16]),
                task: 2,
                attempt: 1,
                version: Default::default(),
                frames: FrameRange::new(5, 8).unwrap(),
                tile: Some(crate::render::Tile {
                    col: 1,
                    row: 2,
                    cols: 4,
                    rows: 4,
                }),
                spec: spec(),
                origin: node("origin"),
            }),
            Request::GetJob(JobId([9; 16])),
            Request::GetJobSince {
                id: JobId([9; 16]),
                since: crate::Version {
                    term: Term(2),
                    seq: 40,
                },
            },
            Request::Steer {
                job: JobId([9; 16]),
                steer: crate::Steer::Priority(80),
            },
            Request::Steer {
                job: JobId([9; 16]),
                steer: crate::Steer::Pause,
            },
        ];
        for r in requests {
            let bytes = encode(&r, limits::MAX_MESSAGE).unwrap();
            assert_eq!(decode::<Request>(&bytes, limits::MAX_MESSAGE).unwrap(), r);
        }
    }

    #[test]
    fn responses_and_heartbeats_round_trip() {
        let mut tiled = spec();
        tiled.tiles = Some(Tiling::Grid(TileGrid { cols: 2, rows: 3 }));
        // Changes that hold every task of the largest record fit in a message too.
        let largest = largest_job(spec());
        let every_task = crate::JobChanges::between(&largest.without_tasks(), &largest).unwrap();
        assert_eq!(every_task.tasks.len(), largest.tasks.len());
        let responses = vec![
            Response::Job(Box::new(largest_job(spec()))),
            Response::Job(Box::new(largest_job(tiled))),
            Response::JobChanges(Box::new(every_task)),
            Response::BlobChunk(vec![1, 2, 3]),
            Response::BlobInfo {
                size: 3 << 20,
                chunks: vec![[1; 32], [2; 32], [3; 32]],
            },
            Response::NotCoordinator(Some(node("c"))),
            Response::BlobHave {
                chunks: 10,
                held: crate::chunk_bits(&[
                    true, false, true, true, false, false, false, false, true, true,
                ]),
                coming: crate::chunk_bits(&[false; 10]),
            },
            Response::Rejected("stale term".into()),
        ];
        for r in responses {
            let bytes = encode(&r, limits::MAX_MESSAGE).unwrap();
            assert_eq!(decode::<Response>(&bytes, limits::MAX_MESSAGE).unwrap(), r);
        }
        let hb = heartbeat();
        let members = Response::Members {
            version: crate::Version {
                term: Term(2),
                seq: 7,
            },
            members: vec![crate::Member {
                id: node("w"),
                heartbeat: hb.clone(),
            }],
        };
        let digests = Response::Digests(vec![crate::JobDigest {
            id: JobId([3; 16]),
            version: Default::default(),
        }]);
        for r in [members, digests] {
            let bytes = encode(&r, limits::MAX_MESSAGE).unwrap();
            assert_eq!(decode::<Response>(&bytes, limits::MAX_MESSAGE).unwrap(), r);
        }
        for r in [
            Request::Alive(hb.clone()),
            Request::Members,
            Request::Digests,
            Request::BlobHave(BlobHash::of(b"x")),
            Request::GiveBack {
                job: JobId([3; 16]),
                task: 4,
                attempt: 2,
            },
        ] {
            let bytes = encode(&r, limits::MAX_MESSAGE).unwrap();
            assert_eq!(decode::<Request>(&bytes, limits::MAX_MESSAGE).unwrap(), r);
        }
        let hb = Gossip::Heartbeat(hb);
        let bytes = encode(&hb, limits::MAX_GOSSIP).unwrap();
        assert_eq!(decode::<Gossip>(&bytes, limits::MAX_GOSSIP).unwrap(), hb);
    }

    fn heartbeat() -> Heartbeat {
        Heartbeat {
            seq: 9,
            name: "lab-1".into(),
            role: Role::Worker,
            cores: 2,
            memory: 1 << 30,
            blender: Some("Blender 3.4.1".into()),
            engines: vec![crate::render::Engine::Cycles],
            confinement: crate::Confinement::Unsandboxed,
            load: 0.5,
            current: None,
            held: Vec::new(),
            term: Term(2),
            coordinator: Some(node("c")),
            claims: false,
            jobs: vec![],
            addrs: vec!["/ip4/127.0.0.1/tcp/1/p2p/x".into()],
            disk_free: Some(5 << 30),
            low_disk: true,
            leaving: true,
            table: crate::TableDigest::of([(&JobId([1; 16]), Default::default())]),
            members: Some(Default::default()),
        }
    }

    /// A heartbeat the coordinator serves to every node in its membership record is bounded
    /// field by field, so that one node cannot make everyone's record large.
    #[test]
    fn a_heartbeat_out_of_bounds_is_named() {
        assert!(heartbeat().validate().is_ok());
        let mut long = heartbeat();
        long.name = "x".repeat(limits::MAX_NAME_LEN + 1);
        let mut addrs = heartbeat();
        addrs.addrs = vec!["/ip4/127.0.0.1".into(); limits::MAX_ADDRS + 1];
        let mut jobs = heartbeat();
        jobs.jobs = vec![
            crate::JobDigest {
                id: JobId([1; 16]),
                version: Default::default()
            };
            limits::MAX_DIGESTS + 1
        ];
        let mut load = heartbeat();
        load.load = f32::NAN;
        for (hb, what) in [
            (long, "name"),
            (addrs, "addresses"),
            (jobs, "job digests"),
            (load, "load"),
        ] {
            let err = hb.validate().unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
    }

    /// Two tables digest alike exactly when they hold the same versions of the same jobs.
    #[test]
    fn table_digests_differ_with_any_version() {
        let v = |term, seq| crate::Version {
            term: Term(term),
            seq,
        };
        let (a, b) = (JobId([1; 16]), JobId([2; 16]));
        let one = crate::TableDigest::of([(&a, v(1, 1)), (&b, v(1, 2))]);
        assert_eq!(one, crate::TableDigest::of([(&a, v(1, 1)), (&b, v(1, 2))]));
        assert_eq!(one.count, 2);
        assert_ne!(one, crate::TableDigest::of([(&a, v(1, 1)), (&b, v(1, 3))]));
        assert_ne!(one, crate::TableDigest::of([(&a, v(1, 1)), (&b, v(2, 2))]));
        assert_ne!(one, crate::TableDigest::of([(&a, v(1, 1))]));
        assert_ne!(crate::TableDigest::of([]), crate::TableDigest::default());
    }

    #[test]
    fn oversized_messages_are_refused_on_both_sides() {
        let big = Response::BlobChunk(vec![0; 2048]);
        assert!(matches!(
            encode(&big, 1024),
            Err(Error::TooLarge { max: 1024, .. })
        ));
        let bytes = encode(&big, limits::MAX_MESSAGE).unwrap();
        assert!(matches!(
            decode::<Response>(&bytes, 1024),
            Err(Error::TooLarge { .. })
        ));
        assert!(check_frame_len([0xff, 0xff, 0xff, 0xff], limits::MAX_MESSAGE).is_err());
        assert_eq!(check_frame_len(frame_prefix(10), 10).unwrap(), 10);
    }

    #[test]
    fn malformed_bytes_are_refused_with_a_reason() {
        // An unknown enum variant.
        let err = decode::<Request>(&[200, 1, 2, 3], limits::MAX_MESSAGE).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
        // A truncated message.
        let bytes = encode(&Request::Cancel(JobId([4; 16])), limits::MAX_MESSAGE).unwrap();
        assert!(decode::<Request>(&bytes[..bytes.len() - 1], limits::MAX_MESSAGE).is_err());
        // Trailing garbage.
        let mut long = bytes.clone();
        long.push(0);
        let err = decode::<Request>(&long, limits::MAX_MESSAGE).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn a_length_field_claiming_gigabytes_does_not_allocate_them() {
        // BlobChunk variant (1), then a varint length of u64::MAX-ish.
        let mut bytes = vec![1u8, 251];
        bytes.extend_from_slice(&u16::MAX.to_le_bytes());
        let mut evil = vec![1u8, 253];
        evil.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        for b in [bytes, evil] {
            assert!(decode::<Response>(&b, limits::MAX_MESSAGE).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(0u8..=255, 0..512)) {
            let _ = decode::<Request>(&bytes, limits::MAX_MESSAGE);
            let _ = decode::<Response>(&bytes, limits::MAX_MESSAGE);
            let _ = decode::<Gossip>(&bytes, limits::MAX_GOSSIP);
        }
    }

    #[test]
    fn the_largest_jobs_fit_in_one_message() {
        let mut frames = spec();
        frames.frames = FrameRange::new(1, limits::MAX_JOB_FRAMES).unwrap();
        frames.chunk = Some(1);
        let mut tiles = spec();
        tiles.frames = FrameRange::new(1, limits::MAX_TILED_TASKS / 16).unwrap();
        tiles.tiles = Some(Tiling::Grid(TileGrid { cols: 4, rows: 4 }));
        tiles.validate().unwrap();
        for mut spec in [frames, tiles] {
            most_files(&mut spec);
            for dep in &mut spec.deps {
                dep.size = limits::MAX_BLOB;
            }
            spec.validate().unwrap();
            let job = largest_job(spec);
            let bytes = encode(&Response::Job(Box::new(job)), limits::MAX_MESSAGE).unwrap();
            assert!(bytes.len() < limits::MAX_MESSAGE, "{} bytes", bytes.len());
        }
    }
}
