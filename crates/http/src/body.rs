//! Request bodies in, response bodies out: streamed, counted and bounded.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use registry::RegistryError;
use storage::ByteStream;

use crate::error::ApiError;

/// A request body as a stream of chunks, counted into the bytes-received
/// metric. With `exact_len`, the stream fails if the body turns out longer or
/// shorter than declared (the storage layer then keeps nothing of it).
pub fn request_stream(body: Body, exact_len: Option<u64>) -> ByteStream {
    let received = metrics::counter!(crate::metrics::BYTES_RECEIVED);
    let stream = body.into_data_stream().map(move |chunk| match chunk {
        Ok(bytes) => {
            received.increment(bytes.len() as u64);
            Ok(bytes)
        }
        Err(e) => Err(std::io::Error::other(e)),
    });
    match exact_len {
        None => Box::pin(stream),
        Some(expected) => Box::pin(ExactLength {
            inner: Box::pin(stream),
            expected,
            seen: 0,
            done: false,
        }),
    }
}

/// Fails a stream whose total length is not `expected`.
struct ExactLength {
    inner: ByteStream,
    expected: u64,
    seen: u64,
    done: bool,
}

impl Stream for ExactLength {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mismatch = |seen: u64, expected: u64| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("body has {seen} bytes but Content-Range declares {expected}"),
            )
        };
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.expected {
                    self.done = true;
                    let (seen, expected) = (self.seen, self.expected);
                    return Poll::Ready(Some(Err(mismatch(seen, expected))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if self.seen != self.expected => {
                self.done = true;
                let (seen, expected) = (self.seen, self.expected);
                Poll::Ready(Some(Err(mismatch(seen, expected))))
            }
            other => other,
        }
    }
}

/// Reads a whole manifest body of at most `limit` bytes, refusing early when
/// `Content-Length` already says it is too big.
pub async fn read_manifest_body(
    body: Body,
    headers: &HeaderMap,
    limit: u64,
) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::from(RegistryError::ManifestTooLarge { limit });
    if content_length(headers).is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::manifest_invalid(format!("request body broke off: {e}")))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    metrics::counter!(crate::metrics::BYTES_RECEIVED).increment(buf.len() as u64);
    Ok(buf.freeze())
}

/// Whether a request certainly has no body.
pub fn is_empty(body: &Body, headers: &HeaderMap) -> bool {
    content_length(headers) == Some(0) || http_body::Body::size_hint(body).exact() == Some(0)
}

pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
