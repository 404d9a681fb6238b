//! Identifiers: content hashes of blobs, job ids, node ids and coordinator terms.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The blake3 hash of a blob's whole content: the blob's name everywhere in the mesh.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    /// Hashes `bytes` with blake3.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", self.short())
    }
}

impl FromStr for BlobHash {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::BadId {
            kind: "blob hash",
            text: s.to_owned(),
            expected: "64 hex digits",
        })?;
        Ok(Self(out))
    }
}

/// A job's id: 16 random bytes chosen by the node the job was submitted to.
///
/// Chosen by the submitter (not the coordinator) so that re-submitting after a coordinator
/// change is idempotent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub [u8; 16]);

impl JobId {
    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.short())
    }
}

impl FromStr for JobId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::BadId {
            kind: "job id",
            text: s.to_owned(),
            expected: "32 hex digits",
        })?;
        Ok(Self(out))
    }
}

/// A node: the bytes of its libp2p peer id (a multihash of its public key), shown as the
/// peer id's base58 text.
///
/// The protocol crate does not depend on libp2p: the node crate converts a `PeerId` to and
/// from a `NodeId` byte for byte, and checks that every `NodeId` it receives is a peer id.
/// Ordering is the bytes', which makes elections deterministic. The bytes are shared, so a
/// clone (the core makes many: every record and message names nodes) allocates nothing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<[u8]>);

impl NodeId {
    /// The most bytes a node id holds (an Ed25519 peer id holds 38, any peer id at most 66).
    pub const MAX_LEN: usize = 80;

    /// The node whose peer id is `bytes` (at most [`NodeId::MAX_LEN`] of them: longer ones are
    /// refused).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return Err(Error::BadId {
                kind: "node id",
                text: format!("{} bytes", bytes.len()),
                expected: "1 to 80 bytes of a peer id",
            });
        }
        Ok(Self(bytes.into()))
    }

    /// The peer id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The last 6 characters of its text, for logs (peer ids share their prefix).
    pub fn short(&self) -> String {
        let text = self.to_string();
        text[text.len().saturating_sub(6)..].to_owned()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(&self.0).into_string())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = Error;

    /// Reads a peer id's base58 text.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadId {
            kind: "node id",
            text: s.to_owned(),
            expected: "a peer id in base58",
        };
        let bytes = bs58::decode(s).into_vec().map_err(|_| bad())?;
        Self::from_bytes(bytes).map_err(|_| bad())
    }
}

/// Base58 text in human-readable formats (JSON), the bytes on the wire (bincode); either way
/// at most [`NodeId::MAX_LEN`] bytes.
impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            let bytes = <Vec<u8>>::deserialize(d)?;
            Self::from_bytes(bytes).map_err(serde::de::Error::custom)
        }
    }
}

/// A coordinator term. Terms only grow; a higher term deposes a lower one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Term(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Hex text in human-readable formats (JSON), raw bytes on the wire (bincode).
macro_rules! hex_serde {
    ($t:ty, $n:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_string())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = String::deserialize(d)?;
                    text.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; $n]>::deserialize(d).map(Self)
                }
            }
        }
    };
}

hex_serde!(BlobHash, 32);
hex_serde!(JobId, 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_back_from_their_text() {
        let h = BlobHash::of(b"frame");
        assert_eq!(h.to_string().parse::<BlobHash>().unwrap(), h);
        let j = JobId([7; 16]);
        assert_eq!(j.to_string().parse::<JobId>().unwrap(), j);
        let n = NodeId::from_bytes(*b"\x00\x24\x08\x01\x12\x20peer").unwrap();
        assert_eq!(n.to_string().parse::<NodeId>().unwrap(), n);
        assert!("0OIl".parse::<NodeId>().is_err(), "not base58");
        assert!(NodeId::from_bytes(vec![1; NodeId::MAX_LEN + 1]).is_err());
        assert!(NodeId::from_bytes(Vec::new()).is_err());
        let err = "xyz".parse::<BlobHash>().unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
        assert!("00".parse::<JobId>().is_err());
    }
}
