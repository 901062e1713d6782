//! A lean HTTP/1.1 client for driving registries: one connection pool, timed
//! requests, streamed bodies, and digest checks on everything pulled.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use oci::{Digest, DigestAlgorithm, DigestHasher};

pub type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Clone, Debug)]
pub struct Client {
    inner: HyperClient<HttpConnector, Body>,
    /// Sent with every request that has no `Authorization` of its own.
    authorization: Option<http::HeaderValue>,
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A body sent with chunked transfer encoding (no Content-Length).
pub fn streamed(chunks: impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static) -> Body {
    BodyExt::boxed(StreamBody::new(chunks.map(|b| Ok(Frame::data(b)))))
}

impl Client {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(512)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Client {
            inner,
            authorization: None,
        }
    }

    /// The same connection pool, signing every request with `authorization`.
    pub fn with_authorization(&self, authorization: Option<http::HeaderValue>) -> Client {
        Client {
            inner: self.inner.clone(),
            authorization,
        }
    }

    pub async fn send(&self, mut request: Request<Body>) -> anyhow::Result<Response<Incoming>> {
        if let Some(value) = &self.authorization {
            request
                .headers_mut()
                .entry(http::header::AUTHORIZATION)
                .or_insert_with(|| value.clone());
        }
        let what = format!("{} {}", request.method(), request.uri());
        self.inner.request(request).await.with_context(|| what)
    }

    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        self.send(builder.body(body)?).await
    }

    /// Sends and reads the whole (small) response body; fails on an unexpected status.
    pub async fn expect(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
        status: StatusCode,
    ) -> anyhow::Result<(http::HeaderMap, Bytes)> {
        let response = self.request(method.clone(), url, headers, body).await?;
        let got = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await?.to_bytes();
        if got != status {
            bail!(
                "{method} {url}: expected {status}, got {got}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
            );
        }
        Ok((headers, bytes))
    }

    /// GETs a blob and hashes every byte; fails unless it matches `digest`.
    /// Returns the number of bytes received.
    pub async fn pull_verified(&self, url: &str, digest: &Digest) -> anyhow::Result<u64> {
        let response = self.request(Method::GET, url, &[], empty()).await?;
        if response.status() != StatusCode::OK {
            bail!("GET {url}: {}", response.status());
        }
        let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        let mut total = 0u64;
        let mut stream = BodyStream::new(response.into_body());
        while let Some(frame) = stream.next().await {
            if let Ok(data) = frame?.into_data() {
                total += data.len() as u64;
                hasher.update(&data);
            }
        }
        let actual = hasher.finish();
        if &actual != digest {
            bail!("GET {url}: body has digest {actual}, expected {digest}");
        }
        Ok(total)
    }
}

/// Resolves a Location header (absolute, or a path) against a base URL.
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

/// Appends a query parameter to a URL that may already have a query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}
