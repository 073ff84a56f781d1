//! A raw HTTP/2 client (the `h2` crate, no gRPC library) for the front-door tests: streams with
//! headers only, hand-made length prefixes, resets mid-body.

use std::net::SocketAddr;

/// One raw HTTP/2 connection.
pub async fn connect(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

/// Opens a gRPC stream on `path` with `grpc-timeout: timeout`, headers only (END_STREAM when
/// `end`): the body, if any, is the caller's to send.
pub fn open(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: SocketAddr,
    path: &str,
    timeout: &str,
    end: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(())
        .unwrap();
    client.send_request(request, end).unwrap()
}

/// gRPC framing: flag 0, big-endian length, the message.
pub fn framed(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// grpc-status and grpc-message (percent-decoded) of a response: from the headers of a
/// trailers-only response, else from the trailers.
pub async fn status(response: h2::client::ResponseFuture) -> (i32, String) {
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let read = |h: &http::HeaderMap| {
        let code = h.get("grpc-status").map(|v| v.to_str().unwrap().parse::<i32>().unwrap());
        let message = h.get("grpc-message").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        code.map(|c| (c, percent_decode(&message)))
    };
    if let Some(status) = read(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    read(&body.trailers().await.unwrap().expect("trailers with grpc-status")).expect("grpc-status in the trailers")
}

/// grpc-message is percent-encoded (the gRPC spec).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
