//! The front door against a hostile client speaking raw HTTP/2 (the `h2` crate, no gRPC
//! library): streams that send headers and no body hold no admission slot and are answered when
//! the read timeout ends; a length prefix over `server.max_message_bytes` is refused
//! RESOURCE_EXHAUSTED from the prefix; a message of millions of empty candidates is refused before
//! it is decoded; one connection cannot take every slot; a request without a message and a stream
//! reset mid-body are the client's faults (INVALID_ARGUMENT, CANCELLED), never INTERNAL; a
//! body-less health Check is answered at the read timeout and health Watch streams are capped;
//! a connection that makes augur reset stream after stream gets GOAWAY at
//! `server.http2.max_local_error_reset_streams`; responses parked behind a zero flow-control
//! window keep their slots, so one connection parks no more than the admission rule lets it.

use std::time::Duration;

use prost::Message;
use tonic::Code;

use crate::common;
use crate::common::fake_model::{FakeLoader, start_fake};
use crate::common::h2::{Frames, connect, connect_zero_window, frame, framed, header_block, status};

const PREDICT: &str = "/augur.v1.Prediction/Predict";

/// A Predict stream with a 60 s deadline, headers only (END_STREAM when `end`).
fn open(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    path: &str,
    end: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    crate::common::h2::open(client, addr, path, "60S", end)
}

fn refused(server: &common::TestServer, reason: &str) -> f64 {
    let text = server.metrics.render();
    crate::common::http::sample(&text, &format!("augur_rpc_refused_total{{reason=\"{reason}\"}}")).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_less_streams_hold_no_slot_and_are_answered_at_the_read_timeout() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(
        &loader,
        "[server]\nconcurrency_limit = 4\ndefault_deadline_ms = 60000\nrequest_read_timeout_ms = 3000\n",
    )
    .await;
    // 50 Predict streams with headers only: before, each took an admission slot on arrival.
    let mut hostile = connect(server.addr).await;
    let held: Vec<_> = (0..50).map(|_| open(&mut hostile, server.addr, PREDICT, false)).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut client = server.client().await;
    for i in 0..8 {
        let response = client.predict(common::ranking_request(&format!("u{i}"), &["i1", "i2"])).await;
        assert_eq!(response.expect("a well-behaved caller is served").into_inner().scores.len(), 2);
    }
    // The body never comes: each is answered DEADLINE_EXCEEDED naming the key.
    let (response, _send) = held.into_iter().next().unwrap();
    let (code, message) = status(response).await;
    assert_eq!(code, Code::DeadlineExceeded as i32, "{message}");
    assert!(message.contains("server.request_read_timeout_ms"), "{message}");
    assert!(refused(&server, "read_timeout") >= 1.0);
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_length_prefix_is_refused_resource_exhausted_before_the_body() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "").await;
    let mut raw = connect(server.addr).await;
    let (response, mut send) = open(&mut raw, server.addr, PREDICT, false);
    // Declares 8 MiB, sends 100 bytes, and keeps the stream open: the answer needs no more.
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(8u32 << 20).to_be_bytes());
    prefix.extend_from_slice(&[0u8; 100]);
    send.send_data(prefix.into(), false).unwrap();
    let (code, message) = status(response).await;
    assert_eq!(code, Code::ResourceExhausted as i32, "{message}");
    assert!(message.contains("8388608") && message.contains("server.max_message_bytes"), "{message}");
    assert_eq!(refused(&server, "too_large"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn millions_of_empty_candidates_are_refused_before_they_are_decoded() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "").await;
    // 3.9 MiB of empty candidates (2 bytes each on the wire, ~70 decoded): ~2M of them.
    let mut message = common::ranking_request("u1", &[]).encode_to_vec();
    message.extend(std::iter::repeat_n([0x2a, 0x00], 2_000_000).flatten());
    let mut raw = connect(server.addr).await;
    let (response, mut send) = open(&mut raw, server.addr, PREDICT, false);
    send.send_data(framed(&message).into(), true).unwrap();
    let (code, message) = status(response).await;
    assert_eq!(code, Code::InvalidArgument as i32, "{message}");
    assert!(message.contains("2000000 candidates exceed the limit of 4000"), "{message}");
    assert_eq!(refused(&server, "too_many_items"), 1.0, "refused by the scan, not after the decode");
    server.stop().await;
}

#[tokio::test]
async fn a_request_without_a_message_or_reset_mid_body_is_the_callers_fault_not_internal() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "").await;
    let mut raw = connect(server.addr).await;
    let (response, _) = open(&mut raw, server.addr, PREDICT, true);
    let (code, message) = status(response).await;
    assert_eq!(code, Code::InvalidArgument as i32, "{message}");
    assert!(message.contains("request:"), "{message}");

    let (response, mut send) = open(&mut raw, server.addr, PREDICT, false);
    let mut partial = vec![0u8];
    partial.extend_from_slice(&1000u32.to_be_bytes());
    partial.extend_from_slice(&[0u8; 10]);
    send.send_data(partial.into(), false).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    send.send_reset(h2::Reason::CANCEL);
    drop(response);
    let counted = async || {
        let text = server.metrics.render();
        text.contains(&format!("augur_rpc_requests_total{{method=\"{PREDICT}\",code=\"CANCELLED\"}} 1"))
    };
    common::wait_for("the reset call counted CANCELLED", counted).await;
    let text = server.metrics.render();
    assert!(!text.contains("code=\"INTERNAL\""), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_cannot_take_every_slot() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(
        &loader,
        "[server]\nconcurrency_limit = 8\nconnection_fair_share = 2\ndefault_deadline_ms = 60000\n",
    )
    .await;
    loader.controls.close();
    let in_flight = || server.metrics.of::<augur::server::metrics::RpcMetrics>().in_flight.get();
    // Connection A (one channel, one HTTP/2 connection) asks for 10 slots while the model holds
    // every call: it gets 6, the rest is refused naming the share.
    let hog = server.client().await;
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let mut hog = hog.clone();
            tokio::spawn(async move { hog.predict(common::ranking_request(&format!("a{i}"), &["i1"])).await })
        })
        .collect();
    common::wait_for("A's calls in flight or refused", async || {
        in_flight() >= 6 && calls.iter().filter(|c| c.is_finished()).count() >= 4
    })
    .await;
    // Connection B still gets the two slots left.
    let other = server.client().await;
    let theirs: Vec<_> = (0..2)
        .map(|i| {
            let mut other = other.clone();
            tokio::spawn(async move { other.predict(common::ranking_request(&format!("b{i}"), &["i1"])).await })
        })
        .collect();
    common::wait_for("B's two calls in flight", async || in_flight() >= 8).await;
    loader.controls.open();
    let mut served = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => served += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("server.connection_fair_share"), "{status:?}");
            }
        }
    }
    assert_eq!(served, 6, "A holds all but a share");
    for call in theirs {
        assert!(call.await.unwrap().is_ok(), "B is served");
    }
    assert_eq!(refused(&server, "connection_share"), 4.0);
    server.stop().await;
}

#[tokio::test]
async fn a_body_less_health_check_is_answered_at_the_read_timeout() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "[server]\nrequest_read_timeout_ms = 300\n").await;
    let mut raw = connect(server.addr).await;
    let (response, _send) = open(&mut raw, server.addr, "/grpc.health.v1.Health/Check", false);
    let (code, message) = status(response).await;
    assert_eq!(code, Code::DeadlineExceeded as i32, "{message}");
    assert!(message.contains("server.request_read_timeout_ms"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn health_watch_streams_are_capped_and_a_closed_one_frees_its_slot() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "[server]\nmax_watch_streams = 2\n").await;
    let mut health = HealthClient::new(server.channel().await);
    let watch = || HealthCheckRequest { service: String::new() };
    let mut first = health.watch(watch()).await.expect("first watch").into_inner();
    let _second = health.watch(watch()).await.expect("second watch").into_inner();
    assert!(first.message().await.unwrap().is_some(), "a watch streams its status");
    let refused = health.watch(watch()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("server.max_watch_streams"), "{refused:?}");
    // Checks are not watches.
    health.check(watch()).await.expect("check still answered");
    drop(first);
    let mut again = None;
    common::wait_for("a slot freed by the closed watch", async || {
        again = health.watch(watch()).await.ok();
        again.is_some()
    })
    .await;
    server.stop().await;
}

/// curl's HTTP/2 client dropped the status of a call answered while it was still uploading
/// ("stream 1 closed", 15 of 30 times with a 1 MB body and an invalid `grpc-timeout`): such a
/// call is now answered once its body is in, every time.
#[tokio::test]
async fn curl_gets_the_status_of_an_invalid_grpc_timeout_every_time() {
    common::require!(Curl);
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "").await;
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, framed(&vec![0u8; 1_000_000])).unwrap();
    let url = format!("http://{}{PREDICT}", server.addr);
    for attempt in 0..10 {
        let (body, url) = (body.clone(), url.clone());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-s", "-v", "--http2-prior-knowledge", "-H", "content-type: application/grpc"])
                .args(["-H", "te: trailers", "-H", "grpc-timeout: 5x", "--data-binary"])
                .arg(format!("@{}", body.display()))
                .arg(&url)
                .output()
                .expect("curl")
        })
        .await
        .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("grpc-status: 3") && said.contains("grpc-timeout"), "attempt {attempt}: {said}");
    }
    server.stop().await;
}

/// A body in pieces (its length prefix split across DATA frames) is read whole and served.
#[tokio::test]
async fn a_body_split_across_frames_mid_prefix_is_served() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "").await;
    let frame = framed(&common::ranking_request("u1", &["i1", "i2"]).encode_to_vec());
    let mut raw = connect(server.addr).await;
    let (response, mut send) = open(&mut raw, server.addr, PREDICT, false);
    for piece in [&frame[..3], &frame[3..10], &frame[10..]] {
        send.send_data(bytes::Bytes::copy_from_slice(piece), false).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send.send_data(bytes::Bytes::new(), true).unwrap();
    let (code, message) = status(response).await;
    assert_eq!(code, Code::Ok as i32, "{message}");
    server.stop().await;
}

/// The "MadeYouReset" class: frames that are valid HTTP/2 but make the server reset the stream
/// (here a DATA frame longer than the request's `content-length`, RFC 9113 section 8.1.1) cost
/// the server a stream each and the client almost nothing. h2 counts every such reset
/// (`Actions::reset_on_recv_stream_err`) and answers the one past
/// `server.http2.max_local_error_reset_streams` with GOAWAY ENHANCE_YOUR_CALM, if tonic passes
/// the limit on (unset, it is unlimited: 11,062 resets and no GOAWAY before the limit was set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_makes_augur_reset_streams_gets_goaway_at_the_limit() {
    const LIMIT: u32 = 20;
    let loader = FakeLoader::default();
    let config = format!("[server.http2]\nmax_local_error_reset_streams = {LIMIT}\n");
    let (_dir, server) = start_fake(&loader, &config).await;
    let authority = server.addr.to_string();
    let headers = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", PREDICT),
        (":authority", &authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("content-length", "5"),
    ]);
    let mut raw = Frames::connect(server.addr).await;
    // One stream at a time, each answered before the next is opened, so the count is exact.
    let mut resets = 0;
    let goaway = loop {
        let id = 2 * resets + 1;
        raw.send(frame::HEADERS, frame::END_HEADERS, id, &headers).await;
        raw.send(frame::DATA, frame::END_STREAM, id, &framed(&[0u8; 5])).await;
        let answer = loop {
            let next = raw.next().await.expect("an answer before the connection closes");
            if matches!(next.kind, frame::RST_STREAM | frame::GOAWAY) {
                break next;
            }
        };
        if answer.kind == frame::GOAWAY {
            break answer;
        }
        assert_eq!((answer.stream, answer.reason()), (id, h2::Reason::PROTOCOL_ERROR), "{answer:?}");
        resets += 1;
        assert!(resets <= LIMIT, "{resets} streams reset and no GOAWAY: the limit ({LIMIT}) is not in force");
    };
    assert_eq!(resets, LIMIT, "GOAWAY only for the reset past the limit");
    assert_eq!(goaway.reason(), h2::Reason::ENHANCE_YOUR_CALM, "{goaway:?}");
    assert_eq!(&goaway.payload[8..], b"too_many_internal_resets", "h2's debug data");
    let mut after = Vec::new();
    while let Some(next) = raw.next().await {
        after.push(next);
    }
    assert!(after.iter().all(|f| f.kind != frame::RST_STREAM), "nothing reset after the GOAWAY: {after:?}");

    // Everyone else is served.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let check = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
    assert_eq!(check.expect("health answers").into_inner().status, 1, "SERVING");
    let mut client = server.client().await;
    let response = client.predict(common::ranking_request("u1", &["i1", "i2"])).await;
    assert_eq!(response.expect("another connection is served").into_inner().scores.len(), 2);
    // Each reset call reached augur (hyper accepts a stream in the poll that reads its frames)
    // and is the caller's fault, CANCELLED: never INTERNAL, which the error-ratio alert reads.
    let cancelled = format!("augur_rpc_requests_total{{method=\"{PREDICT}\",code=\"CANCELLED\"}}");
    common::wait_for("the reset calls counted", async || {
        crate::common::http::sample(&server.metrics.render(), &cancelled).unwrap_or(0.0) >= f64::from(LIMIT)
    })
    .await;
    let text = server.metrics.render();
    assert!(!text.contains("code=\"INTERNAL\""), "{text}");
    server.stop().await;
}

/// tonic 0.14 has no send-buffer limit: a response the caller never reads (its stream window is
/// 0 and it sends no WINDOW_UPDATE) stays in memory. It now keeps its admission slot while it
/// waits, so one connection parks at most what admission lets it hold and the rest of its
/// streams are refused (trailers-only, no DATA needed), in flight as long as they are parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_parked_behind_a_zero_window_keep_their_slots() {
    const LIMIT: usize = 8;
    const SHARE: usize = 2;
    let loader = FakeLoader::default();
    let config = format!("[server]\nconcurrency_limit = {LIMIT}\nconnection_fair_share = {SHARE}\n");
    let (_dir, server) = start_fake(&loader, &config).await;
    let message = framed(&common::ranking_request("u1", &["i1", "i2"]).encode_to_vec());
    let (mut hog, connection) = connect_zero_window(server.addr).await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        let (response, mut send) = open(&mut hog, server.addr, PREDICT, false);
        send.send_data(message.clone().into(), true).unwrap();
        streams.push((response.await.expect("response headers need no window"), send));
    }
    // Alone on the server, a connection may take slots beyond its share while more than a share
    // stay free: LIMIT - SHARE of them. Each answer's headers came; its message did not.
    let (mut parked, mut refused) = (0, 0);
    for (response, _) in &streams {
        match response.headers().get("grpc-status") {
            None => parked += 1,
            Some(code) => {
                assert_eq!(code, "8", "RESOURCE_EXHAUSTED: {:?}", response.headers());
                let message = response.headers().get("grpc-message").unwrap().to_str().unwrap();
                assert!(message.contains("server.connection_fair_share"), "{message}");
                refused += 1;
            }
        }
    }
    assert_eq!((parked, refused), (LIMIT - SHARE, 10 - (LIMIT - SHARE)), "parked answers keep their slots");
    let admin = server.admin_http_addr.expect("admin HTTP port");
    let in_flight = async || {
        let (_, _, text) = crate::common::http::get(admin, "/metrics").await;
        crate::common::http::sample(&text, "augur_rpc_in_flight").expect("augur_rpc_in_flight")
    };
    assert_eq!(in_flight().await, (LIMIT - SHARE) as f64, "parked answers are in flight");

    // Another connection still finds its share.
    let mut client = server.client().await;
    for i in 0..3 {
        let response = client.predict(common::ranking_request(&format!("u{i}"), &["i1"])).await;
        assert_eq!(response.expect("another connection is served").into_inner().scores.len(), 1);
    }
    assert_eq!(in_flight().await, (LIMIT - SHARE) as f64, "the other connection's answers were sent whole");

    // The connection goes: the bodies are dropped and the slots come back.
    drop((streams, hog));
    connection.abort();
    common::wait_for("the parked answers' slots back", async || in_flight().await == 0.0).await;
    let (mut again, connection) = connect_zero_window(server.addr).await;
    let (response, mut send) = open(&mut again, server.addr, PREDICT, false);
    send.send_data(message.into(), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.headers().get("grpc-status"), None, "admitted again: {:?}", response.headers());
    // A parked answer would hold the drain until the grace cut it.
    connection.abort();
    server.stop().await;
}
