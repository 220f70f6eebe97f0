//! The `auth` section: who may connect (API keys, JWT bearer tokens) and what each principal may
//! use (roles and allow/deny rules). Key names follow the Python MCP Hangar's `auth` section
//! (`enabled`, `allow_anonymous`, `api_key.header_name`, `oidc.*`, `role_assignments`); keys,
//! rules and the resource URL are this gateway's additions.

use std::time::Duration;

use serde_norway::Value;

use crate::decode::{index, Decoder, Fields};
use crate::sections::checked;
use crate::validate::check_http_url;

/// The role that may do everything, the `registry_*` admin tools included.
pub const ADMIN_ROLE: &str = "admin";
/// The role that may use every provider's tools, prompts and resources (not the admin tools).
pub const DEVELOPER_ROLE: &str = "developer";
/// The pseudo-provider the gateway's own `registry_*` tools belong to in rules: a rule reaches
/// them only by naming it (`providers: [hangar]`); `*` does not.
pub const ADMIN_PROVIDER: &str = "hangar";

/// `auth`: authentication and authorization.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Auth {
    /// Credentials are required (unless `allow_anonymous`). Off: every caller is anonymous.
    pub enabled: bool,
    /// With `enabled`, a request without credentials goes on as the anonymous principal (one
    /// with wrong credentials is still refused).
    pub allow_anonymous: bool,
    /// Roles of the anonymous principal: `developer` by default (provider tools, not the admin
    /// tools).
    pub anonymous_roles: Vec<String>,
    /// The gateway's public URL of its MCP endpoint: the audience JWTs must name (RFC 8707) and
    /// the `resource` of the protected-resource metadata (RFC 9728). When absent the metadata is
    /// built from the request's `Host`.
    pub resource_url: Option<String>,
    /// API keys.
    pub api_key: ApiKeys,
    /// JWT bearer tokens from an OpenID Connect / OAuth 2.1 authorization server.
    pub oidc: Option<Oidc>,
    /// Roles given to principals (or `group:<name>`) by name.
    pub role_assignments: Vec<RoleAssignment>,
    /// Allow/deny rules, over and above the built-in roles.
    pub rules: Vec<Rule>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_anonymous: false,
            anonymous_roles: vec![DEVELOPER_ROLE.to_owned()],
            resource_url: None,
            api_key: ApiKeys::default(),
            oidc: None,
            role_assignments: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// `auth.api_key`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiKeys {
    /// Accept API keys.
    pub enabled: bool,
    /// The header carrying the key: `X-API-Key` (the key as is) or `Authorization` (`Bearer <key>`).
    pub header_name: String,
    /// The keys, by hash.
    pub keys: Vec<ApiKey>,
}

impl Default for ApiKeys {
    fn default() -> Self {
        Self { enabled: true, header_name: "X-API-Key".into(), keys: Vec::new() }
    }
}

impl ApiKeys {
    /// Whether keys come as `Authorization: Bearer <key>`.
    pub fn in_authorization(&self) -> bool {
        self.header_name.eq_ignore_ascii_case("authorization")
    }
}

/// One API key: only its SHA-256 is stored (`mcp-hangar hash-key` prints it).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiKey {
    /// A name for logs and the audit trail (never the key).
    pub name: String,
    /// SHA-256 of the key.
    #[serde(rename = "key_hash", serialize_with = "crate::shown::key_hash")]
    pub sha256: [u8; 32],
    /// Who the key stands for (`service:ci`, `user:alice`).
    pub principal: String,
    /// The principal's roles.
    pub roles: Vec<String>,
}

/// `auth.oidc`: JWT bearer tokens.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Oidc {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// Audiences accepted (`aud` must name one): `audience`, else `auth.resource_url`.
    pub audience: Vec<String>,
    /// Where the signing keys are; discovered from the issuer's OpenID configuration when absent.
    #[serde(serialize_with = "crate::shown::opt_url")]
    pub jwks_uri: Option<String>,
    /// The claim naming the subject (the principal is `user:<subject>`).
    pub subject_claim: String,
    /// The claim listing the subject's groups (`group:<name>` in role assignments and rules).
    pub groups_claim: String,
    /// The claim listing the subject's roles (a list, or a space-separated string).
    pub roles_claim: String,
    /// The claim naming the tenant (recorded, not enforced).
    pub tenant_claim: String,
    /// Signature algorithms accepted (`RS256`, `ES256`, `EdDSA`, …); never `none`.
    pub algorithms: Vec<String>,
    /// Tolerance on `exp` and `nbf`.
    #[serde(rename = "clock_skew_s", serialize_with = "crate::shown::secs")]
    pub clock_skew: Duration,
    /// Authorization servers named in the protected-resource metadata (the issuer by default).
    pub authorization_servers: Vec<String>,
    /// How long fetched signing keys are trusted before they are fetched again.
    #[serde(rename = "jwks_cache_ttl_s", serialize_with = "crate::shown::secs")]
    pub jwks_cache_ttl: Duration,
}

/// Signature algorithms a token may use.
pub const JWT_ALGORITHMS: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// `auth.role_assignments[]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoleAssignment {
    /// A principal id, or `group:<name>`.
    pub principal: String,
    /// The role given.
    pub role: String,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses, whatever else grants.
    Deny,
}

/// `auth.rules[]`: an allow or deny over some providers' tools, prompts and resources, for some
/// principals. A deny wins over any allow; what no rule and no role grants is refused.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rule {
    /// Allow or deny.
    pub effect: Effect,
    /// Principal ids or `group:<name>` the rule is for; with `roles` empty too: everyone.
    pub principals: Vec<String>,
    /// Roles the rule is for.
    pub roles: Vec<String>,
    /// Provider names (globs; `*` by default, which never matches the admin tools' `hangar`).
    pub providers: Vec<String>,
    /// Tool names (globs, the provider's own name or the exposed one). `None`: all tools when no
    /// kind is named, else none.
    pub tools: Option<Vec<String>>,
    /// Prompt names, as `tools`.
    pub prompts: Option<Vec<String>>,
    /// Resource URIs (globs), as `tools`.
    pub resources: Option<Vec<String>>,
}

const AUTH_KEYS: &[&str] =
    &["enabled", "allow_anonymous", "anonymous_roles", "resource_url", "api_key", "oidc", "role_assignments", "rules"];
const API_KEY_KEYS: &[&str] = &["enabled", "header_name", "keys"];
const KEY_KEYS: &[&str] = &["name", "key_hash", "principal", "roles"];
const OIDC_KEYS: &[&str] = &[
    "enabled",
    "issuer",
    "audience",
    "jwks_uri",
    "subject_claim",
    "groups_claim",
    "roles_claim",
    "tenant_claim",
    "algorithms",
    "clock_skew_s",
    "authorization_servers",
    "jwks_cache_ttl_s",
];
const ASSIGNMENT_KEYS: &[&str] = &["principal", "role", "scope"];
const RULE_KEYS: &[&str] = &["effect", "principals", "roles", "providers", "tools", "prompts", "resources"];

pub(crate) fn decode_auth(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Auth> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, AUTH_KEYS, |_| None);
    let dflt = Auth::default();
    let auth = Auth {
        enabled: f.opt(d, "enabled", Decoder::boolean).unwrap_or(false),
        allow_anonymous: f.opt(d, "allow_anonymous", Decoder::boolean).unwrap_or(false),
        anonymous_roles: f.opt(d, "anonymous_roles", Decoder::string_list).unwrap_or(dflt.anonymous_roles),
        resource_url: f.opt(d, "resource_url", checked(check_http_url)),
        api_key: f.opt(d, "api_key", decode_api_keys).unwrap_or_default(),
        oidc: f.opt(d, "oidc", decode_oidc).flatten(),
        role_assignments: f.opt(d, "role_assignments", |d, p, v| list(d, p, v, decode_assignment)).unwrap_or_default(),
        rules: f.opt(d, "rules", |d, p, v| list(d, p, v, decode_rule)).unwrap_or_default(),
    };
    check_whole(d, &f, &auth);
    Some(auth)
}

/// Checks that need more than one field.
fn check_whole(d: &mut Decoder<'_>, f: &Fields<'_>, auth: &Auth) {
    if !auth.enabled {
        return;
    }
    let keys = auth.api_key.enabled && !auth.api_key.keys.is_empty();
    if !keys && auth.oidc.is_none() && !auth.allow_anonymous {
        d.problem(
            &f.path,
            "authentication is enabled but no credential can pass: add api_key.keys or an enabled oidc section",
        );
    }
    if let Some(oidc) = &auth.oidc {
        if oidc.audience.is_empty() && auth.resource_url.is_none() {
            d.problem(
                &crate::decode::child(&f.path, "oidc"),
                "tokens need an audience: set oidc.audience or auth.resource_url (the gateway's public MCP URL)",
            );
        }
    }
}

/// Reads a list whose elements `read` decodes.
fn list<'e, T>(
    d: &mut Decoder<'e>,
    path: &str,
    v: &Value,
    read: impl Fn(&mut Decoder<'e>, &str, &Value) -> Option<T>,
) -> Option<Vec<T>> {
    let Value::Sequence(items) = v else {
        d.problem(path, format!("expected a list, found {}", crate::decode::describe(v)));
        return None;
    };
    Some(items.iter().enumerate().filter_map(|(i, item)| read(d, &index(path, i), item)).collect())
}

fn decode_api_keys(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<ApiKeys> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, API_KEY_KEYS, |_| None);
    let dflt = ApiKeys::default();
    Some(ApiKeys {
        enabled: f.opt(d, "enabled", Decoder::boolean).unwrap_or(true),
        header_name: f
            .opt(d, "header_name", |d, p, v| {
                let name = d.non_empty_string(p, v)?;
                if http_token(&name) {
                    Some(name)
                } else {
                    d.problem(p, format!("{name:?} is not an HTTP header name"));
                    None
                }
            })
            .unwrap_or(dflt.header_name),
        keys: f.opt(d, "keys", |d, p, v| list(d, p, v, decode_key)).unwrap_or_default(),
    })
}

fn decode_key(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<ApiKey> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, KEY_KEYS, |k| {
        (k == "key").then(|| "keys are stored as hashes: `mcp-hangar hash-key` prints key_hash".to_owned())
    });
    let name = f.req(d, "name", "", Decoder::non_empty_string);
    let sha256 = f.req(d, "key_hash", " (`mcp-hangar hash-key` prints it)", |d, p, v| {
        let text = d.string(p, v)?;
        let parsed = parse_key_hash(&text);
        if parsed.is_none() {
            d.problem(p, "expected sha256:<64 hex digits> (`mcp-hangar hash-key` prints it)");
        }
        parsed
    });
    let principal = f.req(d, "principal", "", Decoder::non_empty_string);
    let roles = f.opt(d, "roles", Decoder::string_list).unwrap_or_default();
    Some(ApiKey { name: name?, sha256: sha256?, principal: principal?, roles })
}

/// `sha256:<hex>` as bytes.
pub fn parse_key_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.trim().strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn decode_oidc(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Option<Oidc>> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, OIDC_KEYS, |_| None);
    if !f.opt(d, "enabled", Decoder::boolean).unwrap_or(true) {
        return Some(None);
    }
    let issuer = f.req(d, "issuer", "", Decoder::non_empty_string);
    let audience = f
        .opt(d, "audience", |d, p, v| match v {
            Value::Sequence(_) => d.string_list(p, v),
            _ => d.non_empty_string(p, v).map(|a| vec![a]),
        })
        .unwrap_or_default();
    let jwks_uri = f.opt(d, "jwks_uri", checked(check_http_url));
    let claim = |d: &mut Decoder<'_>, key: &str, dflt: &str| {
        f.opt(d, key, Decoder::non_empty_string).unwrap_or_else(|| dflt.to_owned())
    };
    let subject_claim = claim(d, "subject_claim", "sub");
    let groups_claim = claim(d, "groups_claim", "groups");
    let roles_claim = claim(d, "roles_claim", "roles");
    let tenant_claim = claim(d, "tenant_claim", "tenant_id");
    let algorithms = f
        .opt(d, "algorithms", |d, p, v| {
            let algs = d.string_list(p, v)?;
            let mut ok = !algs.is_empty();
            if algs.is_empty() {
                d.problem(p, "must name at least one algorithm");
            }
            for (i, a) in algs.iter().enumerate() {
                if !JWT_ALGORITHMS.contains(&a.as_str()) {
                    d.problem(&index(p, i), format!("{a:?} is not accepted (one of: {})", JWT_ALGORITHMS.join(", ")));
                    ok = false;
                }
            }
            ok.then_some(algs)
        })
        .unwrap_or_else(|| ["RS256", "ES256", "EdDSA"].map(str::to_owned).to_vec());
    let clock_skew = f.opt(d, "clock_skew_s", Decoder::seconds).unwrap_or(Duration::from_secs(60));
    let servers = f.opt(d, "authorization_servers", Decoder::string_list);
    let jwks_cache_ttl = f.opt(d, "jwks_cache_ttl_s", Decoder::seconds).unwrap_or(Duration::from_secs(600));
    let issuer = issuer?;
    Some(Some(Oidc {
        authorization_servers: servers.unwrap_or_else(|| vec![issuer.clone()]),
        issuer,
        audience,
        jwks_uri,
        subject_claim,
        groups_claim,
        roles_claim,
        tenant_claim,
        algorithms,
        clock_skew,
        jwks_cache_ttl,
    }))
}

fn decode_assignment(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<RoleAssignment> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, ASSIGNMENT_KEYS, |_| None);
    let principal = f.req(d, "principal", "", Decoder::non_empty_string);
    let role = f.req(d, "role", "", Decoder::non_empty_string);
    if let Some(scope) = f.opt(d, "scope", Decoder::string) {
        if scope != "global" {
            d.problem(&crate::decode::child(path, "scope"), "only \"global\" scopes are supported");
        }
    }
    Some(RoleAssignment { principal: principal?, role: role? })
}

fn decode_rule(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Rule> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, RULE_KEYS, |_| None);
    let effect = f.req(d, "effect", " (allow or deny)", |d, p, v| match d.string(p, v)?.as_str() {
        "allow" => Some(Effect::Allow),
        "deny" => Some(Effect::Deny),
        other => {
            d.problem(p, format!("{other:?} is not an effect (allow or deny)"));
            None
        }
    });
    let principals = f.opt(d, "principals", Decoder::string_list).unwrap_or_default();
    let roles = f.opt(d, "roles", Decoder::string_list).unwrap_or_default();
    let providers = f.opt(d, "providers", Decoder::string_list).unwrap_or_else(|| vec!["*".into()]);
    let tools = f.opt(d, "tools", Decoder::string_list);
    let prompts = f.opt(d, "prompts", Decoder::string_list);
    let resources = f.opt(d, "resources", Decoder::string_list);
    Some(Rule { effect: effect?, principals, roles, providers, tools, prompts, resources })
}

/// An HTTP header name (RFC 9110 token).
fn http_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_key_hash(&format!("sha256:{hex}")), Some([0xab; 32]));
        assert_eq!(parse_key_hash(&hex), None);
        assert_eq!(parse_key_hash("sha256:abc"), None);
        assert_eq!(parse_key_hash(&format!("sha256:{}", "zz".repeat(32))), None);
    }
}
