//! `amtsbuch verify --url URL --key VKEY --state FILE`: check a running log against the last
//! checkpoint this auditor trusted.
//!
//! The state file holds that checkpoint's signed note verbatim, so it authenticates itself
//! with the key each time it is read. The command fetches the server's latest checkpoint,
//! checks its signature and origin, and then: a smaller tree than the trusted one is a
//! rollback; the same size with another root, or a consistency proof that does not verify,
//! is a fork, and both signed notes are printed as evidence. Only a checkpoint proven to
//! extend the trusted one replaces it in the state file. The first run trusts what it sees
//! and says so.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use amtsbuch_domain::base64;
use amtsbuch_domain::checkpoint::{open_checkpoint, Checkpoint};
use amtsbuch_domain::merkle::{verify_consistency, Hash};
use amtsbuch_domain::note::Verifier;
use anyhow::{bail, Context};

/// Read verifier keys: one vkey per non-empty line, `#` starts a comment.
pub fn read_vkeys(paths: &[PathBuf]) -> anyhow::Result<Vec<Verifier>> {
    let mut keys = Vec::new();
    for path in paths {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            keys.push(
                Verifier::parse(line)
                    .map_err(|e| anyhow::anyhow!("{}: not a vkey: {e}", path.display()))?,
            );
        }
    }
    if keys.is_empty() {
        bail!("no verifier key given: pass --key FILE with the log's vkey");
    }
    Ok(keys)
}

/// The origin the keys belong to; all keys of one log share it.
fn origin(keys: &[Verifier]) -> anyhow::Result<String> {
    let first = keys[0].name().to_owned();
    if keys.iter().any(|k| k.name() != first) {
        bail!("the keys name different logs; verify one log at a time");
    }
    Ok(first)
}

fn get(url: &str, token: Option<&str>) -> anyhow::Result<String> {
    let mut request = ureq::get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().with_context(|| format!("GET {url}"))?;
    response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading {url}"))
}

/// Replace the state file atomically, so a crash never leaves half a checkpoint.
fn save_state(path: &Path, note: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(note.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Run the check; returns the process exit code.
/// `token` is the auditor's bearer token, when the server requires one.
pub fn run(
    url: &str,
    key_files: &[PathBuf],
    state: &Path,
    token: Option<&str>,
) -> anyhow::Result<i32> {
    let keys = read_vkeys(key_files)?;
    let origin = origin(&keys)?;
    let base = url.trim_end_matches('/');
    let latest_note = get(&format!("{base}/ledger/checkpoint"), token)?;
    let (latest, _) = match open_checkpoint(latest_note.as_bytes(), &keys, &origin) {
        Ok(c) => c,
        Err(e) => {
            println!(
                "FAILED: the server's latest checkpoint does not verify with the given key: {e}"
            );
            return Ok(1);
        }
    };
    let trusted_note = match fs::read_to_string(state) {
        Ok(note) => note,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            save_state(state, &latest_note)?;
            println!(
                "ok: first contact, now trusting checkpoint of size {} root {} (saved to {})",
                latest.size,
                base64::encode(&latest.root),
                state.display()
            );
            return Ok(0);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", state.display())),
    };
    let (trusted, _) = open_checkpoint(trusted_note.as_bytes(), &keys, &origin).map_err(|e| {
        anyhow::anyhow!(
            "the state file {} does not hold a checkpoint signed by this key: {e}",
            state.display()
        )
    })?;

    let evidence = |what: &str| {
        println!("FAILED: {what}");
        println!(
            "--- checkpoint trusted before ({}):\n{trusted_note}",
            state.display()
        );
        println!("--- checkpoint the server presents now:\n{latest_note}");
        Ok(1)
    };
    if latest.size < trusted.size {
        return evidence(&format!(
            "rollback: the server presents tree size {}, smaller than the trusted {}",
            latest.size, trusted.size
        ));
    }
    if latest.size == trusted.size {
        if latest.root != trusted.root {
            return evidence(&format!(
                "fork: two signed checkpoints of size {} with different roots",
                latest.size
            ));
        }
        println!(
            "ok: unchanged at size {} root {}",
            latest.size,
            base64::encode(&latest.root)
        );
        return Ok(0);
    }
    let body = get(
        &format!(
            "{base}/ledger/proof/consistency?from={}&to={}",
            trusted.size, latest.size
        ),
        token,
    )?;
    let proof = parse_proof(&body)?;
    if let Err(e) = verify_consistency(
        trusted.size,
        latest.size,
        &trusted.root,
        &latest.root,
        &proof,
    ) {
        return evidence(&format!(
            "fork: the new checkpoint does not extend the trusted one ({e})"
        ));
    }
    save_state(state, &latest_note)?;
    print_ok(&trusted, &latest);
    Ok(0)
}

fn print_ok(trusted: &Checkpoint, latest: &Checkpoint) {
    println!(
        "ok: size {} -> {} is consistent; now trusting root {}",
        trusted.size,
        latest.size,
        base64::encode(&latest.root)
    );
}

fn parse_proof(body: &str) -> anyhow::Result<Vec<Hash>> {
    let v: serde_json::Value =
        serde_json::from_str(body).context("the consistency proof is not JSON")?;
    v["proof"]
        .as_array()
        .context("the consistency proof has no `proof` list")?
        .iter()
        .map(|h| {
            let bytes = base64::decode(h.as_str().unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("bad proof hash: {e}"))?;
            Hash::try_from(bytes.as_slice())
                .map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes"))
        })
        .collect()
}
