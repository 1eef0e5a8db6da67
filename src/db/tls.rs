//! TLS to the database: libpq's `sslmode` semantics, and Prisma's spelling of them, read from the
//! URL's parameters into a rustls client configuration; and the naming of a failed TLS check.
//!
//! Two spellings share the parameter `sslcert`: libpq's client certificate, Prisma's CA file.
//! The rule that tells them apart (documented in the README): a URL is read in Prisma's spelling
//! when it has `sslaccept` or `sslidentity`, or `sslcert` without `sslkey` (a client certificate
//! is useless without its key); otherwise in libpq's. Mixing the two is refused.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::selfmetrics::ErrorKind;

/// URL parameters this module reads; they are removed before the driver parses the rest.
pub const PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslaccept",
    "sslidentity",
    "sslpassword",
];

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(v: &str) -> Result<Mode, String> {
        Ok(match v {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Allow => "allow",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encryption only (libpq's require without a CA file; Prisma's default).
    Nothing,
    /// Signed by the CA file (verify-ca).
    Chain,
    /// Signed by the CA file and valid for the host name of the URL (verify-full).
    ChainAndName,
}

/// The TLS settings a URL asks for, before any file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub verify: Verify,
    pub ca_file: Option<PathBuf>,
    /// `sslrootcert=system`: the operating system's CAs instead of a file.
    pub system_roots: bool,
    /// libpq's `sslcert` and `sslkey` (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub prisma: bool,
}

impl Settings {
    /// Reads the TLS parameters (`params`: key and decoded value, in URL order). `env` gives
    /// libpq's `PGSSLMODE` and `PGSSLROOTCERT`, which apply to libpq-spelled URLs only.
    pub fn from_params(
        params: &[(String, String)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let get = |k: &str| {
            params
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let (sslcert, sslkey) = (get("sslcert"), get("sslkey"));
        let prisma = get("sslaccept").is_some()
            || get("sslidentity").is_some()
            || (sslcert.is_some() && sslkey.is_none());
        if prisma {
            return Self::prisma(&get, sslcert);
        }
        let mode = match get("sslmode").or_else(|| env("PGSSLMODE")) {
            Some(v) => Mode::parse(&v)?,
            None => Mode::Prefer,
        };
        let ca_file = get("sslrootcert")
            .or_else(|| env("PGSSLROOTCERT"))
            .filter(|v| !v.is_empty());
        let client_cert = match (sslcert, sslkey) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, Some(_)) => return Err("sslkey without sslcert: give both or neither".into()),
            _ => None,
        };
        if ca_file.as_deref() == Some("system") {
            // As libpq 16: the operating system's CAs vouch for public host names, so only
            // verify-full means anything with them; it is implied, and a weaker mode refused.
            let explicit = get("sslmode").or_else(|| env("PGSSLMODE"));
            if let Some(m) = explicit.as_deref().map(Mode::parse).transpose()? {
                if m != Mode::VerifyFull {
                    return Err(format!(
                        "sslmode={} cannot be used with sslrootcert=system: use sslmode=verify-full \
                         (or leave sslmode out)",
                        m.name()
                    ));
                }
            }
            return Ok(Settings {
                mode: Mode::VerifyFull,
                verify: Verify::ChainAndName,
                ca_file: None,
                system_roots: true,
                client_cert,
                prisma: false,
            });
        }
        let verify = match (mode, &ca_file) {
            (Mode::Disable, _) => Verify::Nothing,
            (Mode::VerifyFull, Some(_)) => Verify::ChainAndName,
            // libpq: with a CA file, even allow/prefer/require check the chain.
            (_, Some(_)) => Verify::Chain,
            (Mode::VerifyCa | Mode::VerifyFull, None) => {
                return Err(format!(
                    "sslmode={} needs the CA file: add sslrootcert=/path/to/ca.pem",
                    mode.name()
                ))
            }
            (_, None) => Verify::Nothing,
        };
        Ok(Settings {
            mode,
            verify,
            ca_file: ca_file.map(PathBuf::from),
            system_roots: false,
            client_cert,
            prisma: false,
        })
    }

    /// Prisma's spelling: `sslmode` is disable, prefer or require; `sslcert` is the CA file;
    /// `sslaccept=strict` checks the certificate and host name, `accept_invalid_certs` (Prisma's
    /// default) checks nothing. Read as Prisma reads it, so that LiteLLM's own URL behaves alike.
    fn prisma(
        get: &dyn Fn(&str) -> Option<String>,
        ca: Option<String>,
    ) -> Result<Settings, String> {
        const MIXED: &str = "mixes Prisma's TLS parameters (sslcert as the CA file, sslaccept, \
                             sslidentity) with libpq's";
        if get("sslrootcert").is_some() {
            return Err(format!(
                "{MIXED} (sslrootcert): use sslcert=CA with sslaccept, or sslrootcert=CA with \
                 sslmode=verify-full"
            ));
        }
        if get("sslidentity").is_some() {
            return Err(
                "sslidentity (a PKCS#12 client identity) is not supported: give the \
                        client certificate and key as PEM files with sslcert=... and sslkey=..., \
                        and the CA with sslrootcert=..."
                    .into(),
            );
        }
        let mode = match get("sslmode") {
            None => Mode::Prefer,
            Some(v) => match Mode::parse(&v)? {
                m @ (Mode::Disable | Mode::Prefer | Mode::Require) => m,
                m => {
                    return Err(format!(
                        "{MIXED} (sslmode={}): with Prisma's spelling use sslmode=require and \
                         sslaccept=strict",
                        m.name()
                    ))
                }
            },
        };
        let verify = match get("sslaccept").as_deref() {
            None | Some("accept_invalid_certs") => Verify::Nothing,
            Some("strict") if ca.is_some() => Verify::ChainAndName,
            Some("strict") => {
                return Err(
                    "sslaccept=strict needs the CA file: add sslcert=/path/to/ca.pem".into(),
                )
            }
            Some(other) => {
                return Err(format!(
                    "sslaccept={other:?} is not one of strict, accept_invalid_certs"
                ))
            }
        };
        let verify = if mode == Mode::Disable {
            Verify::Nothing
        } else {
            verify
        };
        Ok(Settings {
            mode,
            verify,
            ca_file: ca.map(PathBuf::from),
            system_roots: false,
            client_cert: None,
            prisma: true,
        })
    }

    /// One line for the log, e.g. `sslmode=verify-full ca=/etc/ca.pem`.
    pub fn summary(&self) -> String {
        let mut s = format!("sslmode={}", self.mode.name());
        s.push_str(match self.verify {
            Verify::Nothing if self.mode == Mode::Disable => " (no TLS)",
            Verify::Nothing => " (certificate not checked)",
            Verify::Chain => " (CA checked)",
            Verify::ChainAndName => " (CA and host name checked)",
        });
        if let Some(ca) = &self.ca_file {
            s.push_str(&format!(" ca={}", ca.display()));
        }
        if self.system_roots {
            s.push_str(" ca=system");
        }
        if let Some((cert, _)) = &self.client_cert {
            s.push_str(&format!(" client_cert={}", cert.display()));
        }
        if self.prisma {
            s.push_str(" (Prisma spelling)");
        }
        s
    }
}

/// A ready connector: what the driver is told about TLS, and how the handshake is checked.
#[derive(Clone)]
pub struct Tls {
    pub ssl_mode: SslMode,
    pub connector: MakeRustlsConnect,
    pub summary: String,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The operating system's CAs (`SSL_CERT_FILE` and `SSL_CERT_DIR` override where they are
/// looked for, as with OpenSSL). Certificates the store holds but rustls cannot use are skipped,
/// as libpq's OpenSSL skips them; an empty result is an error naming where to look.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unusable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(format!(
            "sslrootcert=system: no usable CA certificate in the operating system's store \
             (install ca-certificates, or set SSL_CERT_FILE){}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {}", why.join("; "))
            }
        ));
    }
    Ok(roots)
}

/// Reads the files the settings name and builds the rustls configuration.
pub fn build(s: &Settings) -> Result<Tls, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let ca_what = if s.prisma {
        "sslcert (CA)"
    } else {
        "sslrootcert"
    };
    let builder = match (&s.ca_file, s.verify) {
        _ if s.system_roots => builder.with_webpki_verifier(
            WebPkiServerVerifier::builder_with_provider(Arc::new(system_roots()?), provider)
                .build()
                .map_err(|e| format!("sslrootcert=system: {e}"))?,
        ),
        (Some(ca), Verify::Chain | Verify::ChainAndName) => {
            let mut roots = RootCertStore::empty();
            for cert in crate::pem::certs(ca_what, ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{ca_what} {}: {e}", ca.display()))?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{ca_what} {}: {e}", ca.display()))?;
            if s.verify == Verify::ChainAndName {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            }
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider))),
    };
    let config = match &s.client_cert {
        Some((cert, key)) => {
            let chain = crate::pem::certs("sslcert", cert)?;
            let key = crate::pem::key("sslkey", key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert/sslkey: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    let ssl_mode = match s.mode {
        Mode::Disable => SslMode::Disable,
        // The driver has no "allow" (plain first); trying TLS first and falling back to plain
        // when the server has none gives the same connections.
        Mode::Allow | Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    };
    Ok(Tls {
        ssl_mode,
        connector: MakeRustlsConnect::new(config),
        summary: s.summary(),
    })
}

/// verify-ca: the chain is checked, the host name is not. rustls checks the chain before the
/// name, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// require/prefer without a CA: any certificate is accepted (encryption without authentication,
/// as libpq does), but the handshake signatures are still checked against it.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Which TLS check failed, for the log and the `kind` label of `litellm_exporter_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered the TLS request with "no" (sslmode=require or stronger).
    Unavailable,
    /// The certificate is not signed by a trusted CA (the CA file, or the system's).
    UnknownCa,
    /// The certificate does not name the URL's host (verify-full).
    HostName,
    /// Anything else in the handshake (expired certificate, protocol, client certificate).
    Other(String),
}

impl Failure {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Failure::Unavailable => ErrorKind::TlsUnavailable,
            Failure::UnknownCa => ErrorKind::TlsUnknownCa,
            Failure::HostName => ErrorKind::TlsHostname,
            Failure::Other(_) => ErrorKind::Tls,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unavailable => f.write_str(
                "TLS failed: the server does not offer TLS (ssl = off), and sslmode requires it",
            ),
            Failure::UnknownCa => f.write_str(
                "TLS failed: the server's certificate is not signed by a CA that sslrootcert trusts \
                 (the CA file, or the system's CAs with sslrootcert=system; unknown CA)",
            ),
            Failure::HostName => f.write_str(
                "TLS failed: the server's certificate is not valid for the URL's host name \
                 (sslmode=verify-full; use a name the certificate lists, or verify-ca)",
            ),
            Failure::Other(why) => write!(f, "TLS failed: {why}"),
        }
    }
}

/// The TLS failure behind a driver error, if it is one.
pub fn classify(e: &tokio_postgres::Error) -> Option<Failure> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let rustls_err = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = rustls_err {
            return Some(match r {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                    Failure::UnknownCa
                }
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => Failure::HostName,
                other => Failure::Other(other.to_string()),
            });
        }
        // The driver's own message when the server answers the TLS request with "N".
        if err.to_string() == "server does not support TLS" {
            return Some(Failure::Unavailable);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let params: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_params(&params, &|_| None)
    }

    #[test]
    fn libpq_modes() {
        let s = read(&[]).unwrap();
        assert_eq!((s.mode, s.verify), (Mode::Prefer, Verify::Nothing));
        let s = read(&[("sslmode", "require")]).unwrap();
        assert_eq!(s.verify, Verify::Nothing);
        let s = read(&[("sslmode", "require"), ("sslrootcert", "/ca.pem")]).unwrap();
        assert_eq!(
            s.verify,
            Verify::Chain,
            "a CA file makes require check the chain"
        );
        let s = read(&[("sslmode", "verify-full"), ("sslrootcert", "/ca.pem")]).unwrap();
        assert_eq!(s.verify, Verify::ChainAndName);
        assert!(read(&[("sslmode", "verify-ca")])
            .unwrap_err()
            .contains("sslrootcert"));
        assert!(read(&[("sslmode", "bogus")]).is_err());
        let s = read(&[("sslcert", "/c.pem"), ("sslkey", "/k.pem")]).unwrap();
        assert!(!s.prisma);
        assert_eq!(
            s.client_cert,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
    }

    #[test]
    fn environment_applies_to_libpq_spelling_only() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-full".to_string()),
            "PGSSLROOTCERT" => Some("/env-ca.pem".to_string()),
            _ => None,
        };
        let s = Settings::from_params(&[], &env).unwrap();
        assert_eq!(s.verify, Verify::ChainAndName);
        assert_eq!(s.ca_file, Some(PathBuf::from("/env-ca.pem")));
        let url = [("sslmode".to_string(), "require".to_string())];
        let s = Settings::from_params(&url, &env).unwrap();
        assert_eq!(s.mode, Mode::Require, "the URL wins over PGSSLMODE");
        let prisma = [("sslcert".to_string(), "/ca.pem".to_string())];
        let s = Settings::from_params(&prisma, &env).unwrap();
        assert_eq!((s.mode, s.verify), (Mode::Prefer, Verify::Nothing));
    }

    #[test]
    fn prisma_spelling() {
        let s = read(&[("sslmode", "require"), ("sslcert", "/ca.pem")]).unwrap();
        assert!(s.prisma);
        assert_eq!(s.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            s.verify,
            Verify::Nothing,
            "Prisma's default accepts any certificate"
        );
        let s = read(&[
            ("sslmode", "require"),
            ("sslcert", "/ca.pem"),
            ("sslaccept", "strict"),
        ])
        .unwrap();
        assert_eq!(s.verify, Verify::ChainAndName);
        assert!(read(&[("sslaccept", "strict")])
            .unwrap_err()
            .contains("sslcert"));
        assert!(read(&[("sslcert", "/ca.pem"), ("sslrootcert", "/ca.pem")])
            .unwrap_err()
            .contains("mixes"));
        assert!(read(&[("sslcert", "/ca.pem"), ("sslmode", "verify-full")])
            .unwrap_err()
            .contains("mixes"));
        assert!(read(&[("sslidentity", "/id.p12")])
            .unwrap_err()
            .contains("PKCS#12"));
        assert!(read(&[("sslaccept", "maybe"), ("sslcert", "/ca.pem")]).is_err());
    }

    #[test]
    fn sslrootcert_system_implies_verify_full_and_refuses_weaker_modes() {
        let s = read(&[("sslrootcert", "system")]).unwrap();
        assert_eq!(
            (s.mode, s.verify, s.system_roots, s.ca_file.clone()),
            (Mode::VerifyFull, Verify::ChainAndName, true, None)
        );
        assert!(s.summary().contains("ca=system"), "{}", s.summary());
        let s = read(&[("sslmode", "verify-full"), ("sslrootcert", "system")]).unwrap();
        assert!(s.system_roots);
        for weak in ["disable", "prefer", "require", "verify-ca"] {
            let e = read(&[("sslmode", weak), ("sslrootcert", "system")]).unwrap_err();
            assert!(
                e.contains(&format!(
                    "sslmode={weak} cannot be used with sslrootcert=system"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let s = read(&[
            ("sslmode", "verify-full"),
            ("sslrootcert", "/nonexistent/ca.pem"),
        ])
        .unwrap();
        let e = build(&s).err().expect("missing file");
        assert!(e.contains("sslrootcert /nonexistent/ca.pem"), "{e}");
    }
}
