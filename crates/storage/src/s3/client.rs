//! The object store client: built from an [`S3Config`], tuned to fail fast
//! when the store is unreachable, and its errors sorted into domain terms.

use std::error::Error;
use std::io;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::signer::Url;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::config::S3Config;
use crate::error::StorageError;

/// A store that does not accept a connection within this time is unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a response (from the start of the request, body
/// included), and then for each piece of its body; a long stream has no total
/// timeout. Small requests (HEAD, GET, DELETE, list, session state) get the
/// short one, so a stalled store fails them fast; requests that send a part or
/// a whole blob, or copy one server-side, get the long one.
pub(super) const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(15);
pub(super) const TRANSFER_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Retries of a failed request (connection errors, 5xx, throttling), and the
/// time after which no retry is started.
const MAX_RETRIES: usize = 2;
const RETRY_TIMEOUT: Duration = Duration::from_secs(10);

fn invalid(message: impl Into<String>) -> StorageError {
    StorageError::backend(io::Error::new(io::ErrorKind::InvalidInput, message.into()))
}

/// Builds the client. Never prints the builder: it holds the secret key.
pub(super) fn build(config: &S3Config, read_timeout: Duration) -> Result<AmazonS3, StorageError> {
    // reqwest is built without a default TLS provider; wharf uses ring.
    crate::install_crypto_provider();

    if config.bucket.is_empty() {
        return Err(invalid("S3 configuration: `bucket` is required"));
    }
    let scheme_http = match &config.endpoint {
        None => false,
        Some(e) if e.starts_with("http://") => true,
        Some(e) if e.starts_with("https://") => false,
        Some(e) => {
            return Err(invalid(format!(
                "S3 configuration: `endpoint` must be an http:// or https:// URL, not {e:?}"
            )));
        }
    };
    if config.access_key_id.is_some() != config.secret_access_key.is_some() {
        return Err(invalid(
            "S3 configuration: `access_key_id` and `secret_access_key` go together",
        ));
    }
    if config.session_token.is_some() && config.access_key_id.is_none() {
        return Err(invalid(
            "S3 configuration: `session_token` needs `access_key_id` and `secret_access_key`",
        ));
    }

    // Configured credentials are used alone; otherwise the whole AWS
    // environment (keys, web identity, task role, instance profile) applies.
    let mut builder = match (&config.access_key_id, &config.secret_access_key) {
        (Some(key), Some(secret)) => {
            let mut builder = AmazonS3Builder::new()
                .with_access_key_id(key)
                .with_secret_access_key(secret);
            if let Some(token) = &config.session_token {
                builder = builder.with_token(token);
            }
            let region = std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .ok();
            if let Some(region) = region {
                builder = builder.with_region(region);
            }
            builder
        }
        _ => AmazonS3Builder::from_env(),
    };
    if let Some(region) = &config.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(bucket_endpoint(config, endpoint)?);
    }
    let allow_http = config.allow_http || scheme_http;
    let options = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout_disabled()
        .with_read_timeout(read_timeout);
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    };
    builder
        .with_bucket_name(&config.bucket)
        .with_virtual_hosted_style_request(config.virtual_hosted_style)
        .with_allow_http(allow_http)
        // Over TLS the payload needs no signature of its own: TLS protects
        // it, and hashing every part a second time costs a core.
        .with_unsigned_payload(!allow_http)
        .with_client_options(options)
        .with_retry(retry)
        .build()
        .map_err(|e| invalid(format!("S3 configuration: {e}")))
}

/// The endpoint as object_store wants it: with virtual-hosted-style
/// addressing, a configured endpoint must already name the bucket.
fn bucket_endpoint(config: &S3Config, endpoint: &str) -> Result<String, StorageError> {
    let endpoint = endpoint.trim_end_matches('/');
    if !config.virtual_hosted_style {
        return Ok(endpoint.to_owned());
    }
    let mut url = Url::parse(endpoint)
        .map_err(|e| invalid(format!("S3 configuration: `endpoint` {endpoint:?}: {e}")))?;
    let host = url.host_str().ok_or_else(|| {
        invalid(format!(
            "S3 configuration: `endpoint` {endpoint:?} has no host"
        ))
    })?;
    let host = format!("{}.{host}", config.bucket);
    url.set_host(Some(&host)).map_err(|e| {
        invalid(format!(
            "S3 configuration: bucket {:?} in a host name: {e}",
            config.bucket
        ))
    })?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether an object store error is "not found".
pub(super) fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// Sorts an object store error: unreachable, timed out, throttled or a
/// server error is [`StorageError::Unavailable`]; anything else (refused
/// credentials, a missing bucket, a malformed answer) is a backend failure.
pub(super) fn storage_error(e: object_store::Error) -> StorageError {
    if is_unavailable(&e) {
        StorageError::Unavailable(io::Error::other(e))
    } else {
        StorageError::backend(io::Error::other(e))
    }
}

fn is_unavailable(e: &(dyn Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        // object_store does not export the error carrying the HTTP status,
        // only its message: "Server returned non-2xx status code: 503 ...",
        // or, for S3's errors inside a 200, "Server returned error response".
        let message = e.to_string();
        if let Some(rest) = message.split("non-2xx status code: ").nth(1) {
            return rest.starts_with('5') || rest.starts_with("429");
        }
        if message.starts_with("Server returned error response") {
            return true;
        }
        current = e.source();
    }
    false
}

/// Converts errors from the middle of a body stream.
pub(super) fn io_error(e: object_store::Error) -> io::Error {
    match storage_error(e) {
        StorageError::Unavailable(e) | StorageError::Backend(e) => e,
        other => io::Error::other(other),
    }
}
