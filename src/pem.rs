//! PEM files into rustls types, for both TLS sides (the database client in `db/tls.rs`, the
//! metrics server in `web_config.rs`): one wording for what is wrong with a file, naming the
//! setting it came from.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate in `path`; none at all is an error (a key or an empty file given by
/// mistake). `what` names the setting, as the message shows it.
pub fn certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first private key in `path` (PKCS#1, PKCS#8 or SEC1).
pub fn key(what: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}
