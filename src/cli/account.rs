//! The account on disk: passphrase, identity, profile, file permissions.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kith::account::{Account, PermissionWarning};
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::PeerId;
use kith::proto::profile::SignedProfile;

/// Tells the user about account files that other users can open; kith
/// goes on, since only the user knows whether that is on purpose.
pub(super) fn warn_permissions(warnings: Vec<PermissionWarning>) {
    for warning in warnings {
        eprintln!("kith: warning: {warning}");
    }
}

/// A public key given on the command line.
pub(super) fn public_key(hex: &str) -> Result<PublicIdentity> {
    let key = PeerId::from_hex(hex.trim()).context("a public key is 64 hexadecimal characters")?;
    PublicIdentity::from_bytes(&key.0).context("that is not a valid public key")
}

pub(super) fn print_identity(account: &Account) -> Result<()> {
    let public = account.identity.public();
    outln!("peer id     {}", public.peer_id())?;
    outln!("public key  {}", PeerId(public.to_bytes()))?;
    if let Some(profile) = account.store.profile(&public.peer_id())? {
        outln!("name        {}", profile.name)?;
    }
    Ok(())
}

/// Signs and keeps `name` as our profile in a store no daemon has open;
/// the daemon sends it at its next start. Numbered after the clock and
/// above any kept before, so it wins over every earlier one.
pub(super) fn store_profile(account: &mut Account, name: &str) -> Result<()> {
    let me = account.identity.peer_id();
    let previous = account.store.profile(&me)?.map_or(0, |p| p.seq);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    let seq = u64::try_from(now.as_millis())
        .unwrap_or(u64::MAX)
        .max(previous.saturating_add(1));
    let record = SignedProfile::sign(&account.identity, seq, name)?;
    account.store.put_profile(&kith::store::StoredProfile {
        peer: me,
        seq,
        name: record.profile.name,
        record: record.bytes,
    })?;
    Ok(())
}

pub(super) fn passphrase(file: &Option<PathBuf>) -> Result<String> {
    let passphrase = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
            text.lines().next().unwrap_or_default().to_owned()
        }
        None => std::env::var("KITH_PASSPHRASE").unwrap_or_default(),
    };
    if passphrase.is_empty() {
        bail!("no passphrase: set KITH_PASSPHRASE or pass --passphrase-file FILE");
    }
    Ok(passphrase)
}
