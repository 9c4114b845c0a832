//! The account on disk: passphrase, identity, profile, file permissions.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kith::account::{Account, PermissionWarning};
use kith::daemon::control::{Client, ControlError};
use kith::proto::crypto::{PublicIdentity, safety_number};
use kith::proto::ids::PeerId;
use kith::proto::profile::{SignedProfile, check_name};
use kith::store::KdfParams;

use super::AccountDir;

/// `kith init`: creates the account, named if a name is given.
pub(super) fn init(dir: &AccountDir, name: Option<String>) -> Result<()> {
    // Checked first: a refused name creates nothing.
    let name = name.map(|n| check_name(&n)).transpose()?;
    let passphrase = dir.passphrase()?;
    let mut account = Account::create(&dir.data, &passphrase, KdfParams::default())?;
    warn_permissions(account.permission_warnings());
    if let Some(name) = name {
        store_profile(&mut account, &name)?;
    }
    outln!("created a kith account in {}", dir.data.display())?;
    print_identity(&account)
}

/// `kith profile`: through the running daemon, or kept in the store for
/// its next start.
pub(super) fn profile(dir: &AccountDir, name: &str) -> Result<()> {
    let name = check_name(name)?;
    match Client::connect(&dir.data) {
        Ok(client) => {
            client.call("profile", &[&name])?;
            outln!("you are {name}")?;
        }
        Err(ControlError::NotRunning(_)) => {
            let mut account = dir.open()?;
            store_profile(&mut account, &name)?;
            outln!("you are {name} (sent to your contacts when the daemon next runs)")?;
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// `kith id`: our peer id and public key.
pub(super) fn id(dir: &AccountDir, json: bool) -> Result<()> {
    let account = dir.open()?;
    warn_permissions(account.permission_warnings());
    if json {
        let public = account.identity.public();
        outln!(
            "{}",
            kith::daemon::json::id(&public.peer_id(), &public.to_bytes())
        )
    } else {
        print_identity(&account)
    }
}

/// `kith verify`: the safety number shared with a contact.
pub(super) fn verify(dir: &AccountDir, key: &str) -> Result<()> {
    let contact = public_key(key)?;
    let account = dir.open()?;
    warn_permissions(account.permission_warnings());
    outln!("contact peer id  {}", contact.peer_id())?;
    outln!(
        "safety number    {}",
        safety_number(&account.identity.public(), &contact)
    )?;
    Ok(())
}

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
