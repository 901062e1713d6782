//! Tests of what is particular to S3: sessions across nodes, multipart
//! uploads, redirects and failing fast. They run against a real S3-compatible
//! server (Garage in CI, see `.ci/garage.sh`) found through the
//! `TEST_WHARF_S3_*` variables, each test under its own random prefix. Without
//! those variables the tests skip, except under `CI=true`: CI never skips.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStore;
use oci::{Digest, DigestAlgorithm};

use super::*;
use crate::upload::UploadScope;

const LIMIT: u64 = 1 << 30;

/// A configuration for the test server under a fresh prefix, or `None` (after
/// saying so) when no server is configured outside CI.
#[allow(clippy::print_stderr)]
pub(crate) fn test_config() -> Option<S3Config> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let endpoint = var("TEST_WHARF_S3_ENDPOINT");
    let bucket = var("TEST_WHARF_S3_BUCKET");
    let key = var("TEST_WHARF_S3_ACCESS_KEY_ID");
    let secret = var("TEST_WHARF_S3_SECRET_ACCESS_KEY");
    let (Some(endpoint), Some(bucket), Some(key), Some(secret)) = (endpoint, bucket, key, secret)
    else {
        let why = "TEST_WHARF_S3_ENDPOINT, _BUCKET, _ACCESS_KEY_ID and _SECRET_ACCESS_KEY \
                   are not all set; run `eval \"$(.ci/garage.sh)\"` first";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("S3 tests cannot run in CI: {why}");
        }
        eprintln!("skipped: {why}");
        return None;
    };
    Some(S3Config {
        endpoint: Some(endpoint),
        region: var("TEST_WHARF_S3_REGION"),
        bucket,
        prefix: Some(format!("wharf-test/{}", UploadId::random())),
        access_key_id: Some(key),
        secret_access_key: Some(secret),
        ..S3Config::default()
    })
}

/// Every key under the store's prefix, relative to it.
pub(crate) async fn keys(store: &S3BlobStore) -> Vec<String> {
    let root = format!("{}/", store.root);
    let mut keys: Vec<String> = store
        .client
        .list(Some(&store.root))
        .map_ok(|meta| meta.location.as_ref().trim_start_matches(&root).to_owned())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Removes everything a test left under its prefix.
pub(crate) async fn remove_all(store: &S3BlobStore) {
    let locations = store
        .client
        .list(Some(&store.root))
        .map_ok(|meta| meta.location)
        .boxed();
    let deleted: Vec<_> = store
        .client
        .delete_stream(locations)
        .try_collect()
        .await
        .unwrap();
    drop(deleted);
}

fn content(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// A body delivering `bytes` in pieces of `piece` bytes, as a network would.
fn body(bytes: &[u8], piece: usize) -> ByteStream {
    let pieces: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(pieces))
}

fn broken_body(bytes: &[u8]) -> ByteStream {
    let pieces = bytes
        .chunks(65_537)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain([Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        ))])
        .collect::<Vec<_>>();
    Box::pin(stream::iter(pieces))
}

async fn read_all(store: &S3BlobStore, digest: &Digest, range: Option<RangeRequest>) -> Vec<u8> {
    let read = store.read(digest, range).await.unwrap();
    let len = read.body_len();
    let bytes: Vec<Bytes> = read.body.try_collect().await.unwrap();
    let bytes = bytes.concat();
    assert_eq!(bytes.len() as u64, len);
    bytes
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, bytes)
}

/// A store with 5 MiB parts, S3's smallest, so that a few MiB span parts.
fn small_parts(config: &S3Config) -> S3BlobStore {
    S3BlobStore::open(&S3Config {
        part_size_mib: 5,
        ..config.clone()
    })
    .unwrap()
}

macro_rules! s3_test {
    ($(fn $name:ident($config:ident) $body:block)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some($config) = test_config() else { return };
            $body
            remove_all(&S3BlobStore::open(&$config).unwrap()).await;
        }
    )*};
}

s3_test! {
    fn blobs_are_laid_out_by_digest(config) {
        let store = S3BlobStore::open(&config).unwrap();
        let digest = sha256(b"layout");
        store.put(&digest, body(b"layout", 3), LIMIT).await.unwrap();
        let encoded = digest.encoded();
        assert_eq!(
            keys(&store).await,
            [format!("blobs/sha256/{}/{encoded}", &encoded[..2])]
        );
        store.ping().await.unwrap();
    }

    fn chunked_upload_across_three_nodes(config) {
        let nodes = [
            small_parts(&config),
            small_parts(&config),
            small_parts(&config),
        ];
        let scope = UploadScope::new("library/app");
        let blob = content(13 * MIB as usize, 1);
        let digest = sha256(&blob);
        let s = nodes[0].start_upload(&scope, DigestAlgorithm::Sha256).await.unwrap();
        let s = nodes[0]
            .append_upload(s.id, &scope, Some(0), body(&blob[..6 * MIB as usize], 70_001), LIMIT)
            .await
            .unwrap();
        assert_eq!(nodes[1].upload_status(s.id, &scope).await.unwrap().offset, 6 * MIB);
        nodes[1]
            .append_upload(
                s.id,
                &scope,
                Some(6 * MIB),
                body(&blob[6 * MIB as usize..11 * MIB as usize], 65_536),
                LIMIT,
            )
            .await
            .unwrap();
        let size = nodes[2]
            .finish_upload(
                s.id,
                &scope,
                &digest,
                Some((Some(11 * MIB), body(&blob[11 * MIB as usize..], 100_000))),
                LIMIT,
            )
            .await
            .unwrap();
        assert_eq!(size, blob.len() as u64);
        assert_eq!(read_all(&nodes[0], &digest, None).await, blob);
        assert!(matches!(
            nodes[1].upload_status(s.id, &scope).await,
            Err(StorageError::UploadNotFound)
        ));
        assert!(keys(&nodes[1]).await.iter().all(|k| k.starts_with("blobs/")));
    }

    fn multipart_session_in_uneven_chunks(config) {
        let store = small_parts(&config);
        let scope = UploadScope::new("r");
        let blob = content(12 * MIB as usize, 2);
        let digest = sha256(&blob);
        let s = store.start_upload(&scope, DigestAlgorithm::Sha256).await.unwrap();
        let cuts = [0, 1, 1 + 7 * MIB as usize, 1 + 10 * MIB as usize];
        // After each chunk: (parts, tail size). S3 parts but the last are >= 5 MiB.
        let expected = [(0, 1), (1, 2 * MIB + 1), (2, 1)];
        for (i, window) in cuts.windows(2).enumerate() {
            store
                .append_upload(s.id, &scope, Some(window[0] as u64), body(&blob[window[0]..window[1]], 65_537), LIMIT)
                .await
                .unwrap();
            let state = store.load_state(s.id, &scope).await.unwrap();
            assert_eq!(state.offset, window[1] as u64);
            assert_eq!(state.parts.len(), expected[i].0, "after chunk {i}");
            assert!(state.parts.iter().all(|p| p.size >= 5 * MIB));
            assert_eq!(state.tail.as_ref().map(|t| t.size), Some(expected[i].1));
        }
        // Only the current tail is kept.
        let tails = keys(&store).await.into_iter().filter(|k| k.contains("/tail-")).count();
        assert_eq!(tails, 1);
        store
            .finish_upload(s.id, &scope, &digest, Some((None, body(&blob[cuts[3]..], 1 << 20))), LIMIT)
            .await
            .unwrap();
        assert_eq!(read_all(&store, &digest, None).await, blob);
        let across = RangeRequest::FromTo { first: 5 * MIB - 10, last: Some(10 * MIB + 10) };
        assert_eq!(
            read_all(&store, &digest, Some(across)).await,
            &blob[5 * MIB as usize - 10..=10 * MIB as usize + 10]
        );
        let encoded = digest.encoded();
        assert_eq!(keys(&store).await, [format!("blobs/sha256/{}/{encoded}", &encoded[..2])]);
    }

    fn broken_body_mid_part_leaves_session_resumable(config) {
        let store = small_parts(&config);
        let scope = UploadScope::new("r");
        let blob = content(14 * MIB as usize, 3);
        let digest = sha256(&blob);
        let s = store.start_upload(&scope, DigestAlgorithm::Sha256).await.unwrap();
        let three = 3 * MIB as usize;
        store
            .append_upload(s.id, &scope, None, body(&blob[..three], 65_536), LIMIT)
            .await
            .unwrap();
        let before = store.load_state(s.id, &scope).await.unwrap();
        // Enough for a whole part to be sent, then the body breaks in the next.
        // The bytes sent are garbage: the next append must overwrite them.
        let garbage = content(8 * MIB as usize, 99);
        assert!(matches!(
            store.append_upload(s.id, &scope, Some(3 * MIB), broken_body(&garbage), LIMIT).await,
            Err(StorageError::Body(_))
        ));
        let after = store.load_state(s.id, &scope).await.unwrap();
        assert_eq!(after.offset, 3 * MIB);
        assert_eq!(after.hasher, before.hasher);
        assert_eq!(after.tail, before.tail);
        assert!(after.parts.is_empty());
        assert!(after.multipart.is_some(), "the upload was recorded before its first part");
        store
            .append_upload(s.id, &scope, Some(3 * MIB), body(&blob[three..12 * MIB as usize], 65_536), LIMIT)
            .await
            .unwrap();
        store
            .finish_upload(s.id, &scope, &digest, Some((Some(12 * MIB), body(&blob[12 * MIB as usize..], 65_536))), LIMIT)
            .await
            .unwrap();
        assert_eq!(read_all(&store, &digest, None).await, blob);
    }

    fn wrong_digest_leaves_nothing(config) {
        let store = small_parts(&config);
        let blob = content(12 * MIB as usize, 4);
        let wrong = sha256(b"something else");
        // Whole blob, multipart straight to the final key.
        assert!(matches!(
            store.put(&wrong, body(&blob, 1 << 20), LIMIT).await,
            Err(StorageError::DigestMismatch { .. })
        ));
        assert_eq!(keys(&store).await, Vec::<String>::new());
        // Broken whole blob.
        assert!(matches!(
            store.put(&sha256(&blob), broken_body(&blob[..11 * MIB as usize]), LIMIT).await,
            Err(StorageError::Body(_))
        ));
        assert_eq!(keys(&store).await, Vec::<String>::new());
        // Chunked session with parts and a tail.
        let scope = UploadScope::new("r");
        let s = store.start_upload(&scope, DigestAlgorithm::Sha256).await.unwrap();
        store.append_upload(s.id, &scope, None, body(&blob, 1 << 20), LIMIT).await.unwrap();
        assert!(matches!(
            store.finish_upload(s.id, &scope, &wrong, None, LIMIT).await,
            Err(StorageError::DigestMismatch { .. })
        ));
        assert_eq!(keys(&store).await, Vec::<String>::new());
        assert_eq!(store.stat(&sha256(&blob)).await.unwrap(), None);
    }

    fn whole_blob_in_a_session_goes_straight_to_its_key(config) {
        let store = small_parts(&config);
        let blob = content(11 * MIB as usize + 7, 5);
        let digest = sha256(&blob);
        let scope = UploadScope::new("r");
        let s = store.start_upload(&scope, DigestAlgorithm::Sha256).await.unwrap();
        assert!(matches!(
            store.finish_upload(s.id, &scope, &digest, Some((Some(1), body(&blob, 1 << 20))), LIMIT).await,
            Err(StorageError::UploadOffsetMismatch { offset: 0, given: 1 })
        ));
        // A broken body leaves the session.
        assert!(matches!(
            store.finish_upload(s.id, &scope, &digest, Some((None, broken_body(&blob[..6 * MIB as usize]))), LIMIT).await,
            Err(StorageError::Body(_))
        ));
        assert_eq!(store.upload_status(s.id, &scope).await.unwrap().offset, 0);
        store
            .finish_upload(s.id, &scope, &digest, Some((Some(0), body(&blob, 1 << 20))), LIMIT)
            .await
            .unwrap();
        assert_eq!(read_all(&store, &digest, None).await, blob);
        let encoded = digest.encoded();
        assert_eq!(keys(&store).await, [format!("blobs/sha256/{}/{encoded}", &encoded[..2])]);
    }

    fn same_blob_put_twice_at_once(config) {
        let store = Arc::new(small_parts(&config));
        let blob = Bytes::from(content(12 * MIB as usize, 6));
        let digest = sha256(&blob);
        let put = |store: Arc<S3BlobStore>| {
            let (blob, digest) = (blob.clone(), digest.clone());
            tokio::spawn(async move { store.put(&digest, body(&blob, 1 << 20), LIMIT).await })
        };
        let (first, second) = tokio::join!(put(store.clone()), put(store.clone()));
        assert_eq!(first.unwrap().unwrap(), blob.len() as u64);
        assert_eq!(second.unwrap().unwrap(), blob.len() as u64);
        assert_eq!(read_all(&store, &digest, None).await, blob);
    }

    fn large_copies_stream_and_other_algorithms_rehash(config) {
        let mut store = small_parts(&config);
        // Pretend CopyObject stops at 1 MiB, to take the streamed path.
        store.copy_limit = MIB;
        let scope = UploadScope::new("r");
        let blob = content(9 * MIB as usize, 7);
        for digest in [sha256(&blob), Digest::compute(DigestAlgorithm::Sha512, &blob)] {
            let s = store.start_upload(&scope, DigestAlgorithm::Sha256).await.unwrap();
            store.append_upload(s.id, &scope, None, body(&blob[..6 * MIB as usize], 1 << 20), LIMIT).await.unwrap();
            store.append_upload(s.id, &scope, None, body(&blob[6 * MIB as usize..], 1 << 20), LIMIT).await.unwrap();
            store.finish_upload(s.id, &scope, &digest, None, LIMIT).await.unwrap();
            assert_eq!(read_all(&store, &digest, None).await, blob);
        }
        assert_eq!(keys(&store).await.len(), 2);
    }

    fn presigned_redirect_serves_the_blob(config) {
        let plain = S3BlobStore::open(&config).unwrap();
        let blob = content(300_000, 8);
        let digest = sha256(&blob);
        plain.put(&digest, body(&blob, 65_536), LIMIT).await.unwrap();
        assert_eq!(plain.redirect_url(&digest).await.unwrap(), None);
        let redirecting = S3BlobStore::open(&S3Config {
            redirect: S3RedirectConfig { enabled: true, expiry_secs: 60 },
            ..config.clone()
        })
        .unwrap();
        let url = redirecting.redirect_url(&digest).await.unwrap().unwrap();
        assert!(!url.contains(config.secret_access_key.as_deref().unwrap()));
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(response.bytes().await.unwrap(), blob);
    }

    fn missing_bucket_is_a_backend_failure(config) {
        let store = S3BlobStore::open(&S3Config {
            bucket: format!("wharf-missing-{}", UploadId::random()),
            ..config.clone()
        })
        .unwrap();
        assert!(matches!(store.ping().await, Err(StorageError::Backend(_))));
    }
}

fn offline_config(endpoint: String) -> S3Config {
    S3Config {
        endpoint: Some(endpoint),
        region: Some("garage".into()),
        bucket: "wharf".into(),
        access_key_id: Some("GK0000".into()),
        secret_access_key: Some("not-a-secret".into()),
        ..S3Config::default()
    }
}

/// An endpoint nothing listens on fails within seconds, as `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_unavailable_quickly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let store = S3BlobStore::open(&offline_config(format!("http://127.0.0.1:{port}"))).unwrap();
    let started = Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(matches!(
        store.stat(&sha256(b"x")).await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(matches!(
        store
            .start_upload(&UploadScope::new("r"), DigestAlgorithm::Sha256)
            .await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Answers every request on a loopback port with `status`.
async fn answering(status: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_unavailable_and_refusals_are_not() {
    let failing =
        S3BlobStore::open(&offline_config(answering("503 Service Unavailable").await)).unwrap();
    let started = Instant::now();
    assert!(matches!(
        failing.stat(&sha256(b"x")).await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    let throttling =
        S3BlobStore::open(&offline_config(answering("429 Too Many Requests").await)).unwrap();
    assert!(matches!(
        throttling.ping().await,
        Err(StorageError::Unavailable(_))
    ));
    let refusing = S3BlobStore::open(&offline_config(answering("403 Forbidden").await)).unwrap();
    assert!(matches!(
        refusing.ping().await,
        Err(StorageError::Backend(_))
    ));
}

/// Where requests go shows in a presigned URL, which needs no request.
#[tokio::test]
async fn path_style_or_virtual_hosted_style() {
    let digest = sha256(b"x");
    let url = |virtual_hosted_style| {
        let config = S3Config {
            virtual_hosted_style,
            redirect: S3RedirectConfig {
                enabled: true,
                expiry_secs: 60,
            },
            prefix: Some("p".into()),
            ..offline_config("https://s3.example.com/".into())
        };
        let digest = digest.clone();
        async move {
            let store = S3BlobStore::open(&config).unwrap();
            store.redirect_url(&digest).await.unwrap().unwrap()
        }
    };
    let key = format!(
        "p/blobs/sha256/{}/{}",
        &digest.encoded()[..2],
        digest.encoded()
    );
    assert!(
        url(false)
            .await
            .starts_with(&format!("https://s3.example.com/wharf/{key}?"))
    );
    assert!(
        url(true)
            .await
            .starts_with(&format!("https://wharf.s3.example.com/{key}?"))
    );
}

#[test]
fn configuration_is_checked_at_open() {
    let good = offline_config("http://127.0.0.1:3900".into());
    S3BlobStore::open(&good).unwrap();
    for bad in [
        S3Config {
            bucket: String::new(),
            ..good.clone()
        },
        S3Config {
            endpoint: Some("127.0.0.1:3900".into()),
            ..good.clone()
        },
        S3Config {
            part_size_mib: 4,
            ..good.clone()
        },
        S3Config {
            secret_access_key: None,
            ..good.clone()
        },
        S3Config {
            prefix: Some("a//b".into()),
            ..good.clone()
        },
        S3Config {
            redirect: S3RedirectConfig {
                enabled: true,
                expiry_secs: 0,
            },
            ..good.clone()
        },
    ] {
        assert!(S3BlobStore::open(&bad).is_err(), "{bad:?}");
    }
    let printed = format!("{:?}", S3BlobStore::open(&good).unwrap());
    assert!(!printed.contains("not-a-secret"), "{printed}");
}
