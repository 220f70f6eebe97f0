//! How the running configuration is shown (the admin API's redacted copy): the model serialises
//! under the file's key names, durations in seconds (`*_s`), and never a secret — [`Secret`]
//! values print as `<redacted>`, URLs lose their credentials and query values, and API keys
//! appear only as their hashes.

use std::time::Duration;

use serde::ser::{SerializeMap, Serializer};

use crate::Secret;

/// A duration as seconds.
pub fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Name/secret pairs (environment variables, headers) as a map of redacted values.
pub fn redacted_pairs<S: Serializer>(pairs: &[(String, Secret)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(pairs.len()))?;
    for (name, value) in pairs {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

/// A URL without its userinfo and query values.
pub fn url<S: Serializer>(u: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::redact_url(u))
}

/// An optional URL, as [`url`].
pub fn opt_url<S: Serializer>(u: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => url(u, s),
        None => s.serialize_none(),
    }
}

/// An API key's SHA-256, as written in the file (`sha256:<hex>`).
pub fn key_hash<S: Serializer>(digest: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    s.serialize_str(&format!("sha256:{hex}"))
}

/// The audit trail's `fsync` policy: `always`, `never`, or `{interval_s}`.
pub fn fsync<S: Serializer>(f: &crate::Fsync, s: S) -> Result<S::Ok, S::Error> {
    match f {
        crate::Fsync::Always => s.serialize_str("always"),
        crate::Fsync::Never => s.serialize_str("never"),
        crate::Fsync::Interval(d) => {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry("interval_s", &d.as_secs_f64())?;
            map.end()
        }
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shown_configuration_has_no_secret_and_the_files_key_names() {
        let env = |name: &str| (name == "TOKEN").then(|| "tok-s3cret".to_owned());
        let text = r#"
providers:
  api:
    mode: remote
    endpoint: "https://api.example.com/mcp?key=q-s3cret"
    headers: {Authorization: "Bearer ${TOKEN}"}
    idle_ttl_s: 90
  local:
    mode: subprocess
    command: [server]
    env: {PASSWORD: inline-s3cret}
observability:
  langfuse: {enabled: true, public_key: pk-s3cret, secret_key: sk-s3cret}
auth:
  enabled: true
  api_key:
    keys:
      - {name: ci, key_hash: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", principal: "service:ci", roles: [admin]}
"#;
        let config = crate::parse(text, "t.yaml", &env).expect("valid");
        let shown = serde_json::to_value(&config).expect("serialises");
        let all = shown.to_string();
        assert!(!all.contains("s3cret"), "{all}");
        let api = &shown["providers"][0];
        assert_eq!(api["mode"], "remote");
        assert_eq!(api["idle_ttl_s"], 90.0);
        assert_eq!(api["headers"]["Authorization"], "<redacted>");
        assert_eq!(shown["providers"][1]["env"]["PASSWORD"], "<redacted>");
        assert_eq!(
            shown["auth"]["api_key"]["keys"][0]["key_hash"],
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(shown["server"]["limits"]["shutdown_timeout_s"], 10.0);
    }
}
