//! Who is calling, and what they may use.
//!
//! Each HTTP request is authenticated against the snapshot it runs in ([`Security`] is built with
//! every configuration, so keys, tokens' settings and rules reload with it): an API key from the
//! configured header, or a JWT bearer token verified against the authorization server's keys.
//! The result is a [`Principal`]; [`policy`] decides what it may use. The stdio front door serves
//! the local user, who may do everything.

mod jwt;
pub mod keys;
pub mod policy;

use std::collections::HashMap;
use std::sync::Arc;

use crate::proto::fields::{as_text, Fields};
use hangar_config::{Auth, Config, VirtualServer, ADMIN_ROLE};
use serde_json::{json, Value};

pub use policy::{Decision, Item, Policy};

/// Someone calling the gateway, through one of its doors (the default endpoint or a virtual
/// server), under that door's rules.
#[derive(Debug)]
pub struct Principal {
    /// `service:ci`, `user:alice`, `anonymous`, `local`.
    pub id: String,
    /// Roles, from the credential and the role assignments.
    roles: Vec<String>,
    /// Groups (from a token's groups claim).
    groups: Vec<String>,
    /// How the principal was established: `api_key`, `jwt`, `anonymous`, `local`.
    pub via: &'static str,
    /// The door: `""` for the default endpoint, else the virtual server's name.
    pub door: Arc<str>,
    /// The door's rules.
    policy: Arc<Policy>,
    /// What the door offers (a virtual server's providers and tools); `None`: everything.
    scope: Option<Arc<VirtualServer>>,
    /// Whether what this principal sees may differ from what others see (lists are then not
    /// cacheable for everyone).
    pub private_lists: bool,
}

impl Principal {
    /// A principal with these roles and groups, at the default door with no rules.
    pub fn new(id: &str, roles: Vec<String>, groups: Vec<String>, via: &'static str) -> Self {
        Self {
            id: id.to_owned(),
            roles,
            groups,
            via,
            door: Arc::from(""),
            policy: Arc::default(),
            scope: None,
            private_lists: false,
        }
    }

    /// The principal at `door`, under its rules and scope.
    fn at(mut self, door: &Door) -> Self {
        self.door = door.name.clone();
        self.policy = door.policy.clone();
        self.scope = door.scope.clone();
        self.private_lists = door.private_lists;
        self
    }

    /// Whether this principal may use `item`: the door must offer it, then the rules decide.
    pub fn decide(&self, item: &Item<'_>) -> Decision {
        if let Some(scope) = &self.scope {
            if !scope.offers(item.provider(), item.name()) {
                return Decision { allowed: false, by: format!("virtual_servers.{}", scope.name).into() };
            }
        }
        self.policy.decide(self, item)
    }

    /// The local user of the stdio front door: every right.
    pub fn local() -> Arc<Self> {
        Arc::new(Self::new("local", vec![ADMIN_ROLE.to_owned()], Vec::new(), "local"))
    }

    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether `name` (a principal id, or `group:<g>`) designates this principal.
    pub fn is(&self, name: &str) -> bool {
        name == self.id || name.strip_prefix("group:").is_some_and(|g| self.groups.iter().any(|mine| mine == g))
    }

    /// The principal with the roles `assignments` give it added.
    fn with_assignments(mut self, assignments: &[hangar_config::RoleAssignment]) -> Self {
        for a in assignments {
            if self.is(&a.principal) && !self.has_role(&a.role) {
                self.roles.push(a.role.clone());
            }
        }
        self
    }
}

/// Why a request was not let in (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credential where one is required.
    #[error("authentication required")]
    Missing,
    /// A credential that does not pass (never says which part of a key was wrong).
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// Credentials cannot be checked now: the token signing keys cannot be fetched (HTTP 503).
    #[error("credentials cannot be checked now: {0}")]
    Unavailable(String),
}

impl Refusal {
    /// The metric label of the refusal (`auth_failures_total{reason}`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid(_) => "invalid",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status that answers it: 401, or 503 when credentials cannot be checked now.
    pub fn status(&self) -> u16 {
        if matches!(self, Self::Unavailable(_)) {
            503
        } else {
            401
        }
    }
}

/// What principals authenticated at one door carry: its name, rules and scope.
struct Door {
    name: Arc<str>,
    policy: Arc<Policy>,
    scope: Option<Arc<VirtualServer>>,
    private_lists: bool,
}

/// Authentication and authorization at one door of one configuration (the default endpoint,
/// or a virtual server).
pub struct Security {
    settings: Auth,
    door: Door,
    keys: HashMap<[u8; 32], Arc<Principal>>,
    jwt: Option<Arc<jwt::Verifier>>,
    anonymous: Arc<Principal>,
}

impl Security {
    /// The security of the default endpoint of `config`; the token verifier (and its cached
    /// signing keys) of `previous` is kept when the token settings did not change.
    pub fn build(config: &Config, previous: Option<&Security>) -> Self {
        Self::for_door(&config.auth, None, previous)
    }

    /// The security of each virtual server of `config`, by name (`previous`: the running ones).
    pub fn virtual_servers(
        config: &Config,
        previous: &HashMap<String, Arc<Security>>,
    ) -> HashMap<String, Arc<Security>> {
        config
            .virtual_servers
            .iter()
            .map(|v| {
                let auth = v.auth.as_ref().unwrap_or(&config.auth);
                let scope = Arc::new(v.clone());
                (v.name.clone(), Arc::new(Self::for_door(auth, Some(scope), previous.get(&v.name).map(|s| &**s))))
            })
            .collect()
    }

    fn for_door(auth: &Auth, scope: Option<Arc<VirtualServer>>, previous: Option<&Security>) -> Self {
        let door = Door {
            name: scope.as_ref().map_or_else(|| Arc::from(""), |s| Arc::from(s.name.as_str())),
            policy: Arc::new(Policy::new(auth.rules.clone())),
            private_lists: auth.enabled || !auth.rules.is_empty() || scope.is_some(),
            scope,
        };
        let keys = auth
            .api_key
            .keys
            .iter()
            .filter(|_| auth.api_key.enabled)
            .map(|k| {
                let who = Principal::new(&k.principal, k.roles.clone(), Vec::new(), "api_key")
                    .with_assignments(&auth.role_assignments)
                    .at(&door);
                (k.sha256, Arc::new(who))
            })
            .collect();
        let jwt = auth.oidc.as_ref().map(|oidc| match previous.and_then(|p| p.jwt.as_ref()) {
            Some(v)
                if v.settings() == oidc && previous.is_some_and(|p| p.settings.resource_url == auth.resource_url) =>
            {
                v.clone()
            }
            _ => Arc::new(jwt::Verifier::new(oidc.clone(), auth.resource_url.clone())),
        });
        let anonymous = Arc::new(
            Principal::new("anonymous", auth.anonymous_roles.clone(), Vec::new(), "anonymous")
                .with_assignments(&auth.role_assignments)
                .at(&door),
        );
        Self { settings: auth.clone(), door, keys, jwt, anonymous }
    }

    /// The header API keys travel in at this door, when keys are on (a browser's preflight must
    /// be told it may send it).
    pub fn api_key_header(&self) -> Option<&str> {
        let api = &self.settings.api_key;
        (self.settings.enabled && api.enabled).then_some(api.header_name.as_str())
    }

    /// The door's name: `""` for the default endpoint, else the virtual server's.
    pub fn door(&self) -> &str {
        &self.door.name
    }

    /// The configured public URL of the door's endpoint, if any.
    pub fn resource_url(&self) -> Option<&str> {
        self.settings.resource_url.as_deref()
    }

    /// The principal a request with `headers` acts as.
    pub async fn authenticate(&self, headers: &impl Fields) -> Result<Arc<Principal>, Refusal> {
        if !self.settings.enabled {
            return Ok(self.anonymous.clone());
        }
        let api = &self.settings.api_key;
        if api.enabled && !api.in_authorization() {
            if let Some(key) = single(headers, &api.header_name)? {
                return self.by_key(key);
            }
        }
        if let Some(value) = single(headers, "authorization")? {
            let Some(token) = bearer(value) else {
                return Err(Refusal::Invalid("the Authorization scheme must be Bearer".into()));
            };
            let looks_like_jwt = token.split('.').count() == 3;
            return match &self.jwt {
                Some(verifier) if looks_like_jwt || !api.in_authorization() => {
                    let claims = verifier.verify(token).await?;
                    let who = verifier.principal(&claims).with_assignments(&self.settings.role_assignments);
                    Ok(Arc::new(who.at(&self.door)))
                }
                _ if api.enabled && api.in_authorization() => self.by_key(token),
                _ => Err(Refusal::Invalid("bearer tokens are not accepted here".into())),
            };
        }
        if self.settings.allow_anonymous {
            return Ok(self.anonymous.clone());
        }
        Err(Refusal::Missing)
    }

    fn by_key(&self, key: &str) -> Result<Arc<Principal>, Refusal> {
        self.keys.get(&keys::digest(key.trim())).cloned().ok_or_else(|| Refusal::Invalid("unknown API key".into()))
    }

    /// The `WWW-Authenticate` value of a 401 for `refusal` (RFC 6750, RFC 9728).
    pub fn challenge(&self, refusal: &Refusal, metadata_url: &str) -> String {
        let error = match refusal {
            Refusal::Missing | Refusal::Unavailable(_) => String::new(),
            Refusal::Invalid(why) => format!(r#", error="invalid_token", error_description="{}""#, quote_safe(why)),
        };
        if self.jwt.is_some() {
            format!(r#"Bearer resource_metadata="{metadata_url}"{error}"#)
        } else if self.settings.api_key.in_authorization() {
            format!(r#"Bearer realm="mcp-hangar"{error}"#)
        } else {
            format!(r#"ApiKey header="{}"{error}"#, self.settings.api_key.header_name)
        }
    }

    /// The protected-resource metadata (RFC 9728), when tokens from an authorization server are
    /// accepted; `resource` is the endpoint's URL as the client reaches it.
    pub fn resource_metadata(&self, resource: &str) -> Option<Value> {
        let oidc = self.settings.oidc.as_ref().filter(|_| self.settings.enabled)?;
        Some(json!({
            "resource": self.settings.resource_url.as_deref().unwrap_or(resource),
            "authorization_servers": oidc.authorization_servers,
            "bearer_methods_supported": ["header"],
            "resource_name": "MCP Hangar",
        }))
    }
}

/// Where the protected-resource metadata of `resource` (the MCP endpoint's URL) is served: the
/// well-known path inserted between the origin and the endpoint's path (RFC 9728 §3.1).
pub fn metadata_url(resource: &str) -> String {
    let (scheme, rest) = resource.split_once("://").unwrap_or(("http", resource));
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let path = path.trim_end_matches('/');
    let sep = if path.is_empty() { "" } else { "/" };
    format!("{scheme}://{authority}{WELL_KNOWN}{sep}{path}")
}

/// The well-known path of the protected-resource metadata.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The one value of header `name`; a request carrying it twice is refused (two credentials are
/// an attempt to have one checked and the other used).
fn single<'h>(headers: &'h impl Fields, name: &'h str) -> Result<Option<&'h str>, Refusal> {
    let mut values = headers.each(name);
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(Refusal::Invalid(format!("more than one {name} header")));
    }
    as_text(first).map(Some).ok_or_else(|| Refusal::Invalid(format!("the {name} header is not text")))
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Text safe inside a quoted header parameter.
fn quote_safe(text: &str) -> String {
    text.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn metadata_urls_insert_the_well_known_path() {
        assert_eq!(
            metadata_url("https://gw.example.com/mcp"),
            "https://gw.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(metadata_url("http://127.0.0.1:8000"), "http://127.0.0.1:8000/.well-known/oauth-protected-resource");
    }

    fn security(auth: &str) -> Security {
        let text = format!("providers: {{}}\nauth:\n{auth}");
        let config = hangar_config::parse(&text, "test", &|_| None).expect("valid config");
        Security::build(&config, None)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().expect("header value"));
        }
        h
    }

    #[tokio::test]
    async fn api_keys_name_their_principal_and_nothing_else_passes() {
        let hash = keys::key_hash("k1");
        let sec = security(&format!(
            "  enabled: true\n  api_key:\n    keys:\n      - {{name: a, key_hash: \"{hash}\", principal: \"service:a\", roles: [developer]}}\n  role_assignments:\n    - {{principal: \"service:a\", role: auditor}}\n"
        ));
        let who = sec.authenticate(&headers(&[("x-api-key", "k1")])).await.expect("the key passes");
        assert_eq!((who.id.as_str(), who.via), ("service:a", "api_key"));
        assert!(who.has_role("developer") && who.has_role("auditor"));
        assert!(matches!(sec.authenticate(&headers(&[("x-api-key", "k2")])).await, Err(Refusal::Invalid(_))));
        assert_eq!(sec.authenticate(&headers(&[])).await.err(), Some(Refusal::Missing));
        // A key in the wrong header, or a bearer token where no tokens are accepted, is refused.
        assert!(sec.authenticate(&headers(&[("authorization", "Bearer k1")])).await.is_err());
    }

    #[tokio::test]
    async fn without_authentication_everyone_is_anonymous_with_the_anonymous_roles() {
        let sec = security("  anonymous_roles: [reader]\n");
        let who = sec.authenticate(&headers(&[("x-api-key", "whatever")])).await.expect("anonymous");
        assert_eq!(who.id, "anonymous");
        assert!(who.has_role("reader") && !who.has_role("developer"));
    }

    #[test]
    fn bearer_tokens_and_single_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        let mut h = HeaderMap::new();
        h.append("x-api-key", "a".parse().expect("value"));
        assert_eq!(single(&h, "x-api-key"), Ok(Some("a")));
        h.append("x-api-key", "b".parse().expect("value"));
        assert!(single(&h, "x-api-key").is_err(), "two keys are refused");
    }
}
