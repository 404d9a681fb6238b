//! The mesh secret: a pre-shared key that keeps strangers out, and the join token that carries
//! it to another machine.
//!
//! Every connection is wrapped in libp2p's private network layer (`pnet`, XSalsa20 keyed by the
//! secret) before Noise even starts, so a node without the same key cannot complete a
//! handshake: it never sees a heartbeat, a job or a blob, and nobody sees it. (`pnet` cannot
//! wrap QUIC, one reason rendermesh runs over TCP only.)
//!
//! A mesh is keyed by default: the first node on a machine creates a random key in the
//! machine's key file ([`machine_key_path`]), and every node on that machine (`rendermesh
//! node`, and the embedded nodes of `render` and `chart`) uses it. A node prints a
//! [`JoinToken`], which carries the key and the node's addresses: `rendermesh node --join
//! <token>` on another machine stores the key there and joins through those addresses.
//!
//! A `--secret-file` holds either a key in the IPFS `swarm.key` format (what `rendermesh secret
//! new` writes; go-libp2p and Kubo read the same file) or a passphrase, from which the key is
//! derived with Argon2id ([`MeshSecret::from_passphrase`]). Nodes compare secrets by
//! [`MeshSecret::fingerprint`], which is too short to confirm a guessed passphrase.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

/// The Argon2id salt for passphrases. It is fixed, because every machine must derive the same
/// key from the same passphrase with nothing shared beforehand. Never change it: every
/// passphrase mesh's key would change.
pub const PASSPHRASE_SALT: &[u8] = b"rendermesh 2026-11 mesh secret from a passphrase";
/// Argon2id's memory for a passphrase, in KiB (64 MiB).
pub const PASSPHRASE_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id's passes over that memory.
pub const PASSPHRASE_PASSES: u32 = 3;

/// The blake3 key-derivation context of the fingerprint. Never change it.
const FINGERPRINT_CONTEXT: &str = "rendermesh 2026-11 mesh secret fingerprint";
/// The fingerprint's alphabet (Crockford's base32, lowercase): 5 bits per character.
const FINGERPRINT_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// The fingerprint's length: 5 characters, 25 bits.
const FINGERPRINT_CHARS: usize = 5;

/// The header of the IPFS `swarm.key` format.
const KEY_FILE_HEADER: &str = "/key/swarm/psk/1.0.0/";

/// The shortest passphrase accepted.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// What every join token starts with (its format's version).
pub const TOKEN_PREFIX: &str = "rm1";
/// The most addresses a join token carries.
pub const MAX_TOKEN_ADDRS: usize = 4;

/// The machine's directory, shared by every node on the machine (its key, and what its
/// Blender renders with): `$RENDERMESH_HOME`, else `$XDG_CONFIG_HOME/rendermesh`, else
/// `~/.config/rendermesh`, else `fallback` (a node's data directory) when there is no home.
pub fn machine_dir(fallback: &Path) -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("RENDERMESH_HOME")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("rendermesh")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config").join("rendermesh")))
        .unwrap_or_else(|| fallback.to_owned())
}

/// The machine's key file: `mesh.key` in [`machine_dir`].
pub fn machine_key_path(fallback: &Path) -> PathBuf {
    machine_dir(fallback).join("mesh.key")
}

/// Where the key a node runs with came from ([`choose`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `--secret-file`.
    File(PathBuf),
    /// `--open`: no key.
    Open,
    /// A `--join` token, whose key is this machine's from now on; `replaced` is the key the
    /// machine held before, when it held another.
    Joined {
        /// The machine's key file.
        path: PathBuf,
        /// The key it replaced.
        replaced: Option<MeshSecret>,
    },
    /// This machine's key; `created` when this start made it.
    Machine {
        /// The machine's key file.
        path: PathBuf,
        /// Made by this start.
        created: bool,
    },
}

impl KeySource {
    /// What a person should be told at start, if anything.
    pub fn notice(&self, secret: Option<&MeshSecret>) -> Option<String> {
        let fingerprint = secret.map(MeshSecret::fingerprint).unwrap_or_default();
        match self {
            Self::Joined {
                path,
                replaced: Some(old),
            } => Some(format!(
                "this machine is now in mesh {fingerprint} (its key is in {}); it was in mesh {} before",
                path.display(),
                old.fingerprint()
            )),
            Self::Joined {
                path,
                replaced: None,
            } => Some(format!(
                "this machine is now in mesh {fingerprint} (its key is in {})",
                path.display()
            )),
            Self::Machine {
                path,
                created: true,
            } => Some(format!(
                "created this machine's mesh key {} (mesh {fingerprint})",
                path.display()
            )),
            Self::Open => Some(
                "warning: open mesh (--open): any process that reaches this node can join the \
                 mesh, read every job and its files, and send it work"
                    .to_owned(),
            ),
            Self::File(_) | Self::Machine { created: false, .. } => None,
        }
    }
}

/// The key a node runs with: `secret_file`'s; none when `open`; `join`'s, which becomes the
/// machine's key (in `machine_key`); else the machine's key, created on first use.
pub fn choose(
    secret_file: Option<&Path>,
    open: bool,
    join: Option<&JoinToken>,
    machine_key: &Path,
) -> Result<(Option<MeshSecret>, KeySource), SecretError> {
    if let Some(file) = secret_file {
        return Ok((
            Some(MeshSecret::load(file)?),
            KeySource::File(file.to_owned()),
        ));
    }
    if open {
        return Ok((None, KeySource::Open));
    }
    let path = machine_key.to_owned();
    if let Some(token) = join {
        let held = MeshSecret::load(&path).ok();
        if held != Some(token.secret) {
            token.secret.replace_file(&path)?;
        }
        let replaced = held.filter(|h| *h != token.secret);
        return Ok((Some(token.secret), KeySource::Joined { path, replaced }));
    }
    let (secret, created) = MeshSecret::load_or_create(&path)?;
    Ok((Some(secret), KeySource::Machine { path, created }))
}

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

/// Why a join token cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// It does not start with [`TOKEN_PREFIX`].
    #[error(
        "not a rendermesh join token: it should start with `{TOKEN_PREFIX}` (copy the whole `--join` argument a node printed)"
    )]
    NotAToken,
    /// A character that no token has.
    #[error("join token: {found:?} at character {at} cannot be part of a token; it was mistyped")]
    BadCharacter {
        /// The character.
        found: char,
        /// Its position, from 1, in the whole token.
        at: usize,
    },
    /// The checksum does not match: a character changed, or the token was cut short.
    #[error("join token: its checksum does not match; it was mistyped or cut short")]
    Checksum,
    /// Well-checksummed but malformed (made by another version?).
    #[error("join token: {0}")]
    Malformed(String),
}

/// A mesh's pre-shared key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MeshSecret([u8; 32]);

impl fmt::Debug for MeshSecret {
    /// Shows the fingerprint, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeshSecret({})", self.fingerprint())
    }
}

impl MeshSecret {
    /// Reads a secret file: a `swarm.key` or a passphrase (surrounding whitespace ignored).
    /// A file that others may read is used, with a warning.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
            path: path.to_owned(),
            source,
        })?;
        if let Some(mode) = readable_by_others(path) {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                "the mesh secret file can be read by other users: run `chmod 600` on it");
        }
        Self::parse(&text).map_err(|e| e.at(path))
    }

    /// The machine's key at `path`: read if it exists, else a new random key written there
    /// (its directory created owner-only). Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SecretError> {
        if path.exists() {
            return Self::load(path).map(|s| (s, false));
        }
        create_private_dir(path.parent().unwrap_or(Path::new("."))).map_err(|source| {
            SecretError::Io {
                path: path.to_owned(),
                source,
            }
        })?;
        let secret = Self::generate();
        match secret.create_file(path) {
            Ok(()) => Ok((secret, true)),
            // Another node on this machine created it a moment ago: use theirs.
            Err(SecretError::Exists(_)) => Self::load(path).map(|s| (s, false)),
            Err(e) => Err(e),
        }
    }

    fn parse(text: &str) -> Result<Self, Unplaced> {
        if text.trim_start().starts_with(KEY_FILE_HEADER) {
            return parse_key_file(text.trim()).map(Self);
        }
        let passphrase = text.trim();
        let chars = passphrase.chars().count();
        if chars < MIN_PASSPHRASE_CHARS {
            return Err(Unplaced::TooShort(chars));
        }
        Ok(Self::from_passphrase(passphrase))
    }

    /// The key derived from a passphrase: the same passphrase gives the same key everywhere.
    /// Argon2id with [`PASSPHRASE_MEMORY_KIB`] of memory, [`PASSPHRASE_PASSES`] passes, one
    /// lane and the salt [`PASSPHRASE_SALT`], so that each guess costs an attacker as much.
    pub fn from_passphrase(passphrase: &str) -> Self {
        let params = argon2::Params::new(PASSPHRASE_MEMORY_KIB, PASSPHRASE_PASSES, 1, Some(32))
            .expect("constant Argon2 parameters are valid");
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        argon
            .hash_password_into(passphrase.as_bytes(), PASSPHRASE_SALT, &mut key)
            .expect("a constant salt and a 32-byte output are valid");
        Self(key)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// Writes the key to a new file in the `swarm.key` format, created readable by its owner
    /// only (never briefly readable by others). The file appears whole or not at all: the key
    /// is written beside it, then linked into place (which fails if a file is there), so a node
    /// started at the same moment never reads half a key.
    pub fn create_file(&self, path: &Path) -> Result<(), SecretError> {
        let failed = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                SecretError::Exists(path.to_owned())
            } else {
                SecretError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        };
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!(
            ".new-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let fresh = path.with_file_name(name);
        write_private(&fresh, self.key_file().as_bytes()).map_err(failed)?;
        let linked = std::fs::hard_link(&fresh, path);
        let _ = std::fs::remove_file(&fresh);
        linked.map_err(failed)
    }

    /// Makes this the key in `path`, replacing any key there (written beside it, then renamed
    /// over it, so a reader sees the old key or the new one, never half of one).
    pub fn replace_file(&self, path: &Path) -> Result<(), SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_owned(),
            source,
        };
        create_private_dir(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".new-{}", std::process::id()));
        let fresh = path.with_file_name(name);
        let _ = std::fs::remove_file(&fresh);
        write_private(&fresh, self.key_file().as_bytes()).map_err(io)?;
        std::fs::rename(&fresh, path).map_err(io)
    }

    /// A short public name for the key, to compare machines by eye: 5 characters (25 bits)
    /// derived from the key with blake3. So few bits cannot confirm a guessed passphrase: about
    /// one passphrase in 33 million shares any fingerprint, and each guess costs an Argon2id.
    pub fn fingerprint(&self) -> String {
        let digest = blake3::derive_key(FINGERPRINT_CONTEXT, &self.0);
        let bits = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        (0..FINGERPRINT_CHARS)
            .map(|i| {
                let index = (bits >> (27 - 5 * i)) & 0x1f;
                char::from(FINGERPRINT_ALPHABET[index as usize])
            })
            .collect()
    }

    /// The key, for the transport.
    pub(crate) fn key(&self) -> PreSharedKey {
        PreSharedKey::new(self.0)
    }

    fn key_file(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("{KEY_FILE_HEADER}\n/base16/\n{hex}\n")
    }
}

/// A join token: the mesh key and the addresses of a node to join through, in one string to
/// paste (`rm1` and base58, about 130 characters, with a checksum so that a mistyped token is
/// refused rather than joining nowhere).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The mesh key.
    pub secret: MeshSecret,
    /// The node's addresses, each ending in `/p2p/<its peer id>`.
    pub addrs: Vec<Multiaddr>,
}

impl fmt::Debug for JoinToken {
    /// Never shows the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("secret", &self.secret)
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl JoinToken {
    /// A token for `secret` and the node at `addrs` (multiaddrs with `/p2p/<peer id>`): TCP
    /// addresses only (rendermesh does not run QUIC), those beyond loopback first, at most
    /// [`MAX_TOKEN_ADDRS`]. `None` when no address names a peer over TCP.
    pub fn new(secret: MeshSecret, addrs: &[Multiaddr]) -> Option<Self> {
        let tcp = |a: &&Multiaddr| {
            a.iter().any(|p| matches!(p, Protocol::Tcp(_)))
                && matches!(a.iter().last(), Some(Protocol::P2p(_)))
        };
        let loopback = |a: &Multiaddr| {
            a.iter().any(|p| match p {
                Protocol::Ip4(ip) => ip.is_loopback(),
                Protocol::Ip6(ip) => ip.is_loopback(),
                _ => false,
            })
        };
        let mut chosen: Vec<Multiaddr> = addrs
            .iter()
            .filter(tcp)
            .filter(|a| !loopback(a))
            .cloned()
            .collect();
        chosen.extend(addrs.iter().filter(tcp).filter(|a| loopback(a)).cloned());
        chosen.truncate(MAX_TOKEN_ADDRS);
        (!chosen.is_empty()).then_some(Self {
            secret,
            addrs: chosen,
        })
    }

    /// The token's bytes before base58: the key, the peer id (once), the addresses without it,
    /// then 4 bytes of blake3 over all that.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(&self.secret.0);
        let peer = self.addrs.first().and_then(|a| match a.iter().last() {
            Some(Protocol::P2p(id)) => Some(id),
            _ => None,
        });
        let peer = peer.map(|p| p.to_bytes()).unwrap_or_default();
        push_field(&mut out, &peer);
        out.push(self.addrs.len() as u8);
        for addr in &self.addrs {
            let bare: Multiaddr = addr
                .iter()
                .filter(|p| !matches!(p, Protocol::P2p(_)))
                .collect();
            push_field(&mut out, &bare.to_vec());
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(&sum.as_bytes()[..4]);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        let malformed = |what: &str| TokenError::Malformed(what.to_owned());
        if bytes.len() < 4 {
            return Err(TokenError::Checksum);
        }
        let (body, sum) = bytes.split_at(bytes.len() - 4);
        if blake3::hash(body).as_bytes()[..4] != *sum {
            return Err(TokenError::Checksum);
        }
        let mut rest = body;
        let key: [u8; 32] = take(&mut rest, 32)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| malformed("too short for a key"))?;
        let peer = take_field(&mut rest).ok_or_else(|| malformed("no peer id"))?;
        let peer = PeerId::from_bytes(peer)
            .map_err(|e| TokenError::Malformed(format!("bad peer id: {e}")))?;
        let n = take(&mut rest, 1).ok_or_else(|| malformed("no address count"))?[0] as usize;
        if n == 0 || n > MAX_TOKEN_ADDRS {
            return Err(TokenError::Malformed(format!(
                "{n} addresses (1 to {MAX_TOKEN_ADDRS})"
            )));
        }
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let field =
                take_field(&mut rest).ok_or_else(|| malformed("an address is cut short"))?;
            let addr = Multiaddr::try_from(field.to_vec())
                .map_err(|e| TokenError::Malformed(format!("bad address: {e}")))?;
            addrs.push(addr.with(Protocol::P2p(peer)));
        }
        if !rest.is_empty() {
            return Err(malformed("bytes after the addresses"));
        }
        Ok(Self {
            secret: MeshSecret(key),
            addrs,
        })
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}{}",
            bs58::encode(self.to_bytes()).into_string()
        )
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    /// Parses a token; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, TokenError> {
        let s = s.trim();
        let body = s.strip_prefix(TOKEN_PREFIX).ok_or(TokenError::NotAToken)?;
        let bytes = bs58::decode(body).into_vec().map_err(|e| match e {
            bs58::decode::Error::InvalidCharacter { character, index } => {
                TokenError::BadCharacter {
                    found: character,
                    at: index + TOKEN_PREFIX.len() + 1,
                }
            }
            other => TokenError::Malformed(other.to_string()),
        })?;
        Self::from_bytes(&bytes)
    }
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.push(u8::try_from(field.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&field[..field.len().min(255)]);
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn take_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = take(rest, 1)?[0] as usize;
    take(rest, n)
}

/// Parses the three lines of a `swarm.key`.
fn parse_key_file(text: &str) -> Result<[u8; 32], Unplaced> {
    let bad = |why: &str| Unplaced::BadKeyFile(why.to_owned());
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some(KEY_FILE_HEADER) {
        return Err(bad("the first line is not the header"));
    }
    if lines.next() != Some("/base16/") {
        return Err(bad("the second line is not `/base16/`"));
    }
    let hex = lines.next().ok_or_else(|| bad("no key line"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the key line is not 64 hex digits"));
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| bad(&e.to_string()))?;
    }
    Ok(key)
}

/// Creates `path` with `bytes`, readable and writable by its owner only from the first moment;
/// fails if it exists.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes).and_then(|()| file.sync_all())
}

/// Creates `dir` (and its parents) if missing; a directory this creates is owner-only (0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes the existing directory `dir` owner-only (0700).
pub fn make_private(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The file's permission bits when users other than its owner may read it.
fn readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o044 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
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

    fn token_for(secret: MeshSecret) -> JoinToken {
        let peer = PeerId::random();
        let addrs: Vec<Multiaddr> = [
            "/ip4/127.0.0.1/tcp/4700",
            "/ip4/192.168.1.20/udp/4700/quic-v1",
            "/ip4/192.168.1.20/tcp/4700",
        ]
        .iter()
        .map(|a| a.parse::<Multiaddr>().unwrap().with(Protocol::P2p(peer)))
        .collect();
        JoinToken::new(secret, &addrs).unwrap()
    }

    #[test]
    fn a_join_token_carries_the_key_and_the_tcp_addresses_lan_first() {
        let secret = MeshSecret::generate();
        let token = token_for(secret);
        assert_eq!(token.addrs.len(), 2, "QUIC is left out: {:?}", token.addrs);
        assert!(
            token.addrs[0]
                .to_string()
                .starts_with("/ip4/192.168.1.20/tcp/4700/p2p/")
        );
        assert!(
            token.addrs[1]
                .to_string()
                .starts_with("/ip4/127.0.0.1/tcp/4700/p2p/")
        );
        let text = token.to_string();
        assert!(text.starts_with(TOKEN_PREFIX) && text.len() < 160, "{text}");
        let back: JoinToken = format!("  {text}\n").parse().unwrap();
        assert_eq!(back, token);
        assert_eq!(back.secret, secret);
        assert!(
            !format!("{token:?}").contains(&text[5..20]),
            "Debug shows the key"
        );
    }

    #[test]
    fn a_mistyped_or_cut_token_is_refused_saying_so() {
        let text = token_for(MeshSecret::generate()).to_string();
        // One character changed to another of the alphabet: the checksum catches it.
        let mut chars: Vec<char> = text.chars().collect();
        chars[20] = if chars[20] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.iter().collect();
        assert_eq!(typo.parse::<JoinToken>(), Err(TokenError::Checksum));
        assert_eq!(
            text[..text.len() - 3].parse::<JoinToken>(),
            Err(TokenError::Checksum)
        );
        // A character no token has (base58 has no 0, O, I or l), named by position.
        let mut chars: Vec<char> = text.chars().collect();
        chars[9] = '0';
        let bad: String = chars.iter().collect();
        assert_eq!(
            bad.parse::<JoinToken>(),
            Err(TokenError::BadCharacter { found: '0', at: 10 })
        );
        assert_eq!(
            "/ip4/1.2.3.4/tcp/4700".parse::<JoinToken>(),
            Err(TokenError::NotAToken)
        );
        let e = TokenError::Checksum.to_string();
        assert!(e.contains("mistyped"), "{e}");
    }

    #[test]
    fn the_machine_key_is_created_once_owner_only_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("config")
            .join("rendermesh")
            .join("mesh.key");
        let (first, created) = MeshSecret::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = MeshSecret::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
            assert_eq!(readable_by_others(&path), None);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(readable_by_others(&path), Some(0o644));
        }
        // Joining another mesh replaces it.
        let other = MeshSecret::generate();
        other.replace_file(&path).unwrap();
        assert_eq!(MeshSecret::load(&path).unwrap(), other);
    }

    /// Found by the LAN test on a clean clone: of three nodes started at once, one read the
    /// machine key while another was still writing it, found "a passphrase of 0 characters"
    /// and did not start.
    #[test]
    fn nodes_started_at_once_all_get_the_one_machine_key() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("mesh.key");
            let start = std::sync::Barrier::new(8);
            let keys: Vec<(MeshSecret, bool)> = std::thread::scope(|scope| {
                let runs: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            MeshSecret::load_or_create(&path)
                        })
                    })
                    .collect();
                runs.into_iter()
                    .map(|r| {
                        r.join()
                            .unwrap()
                            .unwrap_or_else(|e| panic!("round {round}: {e}"))
                    })
                    .collect()
            });
            assert_eq!(keys.iter().filter(|(_, created)| *created).count(), 1);
            assert!(keys.iter().all(|(k, _)| *k == keys[0].0), "round {round}");
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(left.len(), 1, "only the key is left");
        }
    }

    #[test]
    fn the_fingerprint_is_short_stable_and_tells_keys_apart() {
        let a = MeshSecret([7; 32]);
        assert_eq!(a.fingerprint().len(), FINGERPRINT_CHARS);
        assert_eq!(a.fingerprint(), MeshSecret([7; 32]).fingerprint());
        let distinct: std::collections::BTreeSet<String> = (0..50u8)
            .map(|i| MeshSecret([i; 32]).fingerprint())
            .collect();
        assert!(distinct.len() >= 49, "{distinct:?}");
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
