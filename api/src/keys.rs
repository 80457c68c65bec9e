//! Signing keys on disk: `amtsbuch keygen`, loading `--signing-key` files, and the key the
//! embedded mode creates for itself on first start.
//!
//! A key file holds the Ed25519 private key as PKCS#8 (mode 0600); beside it, a `.vkey` file
//! holds the C2SP verifier key, which is public and is what auditors configure. The key's
//! name is the log's origin, so a key can only sign for the log it was made for.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use amtsbuch_domain::note::Signer;
use anyhow::{bail, Context};

/// File names `keygen` and the embedded mode use.
pub const KEY_FILE: &str = "amtsbuch-signing.pk8";
pub const VKEY_FILE: &str = "amtsbuch.vkey";

/// Write a private key file readable by its owner only, refusing to overwrite anything.
///
/// The key appears whole or not at all: it is written to a temporary file beside `path`
/// and then linked to `path`, which fails if `path` exists. A process that starts at the
/// same moment (`serve --dev` and `amtsbuch token` both create the development key) and
/// finds the file therefore never reads half of it.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        uuid::Uuid::now_v7().simple()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    linked.with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))
}

/// Create a new key pair for `origin` in `dir`; returns the two paths and the vkey.
pub fn generate(origin: &str, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    // The origin is checked before anything is created.
    let pkcs8 =
        Signer::generate_pkcs8().map_err(|e| anyhow::anyhow!("cannot generate a key: {e}"))?;
    let signer = Signer::from_pkcs8(origin, &pkcs8)
        .map_err(|e| anyhow::anyhow!("origin {origin:?} cannot name a key: {e}"))?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_path = dir.join(KEY_FILE);
    let vkey_path = dir.join(VKEY_FILE);
    if key_path.exists() || vkey_path.exists() {
        bail!(
            "{} or {} already exists; keys are never overwritten",
            key_path.display(),
            vkey_path.display()
        );
    }
    let vkey = signer.vkey();
    write_private(&key_path, &pkcs8)?;
    fs::write(&vkey_path, format!("{vkey}\n"))
        .with_context(|| format!("cannot write {}", vkey_path.display()))?;
    Ok((key_path, vkey_path, vkey))
}

/// Load a signing key for `origin` from a PKCS#8 file.
pub fn load(origin: &str, path: &Path) -> anyhow::Result<Signer> {
    let bytes =
        fs::read(path).with_context(|| format!("cannot read signing key {}", path.display()))?;
    let signer = Signer::from_pkcs8(origin, &bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a usable Ed25519 PKCS#8 key for origin {origin:?}: {e}",
            path.display()
        )
    })?;
    // A vkey beside the key names the origin it was made for; a mismatch is a mistake in
    // the configuration, and signing anyway would publish checkpoints nobody can verify.
    if let Some(dir) = path.parent() {
        let vkey_path = dir.join(VKEY_FILE);
        if let Ok(text) = fs::read_to_string(&vkey_path) {
            let published = text.trim();
            if !published.is_empty() && published != signer.vkey() {
                bail!(
                    "{} holds {published:?}, but this key for origin {origin:?} has vkey {:?}; start with the origin the key was made for",
                    vkey_path.display(),
                    signer.vkey()
                );
            }
        }
    }
    Ok(signer)
}

/// The embedded mode's own key under `dir`, created on first start.
pub fn embedded(origin: &str, dir: &Path) -> anyhow::Result<(Signer, bool)> {
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        return Ok((load(origin, &key_path)?, false));
    }
    generate(origin, dir)?;
    Ok((load(origin, &key_path)?, true))
}
