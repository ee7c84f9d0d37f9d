//! Container ids and names.

use crate::error::{Error, Result};

/// 32 random bytes as 64 hex digits, like docker's ids.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // getrandom cannot fail for 32 bytes on Linux >= 3.17; stay unique anyway.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b[..16].copy_from_slice(&t.to_le_bytes());
        b[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "sharp", "tender", "vivid", "wise", "zealous",
];
const NOUNS: &[&str] = &[
    "otter", "heron", "maple", "comet", "falcon", "willow", "badger", "lotus", "cedar", "koi",
    "lynx", "sparrow", "tanuki", "orca", "crane", "fern", "panda", "yak",
];

/// A readable name ("calm_heron_3f2a") derived from the id, so it is random
/// and rarely collides.
pub fn generate(id: &str) -> String {
    let n = u64::from_str_radix(&id[..16], 16).unwrap_or(0);
    let a = ADJECTIVES[(n % ADJECTIVES.len() as u64) as usize];
    let b = NOUNS[((n / 256) % NOUNS.len() as u64) as usize];
    format!("{a}_{b}_{}", &id[16..20])
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (a leading '/' is dropped).
pub fn validate(name: &str) -> Result<String> {
    let n = name.strip_prefix('/').unwrap_or(name);
    let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(n.to_string())
    } else {
        Err(Error::Invalid(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}
