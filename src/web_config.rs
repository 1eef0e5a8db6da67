//! The web configuration: `--web.config.file` (the Prometheus exporter-toolkit format: TLS, HTTP
//! headers, basic-auth users) and `--web.bearer-token-file`, parsed and validated into one
//! immutable `WebSettings`, plus the credential check with its cache of bcrypt verifications.
//! `http` serves with whatever `WebSettings` is current; on SIGHUP `watch_reload` re-reads both
//! files and swaps it, keeping the previous settings when the new files are invalid.
//!
//! Keys of the format that rustls cannot honour are rejected with a line saying so, never
//! silently ignored: a setting the operator believes is in force must be.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use http::{HeaderName, HeaderValue};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The realm named in `WWW-Authenticate`.
pub const REALM: &str = "litellm-exporter";

/// The two files behind the web settings; re-read together on SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct WebFiles {
    pub config_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("web config file {path}: {msg}")]
    Config { path: String, msg: String },
    #[error("bearer token file {path}: {msg}")]
    Token { path: String, msg: String },
}

// --- The file format, as written (exporter-toolkit's key names). ---

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// Known to the format, not implemented here: rejected with a clear line.
    rate_limit: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    // Known to the format, not implemented here: rejected with a clear line.
    cert: Option<serde_yaml::Value>,
    key: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// What the two files say, validated. Immutable: a reload builds a new one.
pub struct WebSettings {
    /// Some: serve HTTPS only, with this configuration.
    pub tls: Option<Arc<ServerConfig>>,
    pub http2: bool,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// user -> bcrypt hash.
    users: HashMap<String, String>,
    /// SHA-256 of the bearer token (compared digest to digest, in constant time).
    bearer: Option<[u8; 32]>,
    /// user -> SHA-256 of (user, password, hash) of the last password that verified. bcrypt is
    /// slow on purpose; a scrape every few seconds must not pay it each time. Kept per settings,
    /// so a reload that changes a hash starts with an empty cache.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for WebSettings {
    // Never print hashes or token digests.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("tls", &self.tls.is_some())
            .field("http2", &self.http2)
            .field("headers", &self.headers.len())
            .field("users", &self.users.len())
            .field("bearer", &self.bearer.is_some())
            .finish()
    }
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            tls: None,
            http2: true,
            headers: Vec::new(),
            users: HashMap::new(),
            bearer: None,
            verified: Mutex::new(HashMap::new()),
        }
    }
}

/// The outcome of checking a request's `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Granted,
    Denied,
}

impl WebSettings {
    /// What a scrape meets, in one line (`check-config`); never a secret.
    pub fn summary(&self) -> String {
        let mut parts = vec![match (&self.tls, self.http2) {
            (Some(_), true) => "HTTPS only (HTTP/2 and HTTP/1.1)".to_string(),
            (Some(_), false) => "HTTPS only (HTTP/1.1)".to_string(),
            (None, _) => "plain HTTP".to_string(),
        }];
        if !self.users.is_empty() {
            let mut users: Vec<&str> = self.users.keys().map(String::as_str).collect();
            users.sort_unstable();
            parts.push(format!("basic auth for {}", users.join(", ")));
        }
        if self.bearer.is_some() {
            parts.push("a bearer token".into());
        }
        if !self.headers.is_empty() {
            parts.push(format!("{} response headers", self.headers.len()));
        }
        parts.join(", ")
    }

    /// True when the telemetry path needs credentials.
    pub fn auth_required(&self) -> bool {
        !self.users.is_empty() || self.bearer.is_some()
    }

    /// The `WWW-Authenticate` challenges for a 401, one per credential kind configured.
    pub fn challenges(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.users.is_empty() {
            out.push(format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""));
        }
        if self.bearer.is_some() {
            out.push(format!("Bearer realm=\"{REALM}\""));
        }
        out
    }

    /// Checks an `Authorization` header value. Either configured credential kind admits. The
    /// bcrypt verification runs on the blocking pool (it takes tens of milliseconds).
    pub async fn check(self: &Arc<Self>, authorization: Option<&str>) -> Access {
        if !self.auth_required() {
            return Access::Granted;
        }
        let Some(value) = authorization else {
            return Access::Denied;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return match &self.bearer {
                Some(want) if bool::from(sha256(&[rest.as_bytes()]).ct_eq(want)) => Access::Granted,
                _ => Access::Denied,
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") || self.users.is_empty() {
            return Access::Denied;
        }
        use base64::Engine as _;
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return Access::Denied;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Access::Denied;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return Access::Denied;
        };
        if self.cached(user, password) {
            return Access::Granted;
        }
        // At most a few bcrypt runs at a time: a flood of wrong passwords must not take every
        // core (or the blocking pool) from the refresh loop and the scrapes.
        let Ok(_permit) = BCRYPT_SLOTS.acquire().await else {
            return Access::Denied;
        };
        let me = self.clone();
        let (user, password) = (user.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || me.verify(&user, &password))
            .await
            .unwrap_or(Access::Denied)
    }

    fn digest(&self, user: &str, password: &str) -> Option<[u8; 32]> {
        let hash = self.users.get(user)?;
        Some(sha256(&[
            user.as_bytes(),
            password.as_bytes(),
            hash.as_bytes(),
        ]))
    }

    /// The password verified before (for this user, under these settings).
    fn cached(&self, user: &str, password: &str) -> bool {
        let Some(digest) = self.digest(user, password) else {
            return false;
        };
        let cached = self
            .verified
            .lock()
            .map(|c| c.get(user).copied())
            .unwrap_or(None);
        cached.is_some_and(|c| bool::from(c.ct_eq(&digest)))
    }

    /// The slow path: bcrypt (which compares its output in constant time itself).
    fn verify(&self, user: &str, password: &str) -> Access {
        let (Some(hash), Some(digest)) = (self.users.get(user), self.digest(user, password)) else {
            // Spend the same time as for a known user, so that timing does not tell which
            // user names exist.
            let _ = bcrypt::verify(password, dummy_hash());
            return Access::Denied;
        };
        if bcrypt::verify(password, hash).unwrap_or(false) {
            if let Ok(mut c) = self.verified.lock() {
                c.insert(user.to_string(), digest);
            }
            Access::Granted
        } else {
            Access::Denied
        }
    }
}

/// Concurrent bcrypt verifications: bcrypt is CPU-bound, and two at a time leave the other cores
/// (and the blocking pool) to the rest of the exporter.
static BCRYPT_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// A valid hash of nothing in particular, for verifying unknown users, at cost 10 (the cost
/// exporter-toolkit's documentation suggests), so the time spent is alike.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| bcrypt::hash("litellm-exporter", 10).unwrap_or_default())
}

impl WebFiles {
    /// Reads and validates both files. Without either, the defaults: plain HTTP, no auth.
    pub fn load(&self) -> Result<WebSettings, WebConfigError> {
        let mut s = match &self.config_file {
            Some(p) => {
                let err = |msg: String| WebConfigError::Config {
                    path: p.display().to_string(),
                    msg,
                };
                let text = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
                let raw: RawFile = if text.trim().is_empty() {
                    RawFile::default()
                } else {
                    serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?
                };
                let base = p.parent().unwrap_or(Path::new("."));
                build(raw, base).map_err(err)?
            }
            None => WebSettings::default(),
        };
        if let Some(p) = &self.bearer_token_file {
            let err = |msg: String| WebConfigError::Token {
                path: p.display().to_string(),
                msg,
            };
            let text = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
            let token = text.trim();
            if token.is_empty() {
                return Err(err("the file is empty".into()));
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err(
                    "the token must be one line without spaces (an HTTP header value)".into(),
                ));
            }
            s.bearer = Some(sha256(&[token.as_bytes()]));
        }
        Ok(s)
    }
}

fn build(raw: RawFile, base: &Path) -> Result<WebSettings, String> {
    if raw.rate_limit.is_some() {
        return Err("rate_limit is not supported by litellm-exporter; remove it (put a rate limit in a reverse proxy if you need one)".into());
    }
    let mut s = WebSettings::default();
    if let Some(h) = raw.http_server_config {
        s.http2 = h.http2.unwrap_or(true);
        for (k, v) in h.headers.unwrap_or_default() {
            s.headers.push(header(&k, &v)?);
        }
    }
    for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
        if user.contains(':') {
            return Err(format!(
                "basic_auth_users: user name {user:?} must not contain ':'"
            ));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(format!(
                "basic_auth_users.{user}: not a bcrypt hash (make one with e.g. `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
            ));
        }
        s.users.insert(user, hash);
    }
    if let Some(t) = raw.tls_server_config {
        s.tls = tls(t, base, s.http2)?;
    }
    Ok(s)
}

/// Headers that describe the body or the connection are the server's to set.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "www-authenticate",
    "date",
];

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("http_server_config.headers: {name:?} is not a header name"))?;
    if RESERVED_HEADERS.contains(&n.as_str()) {
        return Err(format!(
            "http_server_config.headers: {name} is set by the exporter and cannot be configured"
        ));
    }
    let v = HeaderValue::from_str(value).map_err(|_| {
        format!("http_server_config.headers.{name}: {value:?} is not a header value")
    })?;
    Ok((n, v))
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    // As in exporter-toolkit, relative paths are relative to the web config file.
    if p.is_relative() {
        base.join(p)
    } else {
        p.to_path_buf()
    }
}

fn version(
    key: &str,
    v: Option<&str>,
    default: &'static rustls::SupportedProtocolVersion,
) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match v {
        None => Ok(default),
        Some("TLS12") => Ok(&rustls::version::TLS12),
        Some("TLS13") => Ok(&rustls::version::TLS13),
        Some(v @ ("TLS10" | "TLS11")) => Err(format!(
            "tls_server_config.{key}: {v} is not supported (rustls speaks TLS12 and TLS13 only)"
        )),
        Some(v) => Err(format!(
            "tls_server_config.{key}: {v:?} is not a TLS version (use TLS12 or TLS13)"
        )),
    }
}

/// Go's curve names (exporter-toolkit's `curve_preferences`) to rustls key-exchange groups.
fn curve(name: &str) -> Option<rustls::NamedGroup> {
    match name {
        "X25519" => Some(rustls::NamedGroup::X25519),
        "CurveP256" => Some(rustls::NamedGroup::secp256r1),
        "CurveP384" => Some(rustls::NamedGroup::secp384r1),
        _ => None,
    }
}

/// The crypto provider with `cipher_suites` and `curve_preferences` applied.
fn provider(t: &RawTls) -> Result<CryptoProvider, String> {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        // As in Go, the list selects and orders the TLS 1.2 suites; TLS 1.3 suites are always
        // enabled and not configurable (naming one is accepted and changes nothing).
        let all = p.cipher_suites.clone();
        let tls13: Vec<_> = all
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        let mut chosen = tls13.clone();
        for n in names {
            // Go also knows the ChaCha suites without the _SHA256 suffix.
            let full = if n.ends_with("CHACHA20_POLY1305") {
                format!("{n}_SHA256")
            } else {
                n.clone()
            };
            let name = full.as_str();
            let tls13_named = tls13.iter().any(|s| {
                s.suite()
                    .as_str()
                    .is_some_and(|r| r.strip_prefix("TLS13_") == name.strip_prefix("TLS_"))
            });
            if tls13_named {
                continue;
            }
            match all.iter().find(|s| s.suite().as_str() == Some(name)) {
                Some(s) if !chosen.iter().any(|c| c.suite() == s.suite()) => chosen.push(*s),
                Some(_) => {}
                None => {
                    let offered: Vec<_> = all
                        .iter()
                        .filter(|s| s.version() == &rustls::version::TLS12)
                        .filter_map(|s| s.suite().as_str())
                        .collect();
                    return Err(format!(
                        "tls_server_config.cipher_suites: {name} is not supported (rustls offers {})",
                        offered.join(", ")
                    ));
                }
            }
        }
        p.cipher_suites = chosen;
    }
    if let Some(names) = &t.curve_preferences {
        let mut groups = Vec::new();
        for n in names {
            let g = curve(n).and_then(|g| p.kx_groups.iter().find(|k| k.name() == g));
            match g {
                Some(g) => groups.push(*g),
                None => {
                    return Err(format!(
                    "tls_server_config.curve_preferences: {n} is not supported (use X25519, CurveP256 or CurveP384)"
                ))
                }
            }
        }
        if groups.is_empty() {
            return Err("tls_server_config.curve_preferences must not be empty".into());
        }
        p.kx_groups = groups;
    }
    Ok(p)
}

fn tls(t: RawTls, base: &Path, http2: bool) -> Result<Option<Arc<ServerConfig>>, String> {
    for (set, key, instead) in [
        (
            t.cert.is_some(),
            "cert",
            "put the certificate in a file and use cert_file",
        ),
        (
            t.key.is_some(),
            "key",
            "put the key in a file and use key_file",
        ),
    ] {
        if set {
            return Err(format!(
                "tls_server_config.{key} is not supported by litellm-exporter; {instead}"
            ));
        }
    }
    let empty = |p: &Option<PathBuf>| p.as_ref().is_none_or(|p| p.as_os_str().is_empty());
    if empty(&t.cert_file)
        && empty(&t.key_file)
        && empty(&t.client_ca_file)
        && t.client_auth_type.is_none()
        && t.client_allowed_sans.is_none()
    {
        // exporter-toolkit serves plain HTTP for an empty tls_server_config.
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (&t.cert_file, &t.key_file) else {
        return Err("tls_server_config needs both cert_file and key_file".into());
    };
    let cert_file = resolve(base, cert_file);
    let key_file = resolve(base, key_file);
    let certs = crate::pem::certs("tls_server_config.cert_file", &cert_file)?;
    let key = crate::pem::key("tls_server_config.key_file", &key_file)?;

    let provider = Arc::new(provider(&t)?);
    let versions = protocol_versions(&t)?;
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let roots = client_roots(&t, base)?;
    let verifier = client_verifier(auth, roots, &provider)?;
    let verifier = match &t.client_allowed_sans {
        None => verifier,
        Some(sans) => allowed_sans(verifier, sans, auth)?,
    };
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "tls_server_config: certificate {} and key {} do not form a usable pair: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Some(Arc::new(cfg)))
}

/// `min_version` and `max_version`: the TLS versions served (1.2 and 1.3 by default).
fn protocol_versions(t: &RawTls) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let min = version(
        "min_version",
        t.min_version.as_deref(),
        &rustls::version::TLS12,
    )?;
    let max = version(
        "max_version",
        t.max_version.as_deref(),
        &rustls::version::TLS13,
    )?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| {
                let rank = |v: &rustls::SupportedProtocolVersion| u16::from(v.version);
                rank(v) >= rank(min) && rank(v) <= rank(max)
            })
            .collect();
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    Ok(versions)
}

/// `client_ca_file`: the CAs client certificates are verified against, if given.
fn client_roots(t: &RawTls, base: &Path) -> Result<Option<Arc<RootCertStore>>, String> {
    Ok(match &t.client_ca_file {
        Some(p) if !p.as_os_str().is_empty() => {
            let p = resolve(base, p);
            let mut roots = RootCertStore::empty();
            let cas = crate::pem::certs("tls_server_config.client_ca_file", &p)?;
            let (added, _) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(format!(
                    "tls_server_config.client_ca_file {}: no usable CA certificate in it",
                    p.display()
                ));
            }
            Some(Arc::new(roots))
        }
        _ => None,
    })
}

/// `client_auth_type` with the CAs: how client certificates are asked for and checked, as in
/// exporter-toolkit (Go's `tls.ClientAuthType`).
fn client_verifier(
    auth: &str,
    roots: Option<Arc<RootCertStore>>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let verifier: Arc<dyn ClientCertVerifier> = match (auth, roots) {
        ("NoClientCert", None) => rustls::server::WebPkiClientVerifier::no_client_auth(),
        ("RequestClientCert", None) => Arc::new(AnyClientCert {
            mandatory: false,
            provider: provider.clone(),
        }),
        ("RequireAnyClientCert", None) => Arc::new(AnyClientCert {
            mandatory: true,
            provider: provider.clone(),
        }),
        ("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert", Some(roots)) => {
            let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let b = if auth == "VerifyClientCertIfGiven" {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?
        }
        ("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert", None) => {
            return Err(format!(
                "tls_server_config: client_auth_type {auth} needs client_ca_file"
            ))
        }
        ("NoClientCert" | "RequestClientCert" | "RequireAnyClientCert", Some(_)) => {
            return Err(format!(
                "tls_server_config: client_ca_file is set but client_auth_type {auth} does not verify client certificates (use VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            ))
        }
        (other, _) => {
            return Err(format!(
                "tls_server_config.client_auth_type: {other:?} is not one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ))
        }
    };
    Ok(verifier)
}

/// `client_allowed_sans`: a verified client certificate must also name one of these.
fn allowed_sans(
    verifier: Arc<dyn ClientCertVerifier>,
    sans: &[String],
    auth: &str,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    if !matches!(
        auth,
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert"
    ) {
        return Err(format!("tls_server_config.client_allowed_sans needs client_auth_type VerifyClientCertIfGiven or RequireAndVerifyClientCert (not {auth})"));
    }
    let names = sans
        .iter()
        .map(|n| {
            rustls::pki_types::ServerName::try_from(n.as_str())
                .map(|n| n.to_owned())
                .map_err(|_| format!("tls_server_config.client_allowed_sans: {n:?} is not a DNS name or IP address (other name types are not supported)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err("tls_server_config.client_allowed_sans must not be empty".into());
    }
    Ok(Arc::new(AllowedSans {
        inner: verifier,
        names,
    }))
}

/// RequestClientCert / RequireAnyClientCert: a certificate is asked for (or required) but not
/// checked against any CA, as in Go; its signature over the handshake is still verified, so
/// the client does hold its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `client_allowed_sans`: after the CA check, the certificate must name one of these DNS names
/// or IP addresses in its subject alternative names (matched as a TLS client matches a server
/// name, so a wildcard certificate matches the names it covers).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<rustls::pki_types::ServerName<'static>>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self
            .names
            .iter()
            .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The settings in force, swapped whole on reload. Readers take a cheap `Arc` snapshot: a
/// connection keeps the TLS configuration it was accepted with; each request checks
/// credentials against the settings current when it arrives.
pub struct CurrentWeb {
    files: WebFiles,
    current: RwLock<Arc<WebSettings>>,
}

impl CurrentWeb {
    pub fn new(files: WebFiles, initial: Arc<WebSettings>) -> Self {
        CurrentWeb {
            files,
            current: RwLock::new(initial),
        }
    }

    pub fn get(&self) -> Arc<WebSettings> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-reads both files; on success the new settings apply to new connections and requests.
    pub fn reload(&self) -> Result<(), WebConfigError> {
        let new = Arc::new(self.files.load()?);
        match self.current.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
        Ok(())
    }

    pub fn has_files(&self) -> bool {
        self.files.config_file.is_some() || self.files.bearer_token_file.is_some()
    }
}

/// Re-reads the web files on every reload tick until the channel closes. A bad file keeps the
/// previous settings, logs why and sets `ok` to 0; a good one sets it back to 1.
pub async fn watch_reload(
    web: Arc<CurrentWeb>,
    mut reload: crate::Reload,
    ok: prometheus::IntGauge,
) {
    while reload.changed().await.is_ok() {
        if !web.has_files() {
            continue;
        }
        match web.reload() {
            Ok(()) => {
                ok.set(1);
                tracing::info!("Reloaded the web configuration.");
            }
            Err(e) => {
                ok.set(0);
                tracing::error!(error = %e, "Cannot reload the web configuration; keeping the previous one.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<WebSettings, String> {
        let raw: RawFile = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        build(raw, Path::new("."))
    }

    #[test]
    fn unknown_and_unsupported_keys_are_named() {
        let e = parse("tls_server_config:\n  cert_flie: x\n").expect_err("unknown");
        assert!(e.contains("cert_flie"), "{e}");
        let e = parse("basic_auth_user: {}\n").expect_err("unknown");
        assert!(e.contains("basic_auth_user"), "{e}");
        let e = parse("rate_limit:\n  interval: 1s\n").expect_err("unsupported");
        assert!(e.contains("rate_limit is not supported"), "{e}");
        let e = parse("tls_server_config:\n  cert: x\n").expect_err("unsupported");
        assert!(e.contains("tls_server_config.cert is not supported"), "{e}");
    }

    #[test]
    fn users_need_bcrypt_hashes_and_headers_are_checked() {
        let e = parse("basic_auth_users:\n  alice: secret\n").expect_err("plain password");
        assert!(
            e.contains("basic_auth_users.alice: not a bcrypt hash"),
            "{e}"
        );
        let e =
            parse("http_server_config:\n  headers:\n    Content-Type: x\n").expect_err("reserved");
        assert!(e.contains("Content-Type is set by the exporter"), "{e}");
        let s =
            parse("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n")
                .expect("valid");
        assert!(!s.http2);
        assert_eq!(s.headers.len(), 1);
        assert!(!s.auth_required());
    }

    #[test]
    fn tls_needs_cert_and_key_and_known_values() {
        let e = parse("tls_server_config:\n  cert_file: a.pem\n").expect_err("no key");
        assert!(e.contains("both cert_file and key_file"), "{e}");
        assert!(parse("tls_server_config: {}\n")
            .expect("empty")
            .tls
            .is_none());
        let t = RawTls {
            cipher_suites: Some(vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()]),
            ..Default::default()
        };
        let e = provider(&t).expect_err("cbc");
        assert!(
            e.contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported"),
            "{e}"
        );
        let t = RawTls {
            cipher_suites: Some(vec![
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into(),
                "TLS_AES_128_GCM_SHA256".into(),
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".into(),
            ]),
            curve_preferences: Some(vec!["CurveP384".into(), "X25519".into()]),
            ..Default::default()
        };
        let p = provider(&t).expect("valid");
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .collect();
        assert_eq!(tls12.len(), 2);
        assert_eq!(p.kx_groups.len(), 2);
        assert_eq!(p.kx_groups[0].name(), rustls::NamedGroup::secp384r1);
        let t = RawTls {
            curve_preferences: Some(vec!["CurveP521".into()]),
            ..Default::default()
        };
        assert!(provider(&t).expect_err("p521").contains("CurveP521"));
        assert!(version("min_version", Some("TLS11"), &rustls::version::TLS12).is_err());
    }

    #[tokio::test]
    async fn basic_and_bearer_credentials() {
        let hash = bcrypt::hash("pw", 4).expect("hash");
        let mut s = parse(&format!("basic_auth_users:\n  alice: '{hash}'\n")).expect("valid");
        s.bearer = Some(sha256(&[b"tok"]));
        let s = Arc::new(s);
        use base64::Engine as _;
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert_eq!(s.check(None).await, Access::Denied);
        assert!(!s.cached("alice", "pw"));
        assert_eq!(s.check(Some(&basic("alice", "pw"))).await, Access::Granted);
        // Second time from the cache, which holds only what verified.
        assert!(s.cached("alice", "pw"));
        assert!(!s.cached("alice", "px"));
        assert_eq!(s.check(Some(&basic("alice", "pw"))).await, Access::Granted);
        assert_eq!(s.check(Some(&basic("alice", "px"))).await, Access::Denied);
        assert!(
            s.cached("alice", "pw"),
            "a wrong password does not evict the cache"
        );
        assert_eq!(s.check(Some(&basic("bob", "pw"))).await, Access::Denied);
        assert_eq!(s.check(Some("Bearer tok")).await, Access::Granted);
        assert_eq!(s.check(Some("bearer tok")).await, Access::Granted);
        assert_eq!(s.check(Some("Bearer tok2")).await, Access::Denied);
        assert_eq!(s.check(Some("Digest x")).await, Access::Denied);
        assert_eq!(s.challenges().len(), 2);
    }
}
