//! The HTTP side, the only module that knows warp: the telemetry path (pre-rendered text, gzip
//! when asked), `/-/healthy`, `/-/ready`, and a landing page. A scrape never touches the
//! database: it serves what the last refresh rendered.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use warp::http::{header, Response, StatusCode};
use warp::hyper::Body;
use warp::Filter;

use crate::refresh::Shared;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn landing(path: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>LiteLLM Exporter</title></head><body>\n\
         <h1>LiteLLM Exporter</h1>\n<p>Prometheus metrics for LiteLLM, read from its database.</p>\n\
         <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li>\
         <li><a href=\"/-/ready\">Readiness</a></li></ul>\n<p>Version {}</p>\n</body></html>\n",
        crate::VERSION
    )
}

/// The rendered families (shared, not copied) followed by the self-metrics, encoded per request
/// so that they are current even while a long catch-up runs.
fn metrics(shared: &Shared, gzip: bool) -> Response<Body> {
    let expo = shared.exposition();
    let own = Bytes::from(shared.selfm.encode());
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, CONTENT_TYPE);
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if enc.write_all(&expo).is_ok() && enc.write_all(&own).is_ok() {
            if let Ok(z) = enc.finish() {
                return builder
                    .header(header::CONTENT_ENCODING, "gzip")
                    .body(Body::from(z))
                    .unwrap_or_default();
            }
        }
    }
    let chunks = futures_util::stream::iter([Ok::<_, Infallible>(expo), Ok(own)]);
    builder.body(Body::wrap_stream(chunks)).unwrap_or_default()
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

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address and the server
/// future (so that a caller can learn a port chosen by the OS).
pub fn serve(
    addr: SocketAddr,
    telemetry_path: String,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), warp::Error> {
    let routes = warp::get()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("accept-encoding"))
        .and_then(move |path: warp::path::FullPath, enc: Option<String>| {
            let shared = shared.clone();
            let telemetry_path = telemetry_path.clone();
            async move {
                let p = path.as_str();
                let resp = if p == telemetry_path {
                    metrics(&shared, accepts_gzip(&enc))
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
                        .body(Body::from(landing(&telemetry_path)))
                        .unwrap_or_default()
                } else {
                    text(StatusCode::NOT_FOUND, "Not found\n".into())
                };
                Ok::<_, Infallible>(resp)
            }
        });
    warp::serve(routes).try_bind_with_graceful_shutdown(addr, shutdown)
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
