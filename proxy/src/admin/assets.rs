//! The dashboard's files and the OpenAPI document, embedded in the binary: the page works with no
//! internet (no CDN) and always matches the gateway serving it.

/// The OpenAPI document of the admin API.
pub(super) const OPENAPI: &str = include_str!("openapi.json");

/// One embedded file.
pub(super) struct Asset {
    /// Its `Content-Type`.
    pub(super) content_type: &'static str,
    /// Its bytes.
    pub(super) body: &'static str,
}

const INDEX: Asset = Asset { content_type: "text/html; charset=utf-8", body: include_str!("dashboard/index.html") };

/// The file served at `path`, if one is.
pub(super) fn find(path: &str) -> Option<Asset> {
    let asset = match path {
        "/admin" | "/admin/" | "/admin/index.html" => INDEX,
        "/admin/app.js" => {
            Asset { content_type: "text/javascript; charset=utf-8", body: include_str!("dashboard/app.js") }
        }
        "/admin/app.css" => Asset { content_type: "text/css; charset=utf-8", body: include_str!("dashboard/app.css") },
        "/admin/favicon.svg" => Asset { content_type: "image/svg+xml", body: include_str!("dashboard/favicon.svg") },
        "/admin/openapi.json" => Asset { content_type: "application/json", body: OPENAPI },
        _ => return None,
    };
    Some(asset)
}

/// Headers of the page's files: only its own scripts, styles and API, never framed.
pub(super) const HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

/// Headers of the API's answers.
pub(super) const API_HEADERS: &[(&str, &str)] = &[("x-content-type-options", "nosniff")];
