//! A raw HTTP/2 client (the `h2` crate, no gRPC library) for the front-door tests: streams with
//! headers only, hand-made length prefixes, resets mid-body, a zero flow-control window;
//! [`Frames`] writes and reads frames by hand, for what the `h2` crate will not send.

use std::net::SocketAddr;

/// One raw HTTP/2 connection.
pub async fn connect(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

/// One raw HTTP/2 connection whose streams' flow-control window is 0
/// (SETTINGS_INITIAL_WINDOW_SIZE): the server can send response headers, never DATA, until the
/// test sends WINDOW_UPDATE (it never does). The connection task is returned so the test can
/// end the connection.
pub async fn connect_zero_window(
    addr: SocketAddr,
) -> (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new().initial_window_size(0).handshake(tcp).await.unwrap();
    let task = tokio::spawn(connection);
    (client.ready().await.unwrap(), task)
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

/// HTTP/2 frame types and flags [`Frames`] uses (RFC 9113 section 6).
pub mod frame {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
}

/// A frame as read: type, flags, stream id, payload.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn reason(&self) -> h2::Reason {
        let at = if self.kind == frame::GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap()).into()
    }
}

/// An HTTP/2 connection spoken frame by frame, for what the `h2` crate refuses to send (a DATA
/// frame longer than the stream's `content-length`). It answers the server's SETTINGS and PINGs
/// and hands every other frame to the test.
pub struct Frames {
    tcp: tokio::net::TcpStream,
}

impl Frames {
    /// Connects and sends the client preface with empty SETTINGS.
    pub async fn connect(addr: SocketAddr) -> Frames {
        use tokio::io::AsyncWriteExt as _;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        let mut frames = Frames { tcp };
        frames.send(frame::SETTINGS, 0, 0, &[]).await;
        frames
    }

    pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        use tokio::io::AsyncWriteExt as _;
        let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        bytes.extend_from_slice(&[kind, flags]);
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        self.tcp.write_all(&bytes).await.unwrap();
    }

    /// The next frame that is not SETTINGS or PING; `None` once the server closed the
    /// connection.
    pub async fn next(&mut self) -> Option<Frame> {
        use tokio::io::AsyncReadExt as _;
        loop {
            let mut head = [0u8; 9];
            match self.tcp.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) =>
                {
                    return None;
                }
                Err(e) => panic!("reading a frame: {e}"),
            }
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; length];
            self.tcp.read_exact(&mut payload).await.unwrap();
            let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
            let frame = Frame { kind: head[3], flags: head[4], stream, payload };
            match frame.kind {
                frame::SETTINGS if frame.flags & frame::ACK == 0 => {
                    self.send(frame::SETTINGS, frame::ACK, 0, &[]).await
                }
                frame::PING if frame.flags & frame::ACK == 0 => {
                    self.send(frame::PING, frame::ACK, 0, &frame.payload).await
                }
                frame::SETTINGS | frame::PING => {}
                _ => return Some(frame),
            }
        }
    }
}

/// An HPACK header block of literal fields without indexing (RFC 7541 section 6.2.2), so it
/// needs no table: each name and value shorter than 127 bytes.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127, "one-byte HPACK lengths only");
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}
