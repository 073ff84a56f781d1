//! A bare HTTP/1.1 client for the admin port and readers of its Prometheus text.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 GET over a fresh connection: (status, headers, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    get_with(addr, path, "").await
}

/// [`get`] with extra header lines (each ending in `\r\n`).
pub async fn get_with(addr: SocketAddr, path: &str, headers: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect admin port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// What Prometheus asks for: OpenMetrics first.
pub const OPENMETRICS_ACCEPT: &str =
    "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n";

/// `/metrics` of a running server, in OpenMetrics (as Prometheus scrapes it).
pub async fn scrape(server: &super::TestServer) -> String {
    let addr = server.admin_http_addr.expect("admin HTTP port enabled");
    let (status, head, text) = get_with(addr, "/metrics", OPENMETRICS_ACCEPT).await;
    assert_eq!(status, 200, "{head}");
    text
}

/// The value of the sample line that starts with `series ` (exact labels).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The families `# TYPE` declares, with their type.
pub fn families(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
}
