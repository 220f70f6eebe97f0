//! API keys: generated with enough entropy to need no stretching, stored as SHA-256 (so a leaked
//! configuration does not leak keys), compared by looking the digest up.

use base64::Engine;
use sha2::{Digest, Sha256};

/// SHA-256 of a key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The `key_hash` of `key`, as the configuration stores it.
pub fn key_hash(key: &str) -> String {
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest(key) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A new random key (256 bits, `mcp_` and URL-safe base64).
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("mcp_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_the_configuration_format() {
        let key = generate();
        assert!(key.starts_with("mcp_") && key.len() == 4 + 43);
        assert_eq!(hangar_config::parse_key_hash(&key_hash(&key)), Some(digest(&key)));
        assert_eq!(key_hash("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
