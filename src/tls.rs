//! TLS settings for wss://: PEM certificate chain and private key (as Node's
//! `https.createServer` takes them) to a rustls server configuration. No I/O here.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// Builds the server configuration; errors say which input is wrong and why.
pub fn server_config(key_pem: &[u8], cert_pem: &[u8]) -> Result<Arc<ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls("cert", format!("cannot read the PEM certificate chain: {e:?}")))?;
    if certs.is_empty() {
        return Err(Error::Tls("cert", "no PEM certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| Error::Tls("key", format!("cannot read the PEM private key: {e:?}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls("cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls("key", format!("the key does not fit the certificate or is unsupported: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
