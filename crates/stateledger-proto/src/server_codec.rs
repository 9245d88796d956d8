//! The protobuf codec of the node's gRPC servers: tonic's prost codec, except that a request
//! whose bytes are not a valid protobuf message is the caller's fault — INVALID_ARGUMENT —
//! where tonic answers INTERNAL (which says the server failed, and invites a retry).
//!
//! `build.rs` points the generated *server* stubs at [`ServerCodec`]; the clients keep tonic's
//! codec, since an undecodable answer from a server is not the client's fault. The simulation's
//! stubs pass messages as values and use no codec.

use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// See the module comment.
#[derive(Debug, Clone)]
pub struct ServerCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for ServerCodec<T, U> {
    fn default() -> Self {
        ServerCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for ServerCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(self.0.decoder())
    }
}

/// Decodes requests; an undecodable one is INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct RequestDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| {
            if s.code() == Code::Internal {
                Status::invalid_argument(format!(
                    "the request is not a valid protobuf message ({}); fix the client",
                    s.message()
                ))
            } else {
                s
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
