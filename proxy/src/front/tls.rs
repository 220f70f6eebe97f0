//! HTTPS on the front door: the certificate and key come from `server.tls`'s files and are read
//! again when the files change (a renewed certificate takes effect without a restart; one that
//! cannot be read leaves the current one in place, with an error in the log).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hangar_config::ServerTls;
use parking_lot::Mutex;
use pingora_rustls::sign::CertifiedKey;
use pingora_rustls::{ClientHello, CryptoProvider, ResolvesServerCert};

/// How often the files are checked for a change.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Why the certificate cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the TLS certificate {cert} with key {key}: {reason}")]
pub struct TlsError {
    cert: String,
    key: String,
    reason: String,
}

/// The front door's certificate, as rustls asks for it on each handshake.
pub struct Certificate {
    files: ServerTls,
    current: ArcSwap<CertifiedKey>,
    /// Modification times of the files last read.
    stamps: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate").field("cert_file", &self.files.cert_file).finish()
    }
}

impl Certificate {
    /// Reads the files (start-up fails when they cannot be used).
    pub fn load(files: &ServerTls) -> Result<Arc<Self>, TlsError> {
        let stamps = stamps(files);
        let key = read(files)?;
        Ok(Arc::new(Self { files: files.clone(), current: ArcSwap::from_pointee(key), stamps: Mutex::new(stamps) }))
    }

    /// Reads the files again if either changed since they were last read; returns whether a new
    /// certificate is in use.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.files);
        if *self.stamps.lock() == now {
            return false;
        }
        *self.stamps.lock() = now;
        match read(&self.files) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                tracing::info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!("{e}; the current certificate stays in use");
                false
            }
        }
    }

    /// Checks the files every few seconds until the gateway stops.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.reload_if_changed();
        }
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn stamps(files: &ServerTls) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(&files.cert_file), modified(&files.key_file))
}

fn read(files: &ServerTls) -> Result<CertifiedKey, TlsError> {
    let fail = |reason: String| TlsError {
        cert: files.cert_file.display().to_string(),
        key: files.key_file.display().to_string(),
        reason,
    };
    pingora_rustls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or_else(|| fail("no TLS crypto provider".into()))?;
    let (cert, key) = (files.cert_file.to_string_lossy(), files.key_file.to_string_lossy());
    let (chain, key) = pingora_rustls::load_certs_and_key_files(&cert, &key)
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail("no certificate, or no PKCS#8/PKCS#1/SEC1 private key".into()))?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| fail(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| fail(format!("the key does not match the certificate: {e}")))?;
    Ok(certified)
}
