//! `augur.v1.ModelAdmin` lives on its own listener (`admin.grpc_listen`): the public port answers
//! it UNIMPLEMENTED and its reflection does not list it; the admin port serves it, health and
//! reflection listing exactly that, optionally behind its own bearer token; a busy admin port
//! fails start-up naming the key.

use augur::proto::ListModelsRequest;
use augur::proto::model_admin_client::ModelAdminClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common;

/// The services reflection lists, asked in v1 and in v1alpha (both must agree).
async fn listed(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::{v1, v1alpha};
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut stream = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let reply = stream.message().await.unwrap().expect("one reply");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) = reply.message_response
    else {
        panic!("{reply:?}")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let mut stream = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let reply = stream.message().await.unwrap().expect("one reply");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) = reply.message_response
    else {
        panic!("{reply:?}")
    };
    let alpha: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    // Each version lists its own reflection service; the rest must be the same.
    let strip = |names: &[String]| -> Vec<String> {
        let mut names: Vec<String> = names.iter().filter(|n| !n.starts_with("grpc.reflection.")).cloned().collect();
        names.sort();
        names
    };
    assert_eq!(strip(&names), strip(&alpha), "v1 and v1alpha advertise the same services");
    assert!(names.iter().any(|n| n == "grpc.reflection.v1.ServerReflection"), "{names:?}");
    assert!(alpha.iter().any(|n| n == "grpc.reflection.v1alpha.ServerReflection"), "{alpha:?}");
    strip(&names)
}

async fn health(channel: Channel, service: &str) -> Result<ServingStatus, Code> {
    let mut client = HealthClient::new(channel);
    match client.check(HealthCheckRequest { service: service.into() }).await {
        Ok(response) => Ok(response.into_inner().status()),
        Err(status) => Err(status.code()),
    }
}

#[tokio::test]
async fn model_admin_is_served_only_on_the_admin_port() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    assert!(server.admin_addr.ip().is_loopback() && server.admin_addr.port() != 0);
    assert_ne!(server.admin_addr, server.addr);

    let refused = ModelAdminClient::new(server.channel().await).list_models(ListModelsRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");
    let listed_models = ModelAdminClient::new(server.admin_channel().await)
        .list_models(ListModelsRequest {})
        .await
        .expect("ModelAdmin on the admin port")
        .into_inner();
    assert!(listed_models.models.iter().any(|m| m.name == "ranking"), "{listed_models:?}");
    // ... and the other way round: no scoring on the admin port.
    let mut on_admin = augur::proto::prediction_client::PredictionClient::new(server.admin_channel().await);
    let predict = on_admin.predict(common::ranking_request("u1", &["i1"])).await.unwrap_err();
    assert_eq!(predict.code(), Code::Unimplemented, "{predict:?}");

    // Each port's health knows the server and what that port serves.
    for (channel, serves, not) in [
        (server.channel().await, "augur.v1.Prediction", "augur.v1.ModelAdmin"),
        (server.admin_channel().await, "augur.v1.ModelAdmin", "augur.v1.Prediction"),
    ] {
        assert_eq!(health(channel.clone(), "").await, Ok(ServingStatus::Serving));
        assert_eq!(health(channel.clone(), serves).await, Ok(ServingStatus::Serving), "{serves}");
        assert_eq!(health(channel, not).await, Err(Code::NotFound), "{not}");
    }
    server.stop().await;
}

#[tokio::test]
async fn reflection_lists_only_what_each_port_serves() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    assert_eq!(listed(server.channel().await).await, ["augur.v1.Prediction", "grpc.health.v1.Health"]);
    assert_eq!(listed(server.admin_channel().await).await, ["augur.v1.ModelAdmin", "grpc.health.v1.Health"]);
    server.stop().await;
}

#[tokio::test]
async fn each_port_has_its_own_token() {
    common::require!(Ort);
    let server =
        common::start(common::demo_config("[server]\nauth_token = \"public-t\"\n[admin]\nauth_token = \"admin-t\"\n"))
            .await;
    let list = |channel: Channel, token: Option<&'static str>| async move {
        let mut request = tonic::Request::new(ListModelsRequest {});
        if let Some(token) = token {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        ModelAdminClient::new(channel).list_models(request).await.map(|_| ()).map_err(|s| s.code())
    };
    assert_eq!(list(server.admin_channel().await, None).await, Err(Code::Unauthenticated));
    assert_eq!(list(server.admin_channel().await, Some("public-t")).await, Err(Code::Unauthenticated));
    assert_eq!(list(server.admin_channel().await, Some("admin-t")).await, Ok(()));
    // The public token does not open ModelAdmin on the public port either: it is not there.
    assert_eq!(list(server.channel().await, Some("public-t")).await, Err(Code::Unimplemented));
    // Health checks never need a token.
    assert_eq!(health(server.admin_channel().await, "").await, Ok(ServingStatus::Serving));
    // Prediction still takes the public token.
    let mut request = tonic::Request::new(common::ranking_request("u1", &["i1"]));
    request.metadata_mut().insert("authorization", "Bearer public-t".parse().unwrap());
    server.client().await.predict(request).await.expect("public token opens Prediction");
    let refused = server.client().await.predict(common::ranking_request("u1", &["i1"])).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn a_busy_admin_grpc_port_fails_start_up_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = common::demo_config("");
    config.admin.grpc_listen = taken.local_addr().unwrap();
    let err = augur::app::App::build(config).await.unwrap_err();
    assert!(matches!(err, augur::app::StartError::AdminGrpcBind { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.starts_with("admin.grpc_listen: cannot bind 127.0.0.1:"), "{message}");
}
