//! Key-encryption keys (KEKs) from configuration: the KEK file format, generating and
//! loading KEK files, and the [`Keyring`] the key vault wraps and unwraps data keys with.
//!
//! A KEK file holds one line `amtsbuch-kek v1 <kek-id> <base64 of 32 bytes>`; blank lines
//! and lines starting with `#` are allowed around it. The id travels with every wrapped key
//! (`subject_keys.kek_id`), so several KEKs can be configured at once: the first wraps new
//! keys, all of them unwrap. That is what makes a KEK rotation possible: configure the new
//! KEK first and the old one after it, re-wrap every live key (`KeyVault::rewrap_all`),
//! then remove the old KEK from the configuration and destroy its file — which also makes
//! the wrapped copies left in old backups and WAL segments unreadable.
//!
//! The file is the secret that guards every data key, so it is created with mode 0600 and
//! never overwritten. A file that group or others can write is refused (whoever can replace
//! the KEK chooses the key new data keys are wrapped under); one they can read is loaded
//! with a warning, since refusing it would only stop a service that is already exposed.
//! No error message quotes a line of the file, which could hold key material.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use amtsbuch_domain::base64;
use amtsbuch_domain::seal::{Kek, KeyId, SecureRandom, SystemRandom, KEY_LEN};

/// The first word of a KEK line.
pub const KEK_MAGIC: &str = "amtsbuch-kek";
/// The only format version written and read.
pub const KEK_VERSION: &str = "v1";

/// A KEK file is a few lines; anything larger is not one.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Why a KEK file or a keyring could not be made or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KekError {
    #[error("KEK file {} does not exist", .path.display())]
    Missing { path: PathBuf },
    #[error("cannot read or write KEK file {}: {reason}", .path.display())]
    Io { path: PathBuf, reason: String },
    #[error("KEK file {} already exists; KEK files are never overwritten", .path.display())]
    Exists { path: PathBuf },
    #[error(
        "KEK file {} is writable by group or others (mode {mode:03o}); whoever can replace \
         a KEK chooses the key new data keys are wrapped under: chmod 600 it",
        .path.display()
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("KEK file {}, line {line}: {reason}", .path.display())]
    Format {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("KEK file {}: {reason}", .path.display())]
    Key { path: PathBuf, reason: String },
    #[error("KEK id {id} is configured twice; each KEK needs an id of its own")]
    DuplicateId { id: KeyId },
    #[error("no KEK is configured; personal data cannot be sealed without one")]
    Empty,
}

/// The configured KEKs. The first wraps new data keys; every one of them unwraps keys
/// that name its id. Its `Debug` output shows the ids only.
pub struct Keyring {
    keks: Vec<Kek>,
}

impl Keyring {
    /// A keyring of `keks`, the first being the current one; ids must be distinct.
    pub fn new(keks: Vec<Kek>) -> Result<Self, KekError> {
        if keks.is_empty() {
            return Err(KekError::Empty);
        }
        for (i, kek) in keks.iter().enumerate() {
            if keks[..i].iter().any(|k| k.id() == kek.id()) {
                return Err(KekError::DuplicateId {
                    id: kek.id().clone(),
                });
            }
        }
        Ok(Self { keks })
    }

    /// The KEK that wraps new keys (and every key `rewrap_all` touches).
    pub fn current(&self) -> &Kek {
        // `new` refuses an empty list, so there is always a first KEK.
        &self.keks[0]
    }

    /// The KEK with this id, if it is configured.
    pub fn get(&self, id: &KeyId) -> Option<&Kek> {
        self.keks.iter().find(|k| k.id() == id)
    }

    /// The ids of all configured KEKs, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keks.iter().map(Kek::id)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

/// Writes a new KEK file with a fresh random key under `id`: mode 0600, refusing to
/// overwrite anything (an overwritten KEK would make every key it wrapped unreadable).
pub fn generate_kek_file(path: &Path, id: &KeyId) -> Result<(), KekError> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| KekError::Io {
            path: path.to_owned(),
            reason: "the system random number generator failed".into(),
        })?;
    let text = format!(
        "# Amtsbuch key-encryption key (KEK). It wraps every data subject's data key, so keep\n\
         # it secret (mode 0600) and back it up apart from the database: without it nothing\n\
         # sealed can be read, and with a database copy it reads everything not yet erased.\n\
         {KEK_MAGIC} {KEK_VERSION} {id} {}\n",
        base64::encode(&key)
    );

    // `--out keys/kek` in an empty directory: the directory is made, as `keygen` does.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| io_error(path, &e))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KekError::Exists {
            path: path.to_owned(),
        },
        _ => io_error(path, &e),
    })?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A half-written KEK file must not be mistaken for a KEK later.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(io_error(path, &e));
    }
    Ok(())
}

/// A KEK read from a file, with the file's permission bits if group or others can read it
/// (the caller should warn about those).
#[derive(Debug)]
pub struct LoadedKek {
    pub kek: Kek,
    /// `Some(mode)` when the file is readable by group or others.
    pub loose_mode: Option<u32>,
}

/// Reads one KEK file. See the module documentation for the format and the mode rules.
pub fn load_kek_file(path: &Path) -> Result<LoadedKek, KekError> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => KekError::Missing {
            path: path.to_owned(),
        },
        _ => io_error(path, &e),
    })?;
    if !meta.is_file() {
        return Err(KekError::Io {
            path: path.to_owned(),
            reason: "not a regular file".into(),
        });
    }
    let loose_mode = check_mode(path, &meta)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(KekError::Format {
            path: path.to_owned(),
            line: 0,
            reason: format!("a KEK file is a few lines, not {} bytes", meta.len()),
        });
    }
    let text = fs::read_to_string(path).map_err(|e| io_error(path, &e))?;
    let kek = parse_kek(path, &text)?;
    Ok(LoadedKek { kek, loose_mode })
}

/// Loads the KEKs of `paths` into a keyring, the first file's KEK being the current one.
/// Files that group or others can read are loaded, with a warning in the log.
pub fn load_keyring<P: AsRef<Path>>(paths: &[P]) -> Result<Keyring, KekError> {
    let mut keks = Vec::with_capacity(paths.len());
    for path in paths {
        let path = path.as_ref();
        let loaded = load_kek_file(path)?;
        if let Some(mode) = loaded.loose_mode {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:03o}"),
                "KEK file is readable by group or others; chmod 600 it"
            );
        }
        keks.push(loaded.kek);
    }
    Keyring::new(keks)
}

/// Refuses a file group or others can write; reports one they can read.
#[cfg(unix)]
fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<Option<u32>, KekError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(KekError::Mode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok((mode & 0o044 != 0).then_some(mode))
}

/// Other systems have no mode bits to check; their ACLs are the operator's business.
#[cfg(not(unix))]
fn check_mode(_: &Path, _: &fs::Metadata) -> Result<Option<u32>, KekError> {
    Ok(None)
}

/// Parses the text of a KEK file: exactly one key line among blank and comment lines.
fn parse_kek(path: &Path, text: &str) -> Result<Kek, KekError> {
    let format = |line: usize, reason: &str| KekError::Format {
        path: path.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if found.is_some() {
            return Err(format(line_no, "a KEK file holds exactly one key line"));
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [magic, version, id, key] = fields[..] else {
            return Err(format(
                line_no,
                "expected `amtsbuch-kek v1 <kek-id> <base64 key>`",
            ));
        };
        if magic != KEK_MAGIC {
            return Err(format(line_no, "this is not an Amtsbuch KEK file"));
        }
        if version != KEK_VERSION {
            return Err(format(line_no, "unsupported KEK file version (only v1)"));
        }
        let id = KeyId::parse(id).map_err(|_| {
            format(
                line_no,
                "the KEK id must be 1 to 64 ASCII letters, digits, '.', '_', ':' or '-'",
            )
        })?;
        // The key text is not quoted in the error, only what is wrong with it.
        let kek = Kek::from_base64(id, key).map_err(|e| KekError::Key {
            path: path.to_owned(),
            reason: format!("line {line_no}: the key must be base64 of {KEY_LEN} bytes ({e})"),
        })?;
        found = Some(kek);
    }
    found.ok_or_else(|| format(0, "no key line found"))
}

fn io_error(path: &Path, e: &std::io::Error) -> KekError {
    KekError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}
