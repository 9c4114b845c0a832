//! Instance names: ours (display name + a suffix from the peer id) and
//! those received, made safe to show.

use super::{MAX_INSTANCE_NAME, MAX_NAME_IN_INSTANCE, SERVICE_TYPE};
use crate::proto::ids::PeerId;

/// Makes a display name fit to be an instance name, and an announced one fit
/// to be shown: control characters go, surrounding whitespace goes, and it is
/// cut to [`MAX_INSTANCE_NAME`] bytes on a character boundary.
pub fn sanitize_display_name(name: &str) -> String {
    let cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned.trim();
    let mut end = trimmed.len().min(MAX_INSTANCE_NAME);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    trimmed[..end].trim_end().to_owned()
}

/// The suffix that makes our instance name unique: ` [` + the first 8 hex
/// digits of the peer id + `]`.
pub fn instance_suffix(peer_id: &PeerId) -> String {
    format!(" [{}]", peer_id.short())
}

/// The instance name a node announces: its display name (sanitised, cut to
/// [`MAX_NAME_IN_INSTANCE`] bytes; `kith` if empty) and [`instance_suffix`].
/// Two nodes never choose the same one, whatever names their users gave
/// them, so mDNS name conflicts (and the renaming they force) only come
/// from someone announcing a name that is not theirs.
pub fn instance_name_for(peer_id: &PeerId, display_name: &str) -> String {
    let mut name = sanitize_display_name(display_name);
    let mut end = name.len().min(MAX_NAME_IN_INSTANCE);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    let name = name.trim_end();
    let name = if name.is_empty() { "kith" } else { name };
    format!("{name}{}", instance_suffix(peer_id))
}

/// The instance label of `<instance>._kith._udp.local.`, as received (see
/// [`display_name_of`]); `None` for another service type.
pub(super) fn instance_of(fullname: &str) -> Option<&str> {
    let suffix = format!(".{SERVICE_TYPE}");
    let at = fullname.len().checked_sub(suffix.len())?;
    if fullname.is_char_boundary(at) && fullname[at..].eq_ignore_ascii_case(&suffix) {
        Some(&fullname[..at])
    } else {
        None
    }
}

/// The instance part of `<instance>._kith._udp.local.`, sanitised for
/// display, without the [`instance_suffix`] of `peer_id` (the peer id is
/// shown beside it anyway). `mdns-sd` joins received labels with `.`
/// without escaping anything, so the instance label is everything before
/// the service type, dots and backslashes included, taken as it is.
pub(super) fn display_name_of(fullname: &str, peer_id: &PeerId) -> String {
    let instance = instance_of(fullname).unwrap_or(fullname);
    let suffix = instance_suffix(peer_id);
    let split = instance.len().checked_sub(suffix.len());
    let name = match split {
        Some(at)
            if at > 0
                && instance.is_char_boundary(at)
                && instance[at..].eq_ignore_ascii_case(&suffix) =>
        {
            &instance[..at]
        }
        _ => instance,
    };
    sanitize_display_name(name)
}
