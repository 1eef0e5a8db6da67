//! The HTTP side, the only module that knows warp and hyper: the telemetry path (pre-rendered
//! text, gzip when asked), `/-/healthy`, `/-/ready`, and a landing page; credentials on the
//! telemetry path; HTTPS with a TLS configuration that a reload can swap; and the drain on
//! shutdown. A scrape never touches the database: it serves what the last refresh rendered.
//!
//! warp's own server cannot change its certificates, so the warp filter is served through
//! hyper's per-connection API over a plain or rustls stream, chosen per connection from the
//! current `WebSettings`. Owning the accept loop also gives the drain: stop accepting, let every
//! connection finish its request, and cut the rest after `--web.drain-timeout`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use warp::http::{header, Response, StatusCode};
use warp::hyper::Body;
use warp::Filter;

use crate::refresh::{Shared, Status};
use crate::web_config::{Access, CurrentWeb, WebSettings};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The landing page: what state the exporter is in (the readiness message itself), how fresh
/// and how large its data is, and the links.
fn landing(path: &str, status: &Status) -> String {
    let state = match &status.not_ready {
        None => "ready".to_string(),
        Some(why) => format!("not ready: {}", html_escape(why)),
    };
    let last = if status.last_refresh > 0.0 {
        let ago = (crate::refresh::unix_now() - status.last_refresh).max(0.0);
        format!("{ago:.0} s ago")
    } else {
        "none yet".to_string()
    };
    format!(
        "<!DOCTYPE html>\n<html><head><title>LiteLLM Exporter</title></head><body>\n\
         <h1>LiteLLM Exporter</h1>\n<p>Prometheus metrics for LiteLLM, read from its database.</p>\n\
         <table>\n<tr><th align=\"left\">Status</th><td>{state}</td></tr>\n\
         <tr><th align=\"left\">Last refresh</th><td>{last}</td></tr>\n\
         <tr><th align=\"left\">Series</th><td>{}</td></tr>\n\
         <tr><th align=\"left\">Body size</th><td>{} bytes{}</td></tr>\n</table>\n\
         <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li>\
         <li><a href=\"/-/ready\">Readiness</a></li></ul>\n<p>Version {}</p>\n</body></html>\n",
        status.series,
        status.body_bytes,
        if status.gzip {
            ", gzip on (compressed once per refresh)"
        } else {
            ", gzip off until a scrape asks for it"
        },
        crate::VERSION
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The rendered families (shared, not copied) followed by the self-metrics, encoded per request
/// so that they are current even while a long catch-up runs.
fn metrics(shared: &Shared, gzip: bool) -> Response<Body> {
    let published = shared.exposition();
    let own = Bytes::from(shared.selfm.encode());
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, CONTENT_TYPE);
    if gzip {
        shared
            .gzip_wanted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // The families are compressed once per refresh: by the refresh loop once a gzip scrape
        // was seen, else by this first one (others wait for it); moving the thread out of the
        // async pool keeps other requests answered.
        let prefix = tokio::task::block_in_place(|| {
            published
                .gzip
                .get_or_init(|| crate::gzip::Prefix::new(&published.plain))
        });
        let builder = builder.header(header::CONTENT_ENCODING, "gzip");
        return sized(builder, prefix.body(&own).into());
    }
    // Cloning a part shares its bytes.
    sized(
        builder,
        published.plain.iter().cloned().chain([own]).collect(),
    )
}

/// A body of shared parts, sent as they are, with its length declared: a streamed body would
/// otherwise go out in chunked encoding, framing every part and leaving the client to guess
/// the size of a response that is megabytes long.
fn sized(builder: warp::http::response::Builder, parts: Vec<Bytes>) -> Response<Body> {
    let len: usize = parts.iter().map(Bytes::len).sum();
    let chunks = futures_util::stream::iter(parts.into_iter().map(Ok::<_, Infallible>));
    builder
        .header(header::CONTENT_LENGTH, len)
        .body(Body::wrap_stream(chunks))
        .unwrap_or_default()
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn accepts_gzip(h: &Option<String>) -> bool {
    h.as_deref().is_some_and(|v| {
        v.split(',').any(|p| {
            let mut parts = p.trim().split(';');
            parts
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"))
                && !parts.any(|q| q.trim().replace(' ', "") == "q=0")
        })
    })
}

/// Why a request gets 401: said once, without anything about the metrics.
fn unauthorized(web: &WebSettings) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    for c in web.challenges() {
        b = b.header(header::WWW_AUTHENTICATE, c);
    }
    b.body(Body::from("Unauthorized\n")).unwrap_or_default()
}

/// Everything the HTTP side needs from the configuration.
pub struct WebOptions {
    pub addr: SocketAddr,
    pub telemetry_path: String,
    /// The web settings in force; `reload` ticks make it re-read its files.
    pub web: Arc<CurrentWeb>,
    pub drain_timeout: Duration,
}

/// The warp filter: routing, credentials on the telemetry path, configured headers.
fn routes(
    telemetry_path: String,
    shared: Arc<Shared>,
    web: Arc<CurrentWeb>,
) -> impl Filter<Extract = (Response<Body>,), Error = Infallible> + Clone + Send + Sync + 'static {
    // HEAD answers wherever GET does, with the same headers (hyper leaves the body out).
    warp::get()
        .or(warp::head())
        .unify()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("accept-encoding"))
        .and(warp::header::optional::<String>("authorization"))
        .and_then(
            move |path: warp::path::FullPath, enc: Option<String>, auth: Option<String>| {
                let shared = shared.clone();
                let telemetry_path = telemetry_path.clone();
                let settings = web.get();
                async move {
                    let p = path.as_str();
                    let mut resp = if p == telemetry_path {
                        // Only the telemetry path is guarded: the landing page and the health
                        // and readiness probes reveal nothing about LiteLLM's traffic, and
                        // probes rarely carry credentials.
                        match settings.check(auth.as_deref()).await {
                            Access::Granted => metrics(&shared, accepts_gzip(&enc)),
                            Access::Denied => unauthorized(&settings),
                        }
                    } else if p == "/-/healthy" || p == "/healthz" {
                        text(StatusCode::OK, "Healthy\n".into())
                    } else if p == "/-/ready" {
                        match shared.not_ready_reason() {
                            None => text(StatusCode::OK, "Ready\n".into()),
                            Some(why) => text(
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!("Not ready: {why}\n"),
                            ),
                        }
                    } else if p == "/" {
                        Response::builder()
                            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                            .body(Body::from(landing(&telemetry_path, &shared.status())))
                            .unwrap_or_default()
                    } else {
                        text(StatusCode::NOT_FOUND, "Not found\n".into())
                    };
                    for (k, v) in &settings.headers {
                        resp.headers_mut().insert(k.clone(), v.clone());
                    }
                    Ok::<_, Infallible>(resp)
                }
            },
        )
        // Methods other than GET and HEAD end here.
        .or(warp::any().map(|| {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Use GET\n".into());
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            r
        }))
        .unify()
}

/// A TLS handshake that takes longer than this is abandoned (a client that connects and says
/// nothing must not hold a task forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Same for a request head that never completes.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `addr` and returns the bound address and the server future, which serves until
/// `shutdown` resolves, then drains: the listener closes at once, each connection finishes the
/// request it is serving (keep-alive connections close after it), and whatever is still open
/// after `drain_timeout` is cut. `reload` ticks re-read the web files.
pub fn serve(
    opts: WebOptions,
    shared: Arc<Shared>,
    reload: crate::Reload,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let std_listener = std::net::TcpListener::bind(opts.addr)?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let addr = listener.local_addr()?;
    let web = opts.web.clone();
    let service = warp::service(routes(opts.telemetry_path, shared.clone(), web.clone()));
    let reload_ok = shared.selfm.web_config_reload_ok.clone();
    let server = async move {
        let watcher = tokio::spawn(crate::web_config::watch_reload(
            web.clone(),
            reload,
            reload_ok,
        ));
        let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
        let mut conns = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _peer)) => {
                        let _ = tcp.set_nodelay(true);
                        conns.spawn(connection(tcp, web.get(), service.clone(), drain_rx.clone()));
                    }
                    Err(e) => {
                        // Usually out of file descriptors: wait instead of spinning.
                        tracing::warn!(error = %e, "Cannot accept a connection.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        // Stop accepting: new connections are refused from here on.
        drop(listener);
        watcher.abort();
        let _ = drain_tx.send(true);
        let open = conns.len();
        if open > 0 {
            tracing::info!(connections = open, timeout = ?opts.drain_timeout, "Draining HTTP connections.");
        }
        let drained = tokio::time::timeout(opts.drain_timeout, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = conns.len(),
                "HTTP connections still open after --web.drain-timeout; closing them."
            );
            conns.abort_all();
        }
    };
    Ok((addr, server))
}

/// One accepted connection: TLS handshake if the settings it was accepted under say so, then
/// HTTP until the client closes or the drain asks it to finish.
async fn connection<S>(
    tcp: tokio::net::TcpStream,
    settings: Arc<WebSettings>,
    service: S,
    drain: tokio::sync::watch::Receiver<bool>,
) where
    S: warp::hyper::service::Service<
            warp::hyper::Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let Some(cfg) = &settings.tls else {
        return http(tcp, settings.http2, service, drain).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
    let mut d = drain.clone();
    let tls = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            // A failed handshake (wrong version, no client certificate, not TLS at all) is the
            // client's problem; rustls has already sent the alert.
            Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed."),
            Err(_) => return tracing::debug!("TLS handshake timed out."),
        },
        // Shutting down: a connection still shaking hands has no request in flight.
        _ = wait_drain(&mut d) => return,
    };
    http(tls, settings.http2, service, drain).await
}

/// Resolves once the drain has begun (the guard of `wait_for` is dropped here, so that the
/// futures that select on this stay `Send`).
async fn wait_drain(drain: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

async fn http<I, S>(io: I, http2: bool, service: S, mut drain: tokio::sync::watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: warp::hyper::service::Service<
            warp::hyper::Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut h = warp::hyper::server::conn::Http::new();
    h.http1_header_read_timeout(HEADER_TIMEOUT);
    if !http2 {
        h.http1_only(true);
    }
    let conn = h.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP connection ended with an error.");
            }
            return;
        }
        _ = wait_drain(&mut drain) => {}
    }
    // Finish the request in flight (if any), then close instead of keeping the connection alive.
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error while draining.");
    }
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&Some("gzip".into())));
        assert!(accepts_gzip(&Some("deflate, gzip;q=0.5".into())));
        assert!(!accepts_gzip(&Some("gzip;q=0".into())));
        assert!(!accepts_gzip(&None));
        assert!(!accepts_gzip(&Some("identity".into())));
    }
}
