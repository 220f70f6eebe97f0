//! JWT bearer tokens: signature against the authorization server's published keys (JWKS, cached,
//! fetched again when a token names a key not seen yet), then issuer, audience, expiry and
//! not-before with the configured clock skew. Only asymmetric algorithms are accepted, and only
//! those configured: `alg: none` and HMAC tokens never pass.

use std::str::FromStr;
use std::time::{Duration, Instant};

use hangar_config::Oidc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde_json::Value;

use super::{Principal, Refusal};

/// Least time between two key fetches caused by unknown key ids: tokens naming made-up keys must
/// not turn into a flood of requests to the authorization server.
const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// Time allowed for fetching the keys or the issuer's metadata.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set or metadata document read.
const MAX_DOCUMENT: usize = 1 << 20;

/// Verifies tokens for one `oidc` configuration.
pub(super) struct Verifier {
    settings: Oidc,
    audience: Vec<String>,
    algorithms: Vec<Algorithm>,
    keys: RwLock<Keys>,
    /// Held while fetching, so concurrent requests wait for one fetch.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    client: reqwest::Client,
}

#[derive(Default)]
struct Keys {
    set: Vec<(Option<String>, DecodingKey)>,
    fetched: Option<Instant>,
}

impl Verifier {
    pub(super) fn new(settings: Oidc, resource_url: Option<String>) -> Self {
        let audience =
            if settings.audience.is_empty() { resource_url.into_iter().collect() } else { settings.audience.clone() };
        let algorithms = settings.algorithms.iter().filter_map(|a| Algorithm::from_str(a).ok()).collect();
        let client = crate::fetch::client(FETCH_TIMEOUT);
        Self {
            settings,
            audience,
            algorithms,
            keys: RwLock::default(),
            fetching: tokio::sync::Mutex::new(None),
            client,
        }
    }

    pub(super) fn settings(&self) -> &Oidc {
        &self.settings
    }

    /// The token's claims, once it passed every check.
    pub(super) async fn verify(&self, token: &str) -> Result<Value, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("the token is not a well-formed JWT"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(invalid(&format!("tokens signed with {:?} are not accepted", header.alg)));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.clock_skew.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidAudience => "the token is for another audience",
                ErrorKind::InvalidIssuer => "the token is from another issuer",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (exp, iss, aud)",
                _ => "the token does not verify",
            })
        })?;
        Ok(data.claims)
    }

    /// The principal a verified token stands for: `user:<subject>`, with its roles and groups.
    pub(super) fn principal(&self, claims: &Value) -> Principal {
        let subject = match claims.get(&self.settings.subject_claim) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let list = |claim: &str| -> Vec<String> {
            match claims.get(claim) {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
                _ => Vec::new(),
            }
        };
        Principal::new(
            &format!("user:{subject}"),
            list(&self.settings.roles_claim),
            list(&self.settings.groups_claim),
            "jwt",
        )
    }

    /// The key named `kid` (any key when the token names none), fetching the key set when it is
    /// stale or does not have it.
    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, Refusal> {
        if let Some(k) = self.cached(kid, true) {
            return Ok(k);
        }
        let mut last = self.fetching.lock().await;
        // Fetched by another request while this one waited?
        if let Some(k) = self.cached(kid, true) {
            return Ok(k);
        }
        let stale = self.keys.read().fetched.is_none_or(|t| t.elapsed() >= self.settings.jwks_cache_ttl);
        if stale || last.is_none_or(|t| t.elapsed() >= REFETCH_EVERY) {
            *last = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => *self.keys.write() = Keys { set, fetched: Some(Instant::now()) },
                Err(why) => {
                    tracing::warn!(issuer = %self.settings.issuer, "cannot fetch the token signing keys: {why}");
                    // Keys fetched before still serve while the server cannot be reached.
                    return self.cached(kid, false).ok_or(Refusal::Unavailable(why));
                }
            }
        }
        self.cached(kid, false).ok_or_else(|| invalid("the token's signing key is unknown"))
    }

    fn cached(&self, kid: Option<&str>, fresh_only: bool) -> Option<DecodingKey> {
        let keys = self.keys.read();
        if fresh_only && keys.fetched.is_none_or(|t| t.elapsed() >= self.settings.jwks_cache_ttl) {
            return None;
        }
        keys.set.iter().find(|(id, _)| kid.is_none() || id.as_deref() == kid).map(|(_, k)| k.clone())
    }

    async fn fetch(&self) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
        let uri = match &self.settings.jwks_uri {
            Some(u) => u.clone(),
            None => self.discover_jwks_uri().await?,
        };
        let set: JwkSet = serde_json::from_slice(&self.get(&uri).await?).map_err(|e| format!("{uri}: {e}"))?;
        let keys: Vec<_> = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        if keys.is_empty() {
            return Err(format!("{uri} has no usable keys"));
        }
        Ok(keys)
    }

    /// `jwks_uri` from the issuer's OpenID Connect discovery document.
    async fn discover_jwks_uri(&self) -> Result<String, String> {
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
        let doc: Value = serde_json::from_slice(&self.get(&url).await?).map_err(|e| format!("{url}: {e}"))?;
        doc.get("jwks_uri").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("{url} names no jwks_uri"))
    }

    /// A bounded GET.
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        crate::fetch::get(&self.client, url, MAX_DOCUMENT).await
    }
}

fn invalid(why: &str) -> Refusal {
    Refusal::Invalid(why.to_owned())
}
