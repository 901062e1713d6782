//! Request bodies in, response bodies out: streamed, counted and bounded.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use registry::RegistryError;
use storage::ByteStream;

use crate::error::ApiError;

/// A request body as a stream of chunks, counted into the bytes-received
/// metric. With `exact_len`, the stream fails if the body turns out longer or
/// shorter than declared (the storage layer then keeps nothing of it). A body
/// that sends nothing for `idle` fails too, so a stalled client cannot hold an
/// upload (and its resources) forever.
pub fn request_stream(body: Body, exact_len: Option<u64>, idle: Duration) -> ByteStream {
    let received = metrics::counter!(crate::metrics::BYTES_RECEIVED);
    let stream = body.into_data_stream().map(move |chunk| match chunk {
        Ok(bytes) => {
            received.increment(bytes.len() as u64);
            Ok(bytes)
        }
        Err(e) => Err(std::io::Error::other(e)),
    });
    let stream = IdleTimeout {
        inner: Box::pin(stream),
        idle,
        deadline: Box::pin(tokio::time::sleep(idle)),
        done: false,
    };
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

/// Fails a stream that yields nothing for `idle`.
struct IdleTimeout {
    inner: ByteStream,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl Stream for IdleTimeout {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(item) => {
                let next = tokio::time::Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                self.done = item.is_none();
                Poll::Ready(item)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    let message = format!("no body data for {} seconds", self.idle.as_secs());
                    Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        message,
                    ))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
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
    idle: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::from(RegistryError::ManifestTooLarge { limit });
    if content_length(headers).is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut stream = request_stream(body, None, idle);
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::manifest_invalid(format!("request body broke off: {e}")))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
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
