//! The mesh secret: a pre-shared key that keeps strangers out.
//!
//! A node started with `--secret-file FILE` wraps every TCP connection in libp2p's private
//! network layer (`pnet`, XSalsa20 keyed by the secret) before Noise even starts, so a node
//! without the same secret cannot complete a handshake: it never sees a heartbeat, a job or a
//! blob, and nobody sees it. `pnet` cannot wrap QUIC, so a node with a secret does not use QUIC.
//!
//! The file holds either a key in the IPFS `swarm.key` format (what `rendermesh secret new`
//! writes; go-libp2p and Kubo read the same file) or a passphrase, from which the key is derived
//! with blake3's key derivation. Nodes compare secrets by [`MeshSecret::fingerprint`], which
//! `rendermesh peers` prints and which reveals nothing of the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use libp2p::pnet::PreSharedKey;

/// The blake3 key-derivation context for passphrases. Never change it: every mesh's key would.
const PASSPHRASE_CONTEXT: &str = "rendermesh 2026-11 mesh secret from a passphrase";

/// The header of the IPFS `swarm.key` format.
const KEY_FILE_HEADER: &str = "/key/swarm/psk/1.0.0/";

/// The shortest passphrase accepted.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The file cannot be read or written.
    #[error("mesh secret file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file starts like a `swarm.key` but its key is malformed.
    #[error(
        "mesh secret file `{path}`: not a valid swarm.key ({reason}); expected `{KEY_FILE_HEADER}`, `/base16/` and 64 hex digits on three lines"
    )]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The passphrase is too short to keep anybody out.
    #[error(
        "mesh secret file `{path}`: the passphrase has {chars} characters; use at least {MIN_PASSPHRASE_CHARS}, or `rendermesh secret new FILE` for a random key"
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length in characters.
        chars: usize,
    },
    /// The file to create already exists.
    #[error("mesh secret file `{0}` already exists; it is not overwritten")]
    Exists(PathBuf),
}

/// A mesh's pre-shared key.
#[derive(Clone, Copy)]
pub struct MeshSecret(PreSharedKey);

impl fmt::Debug for MeshSecret {
    /// Shows the fingerprint, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeshSecret({})", self.fingerprint())
    }
}

impl MeshSecret {
    /// Reads a secret file: a `swarm.key` or a passphrase (surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| e.at(path))
    }

    fn parse(text: &str) -> Result<Self, Unplaced> {
        if text.trim_start().starts_with(KEY_FILE_HEADER) {
            return PreSharedKey::from_str(text.trim())
                .map(Self)
                .map_err(|e| Unplaced::BadKeyFile(e.to_string()));
        }
        let passphrase = text.trim();
        let chars = passphrase.chars().count();
        if chars < MIN_PASSPHRASE_CHARS {
            return Err(Unplaced::TooShort(chars));
        }
        Ok(Self::from_passphrase(passphrase))
    }

    /// The key derived from a passphrase: the same passphrase gives the same key everywhere.
    pub fn from_passphrase(passphrase: &str) -> Self {
        Self(PreSharedKey::new(blake3::derive_key(
            PASSPHRASE_CONTEXT,
            passphrase.as_bytes(),
        )))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self(PreSharedKey::new(rand::random()))
    }

    /// Writes the key to a new file in the `swarm.key` format, readable by its owner only.
    pub fn create_file(&self, path: &Path) -> Result<(), SecretError> {
        use std::io::Write;
        let io = |source| SecretError::Io {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                SecretError::Exists(path.to_owned())
            } else {
                io(e)
            }
        })?;
        file.write_all(self.0.to_key_file().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)
    }

    /// A short public name for the key: equal fingerprints, equal keys (go-libp2p's fingerprint).
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint().to_string()
    }

    /// The key, for the transport.
    pub(crate) fn key(&self) -> PreSharedKey {
        self.0
    }
}

/// A parse error before the path is known.
#[derive(Debug)]
enum Unplaced {
    BadKeyFile(String),
    TooShort(usize),
}

impl Unplaced {
    fn at(self, path: &Path) -> SecretError {
        let path = path.to_owned();
        match self {
            Self::BadKeyFile(reason) => SecretError::BadKeyFile { path, reason },
            Self::TooShort(chars) => SecretError::TooShort { path, chars },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_gives_the_same_key_everywhere_and_another_a_different_one() {
        let a = MeshSecret::parse("correct horse battery staple\n").unwrap();
        let b = MeshSecret::parse("  correct horse battery staple  ").unwrap();
        let c = MeshSecret::parse("correct horse battery stapler").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn a_generated_key_survives_its_file_and_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.key");
        let secret = MeshSecret::generate();
        secret.create_file(&path).unwrap();
        assert_eq!(
            MeshSecret::load(&path).unwrap().fingerprint(),
            secret.fingerprint()
        );
        assert_ne!(
            MeshSecret::generate().fingerprint(),
            secret.fingerprint(),
            "two generated keys are equal"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = secret.create_file(&path).unwrap_err();
        assert!(matches!(again, SecretError::Exists(_)), "{again}");
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.key");
        std::fs::write(&short, "abc\n").unwrap();
        let e = MeshSecret::load(&short).unwrap_err().to_string();
        assert!(e.contains("short.key") && e.contains("3 characters"), "{e}");

        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "/key/swarm/psk/1.0.0/\n/base16/\nnot-hex\n").unwrap();
        let e = MeshSecret::load(&bad).unwrap_err().to_string();
        assert!(
            e.contains("bad.key") && e.contains("not a valid swarm.key"),
            "{e}"
        );

        let missing = dir.path().join("missing.key");
        let e = MeshSecret::load(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.key"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secret = MeshSecret::from_passphrase("correct horse battery staple");
        let key_file = secret.key().to_key_file();
        let hex = key_file.lines().nth(2).unwrap();
        let shown = format!("{secret:?}");
        assert!(!shown.contains(hex), "{shown}");
        assert!(shown.contains(&secret.fingerprint()), "{shown}");
    }
}
