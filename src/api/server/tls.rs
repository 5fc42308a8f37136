//! HTTPS on a listener: the certificate and key (`[tls] cert_file`, `key_file`) made into a
//! rustls server configuration, held where SIGHUP can replace it. A connection takes the
//! configuration in force when it is accepted and keeps it; a reload changes it for the
//! connections accepted after.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::sync::{Arc, PoisonError, RwLock};

/// The server configuration of a TLS listener, replaceable while it runs.
pub struct TlsConfig(RwLock<Arc<ServerConfig>>);

impl TlsConfig {
    /// Loads `cert_file` and `key_file` (see [`load`]).
    pub fn new(cert_file: &str, key_file: &str) -> Result<Arc<TlsConfig>, String> {
        Ok(Arc::new(TlsConfig(RwLock::new(load(cert_file, key_file)?))))
    }
    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
    /// Loads the files again; on success new connections use them, on failure (the error names
    /// the file) the configuration in force stays.
    pub fn reload(&self, cert_file: &str, key_file: &str) -> Result<(), String> {
        let new = load(cert_file, key_file)?;
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }
}

/// A rustls server configuration (ring, TLS 1.2 and 1.3, no client certificates, HTTP/1.1 by
/// ALPN) from a PEM certificate chain and a PEM private key. Errors name the file.
pub fn load(cert_file: &str, key_file: &str) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("tls.cert_file {cert_file}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert_file {cert_file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("tls.cert_file {cert_file}: no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("tls.key_file {key_file}: {e}"))?;
    // ring, as in the outbound client (ureq); deprecated only for lacking post-quantum key
    // exchange, which the clients of this contract do not offer.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls.cert_file {cert_file} with tls.key_file {key_file}: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
