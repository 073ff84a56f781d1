//! TLS and mutual TLS on the public port (rustls through tonic): certificates are made for the
//! test by the `openssl` CLI (a throwaway CA, a server certificate for localhost/127.0.0.1 and a
//! client certificate). With `client_ca_path` set, a client with a certificate from that CA gets
//! scores; one without a certificate, and a plaintext client, get nothing.

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::common;

async fn connect(addr: std::net::SocketAddr, tls: Option<ClientTlsConfig>) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{}", addr.port())).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    common::certs::make_certs(dir.path());
    let p = |name: &str| dir.path().join(name).display().to_string();
    let toml = format!(
        "[server.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\nclient_ca_path = \"{}\"\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let server = common::start(common::demo_config(&toml)).await;
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let ca = Certificate::from_pem(read("ca.pem"));

    // A client with a certificate from the CA gets scores.
    let tls = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .identity(Identity::from_pem(read("client.pem"), read("client.key")))
        .domain_name("localhost");
    let channel = connect(server.addr, Some(tls)).await.expect("mTLS connect");
    let mut client = augur::proto::prediction_client::PredictionClient::new(channel);
    let response = client.predict(common::ranking_request("u42", &["i1", "i2"])).await.unwrap().into_inner();
    assert_eq!(response.scores.len(), 2);

    // No client certificate: the handshake (or the first call) fails.
    let tls = ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost");
    let refused = match connect(server.addr, Some(tls)).await {
        Err(_) => true,
        Ok(channel) => augur::proto::prediction_client::PredictionClient::new(channel)
            .predict(common::ranking_request("u42", &["i1"]))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate must not be served");

    // Plaintext HTTP/2 against the TLS port gets nothing either.
    let refused = match connect(server.addr, None).await {
        Err(_) => true,
        Ok(channel) => augur::proto::prediction_client::PredictionClient::new(channel)
            .predict(common::ranking_request("u42", &["i1"]))
            .await
            .is_err(),
    };
    assert!(refused, "plaintext must not be served on the TLS port");
    server.stop().await;
}

#[test]
fn a_missing_tls_file_fails_start_up_naming_the_key() {
    let err = augur::config::Config::from_toml(
        "[server.tls]\ncert_path = \"/nonexistent/server.pem\"\nkey_path = \"/nonexistent/server.key\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("server.tls.cert_path"), "{err}");
}
