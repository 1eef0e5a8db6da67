//! A baseline for the scrape benchmark (scripts/bench): one file's bytes served from memory
//! through the exporter's own HTTP stack (warp on hyper, tokio's multi-threaded runtime, the
//! length declared) with nothing else of the exporter. Under `wrk` it shows what that stack
//! costs on this machine, so that the exporter's plain `/metrics` figures can be read against it.
//!
//! Usage: cargo bench --bench static_body -- FILE PORT   (serves every path until killed)

use std::net::SocketAddr;

use bytes::Bytes;
use warp::Filter;

/// Every path answers `body` as an exposition, with its length declared as the exporter does.
fn route(
    body: Bytes,
) -> impl Filter<
    Extract = (warp::http::Response<warp::hyper::Body>,),
    Error = std::convert::Infallible,
> + Clone {
    warp::any().map(move || {
        warp::http::Response::builder()
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .header("content-length", body.len())
            .body(warp::hyper::Body::from(body.clone()))
            .expect("a static response is well-formed")
    })
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; the arguments that matter are the file and the port.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(file), Some(port)) = (args.first(), args.get(1)) else {
        // `cargo test --all-targets` runs this without arguments: check one response instead.
        smoke_check().await;
        return;
    };
    let body = Bytes::from(std::fs::read(file).expect("read the body file"));
    let port: u16 = port.parse().expect("PORT is a number");
    warp::serve(route(body))
        .run(SocketAddr::from(([127, 0, 0, 1], port)))
        .await;
}

/// Serves a body of a few megabytes on an ephemeral port and reads one response over a raw
/// socket: the declared length and the bytes must be the ones served.
async fn smoke_check() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (addr, server) = warp::serve(route(Bytes::from(body.clone())))
        .bind_ephemeral(SocketAddr::from(([127, 0, 0, 1], 0)));
    tokio::spawn(server);
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send the request");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response)
        .await
        .expect("read the response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert!(response[split + 4..] == body[..], "the body differs");
    println!("static_body smoke check: {} bytes served", body.len());
}
