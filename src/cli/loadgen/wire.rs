//! Pre-encoded Predict requests for the load generator: the same few hundred request bodies are
//! encoded once and sent as bytes, so the generator (which shares the machine with the server)
//! spends its CPU on sending rather than on cloning and re-encoding 100-candidate messages.

use std::time::Duration;

use bytes::{BufMut, Bytes};
use http::uri::PathAndQuery;
use tonic::Status;
use tonic::client::Grpc;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic_prost::ProstDecoder;

use crate::proto::PredictResponse;

/// Sends bytes as they are, decodes the response with prost.
#[derive(Debug, Default, Clone, Copy)]
struct PreEncoded;

#[derive(Debug, Default, Clone, Copy)]
struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = PredictResponse;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<PredictResponse>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// One `augur.v1.Prediction/Predict` call with an already encoded `PredictRequest`.
pub(super) async fn predict(
    client: &mut Grpc<Channel>,
    body: Bytes,
    timeout: Option<Duration>,
) -> Result<(), tonic::Code> {
    client.ready().await.map_err(|_| tonic::Code::Unavailable)?;
    let mut request = tonic::Request::new(body);
    if let Some(t) = timeout {
        request.set_timeout(t);
    }
    let path = PathAndQuery::from_static("/augur.v1.Prediction/Predict");
    client.unary(request, path, PreEncoded).await.map(|_| ()).map_err(|s| s.code())
}
