//! The backend test suite: every [`BlobStore`] must pass these. Each check
//! takes a store (and, for restart checks, a way to open it again on the same
//! data), so new backends run the same suite.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use oci::{Digest, DigestAlgorithm};

use crate::{BlobStore, ByteStream, RangeRequest, StorageError, UploadId, UploadScope};

const LIMIT: u64 = 1 << 30;

fn body(chunks: &[&[u8]]) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(chunks))
}

fn broken_body(first: &[u8]) -> ByteStream {
    let items = vec![
        Ok(Bytes::copy_from_slice(first)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    Box::pin(stream::iter(items))
}

async fn read_all(store: &dyn BlobStore, digest: &Digest, range: Option<RangeRequest>) -> Vec<u8> {
    let read = store.read(digest, range).await.unwrap();
    let expected_len = read.body_len();
    let mut out = Vec::new();
    let mut body = read.body;
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.len() as u64, expected_len);
    out
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, bytes)
}

/// Stores `count` small blobs, `"<prefix> <i>"`; returns their digests.
async fn put_numbered(store: &dyn BlobStore, prefix: &str, count: u32) -> Vec<Digest> {
    let mut stored = Vec::new();
    for i in 0..count {
        let content = format!("{prefix} {i}");
        let digest = sha256(content.as_bytes());
        store
            .put(&digest, body(&[content.as_bytes()]), LIMIT)
            .await
            .unwrap();
        stored.push(digest);
    }
    stored
}

pub async fn put_read_and_ranges(store: &dyn BlobStore) {
    store.ping().await.unwrap();
    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&content);
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    let size = store
        .put(&digest, body(&[&content[..1000], &content[1000..]]), LIMIT)
        .await
        .unwrap();
    assert_eq!(size, content.len() as u64);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(size));
    assert_eq!(read_all(store, &digest, None).await, content);

    let r = RangeRequest::FromTo {
        first: 10,
        last: Some(1_500_000),
    };
    assert_eq!(
        read_all(store, &digest, Some(r)).await,
        &content[10..=1_500_000]
    );
    let r = RangeRequest::Suffix(7);
    assert_eq!(
        read_all(store, &digest, Some(r)).await,
        &content[content.len() - 7..]
    );
    let r = RangeRequest::FromTo {
        first: content.len() as u64,
        last: None,
    };
    assert!(matches!(
        store.read(&digest, Some(r)).await,
        Err(StorageError::RangeNotSatisfiable { size }) if size == content.len() as u64
    ));

    // Storing the same content again is a no-op that succeeds.
    store.put(&digest, body(&[&content]), LIMIT).await.unwrap();
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(matches!(
        store.read(&digest, None).await,
        Err(StorageError::BlobNotFound(_))
    ));
    store.delete(&digest).await.unwrap();
}

pub async fn empty_blob(store: &dyn BlobStore) {
    let digest = sha256(b"");
    assert_eq!(store.put(&digest, body(&[]), LIMIT).await.unwrap(), 0);
    assert_eq!(read_all(store, &digest, None).await, b"");
    let scope = UploadScope::new("r");
    let s = store
        .start_upload(&scope, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    assert_eq!(
        store
            .finish_upload(s.id, &scope, &digest, None, LIMIT)
            .await
            .unwrap(),
        0
    );
}

pub async fn bad_writes_leave_nothing(store: &dyn BlobStore) {
    let content = b"some bytes";
    let wrong = sha256(b"other bytes");
    assert!(matches!(
        store.put(&wrong, body(&[content]), LIMIT).await,
        Err(StorageError::DigestMismatch { .. })
    ));
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert_eq!(store.stat(&sha256(content)).await.unwrap(), None);

    let right = sha256(content);
    assert!(matches!(
        store.put(&right, broken_body(&content[..4]), LIMIT).await,
        Err(StorageError::Body(_))
    ));
    assert_eq!(store.stat(&right).await.unwrap(), None);

    assert!(matches!(
        store.put(&right, body(&[content]), 5).await,
        Err(StorageError::TooLarge { limit: 5 })
    ));
    assert_eq!(store.stat(&right).await.unwrap(), None);
}

pub async fn chunked_upload(store: &dyn BlobStore) {
    let scope = UploadScope::new("library/app");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = sha256(&content);
    let s = store
        .start_upload(&scope, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    assert_eq!(s.offset, 0);
    let s = store
        .append_upload(s.id, &scope, Some(0), body(&[&content[..100_000]]), LIMIT)
        .await
        .unwrap();
    assert_eq!(s.offset, 100_000);

    // Out of order and overlapping chunks are refused and change nothing.
    for at in [0, 99_999, 100_001] {
        assert!(matches!(
            store.append_upload(s.id, &scope, Some(at), body(&[b"x"]), LIMIT).await,
            Err(StorageError::UploadOffsetMismatch { offset: 100_000, given }) if given == at
        ));
    }
    // A chunk that breaks off leaves the session at its last complete chunk.
    assert!(matches!(
        store
            .append_upload(
                s.id,
                &scope,
                Some(100_000),
                broken_body(&content[100_000..150_000]),
                LIMIT
            )
            .await,
        Err(StorageError::Body(_))
    ));
    assert_eq!(
        store.upload_status(s.id, &scope).await.unwrap().offset,
        100_000
    );

    // Streamed chunk without a position.
    let s = store
        .append_upload(
            s.id,
            &scope,
            None,
            body(&[&content[100_000..200_000]]),
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(s.offset, 200_000);
    // Another scope does not see the session.
    let other = UploadScope::new("other/app");
    assert!(matches!(
        store.upload_status(s.id, &other).await,
        Err(StorageError::UploadNotFound)
    ));
    assert!(matches!(
        store
            .append_upload(s.id, &other, None, body(&[b"x"]), LIMIT)
            .await,
        Err(StorageError::UploadNotFound)
    ));
    let size = store
        .finish_upload(
            s.id,
            &scope,
            &digest,
            Some((Some(200_000), body(&[&content[200_000..]]))),
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(size, content.len() as u64);
    assert_eq!(read_all(store, &digest, None).await, content);
    // The session is gone.
    assert!(matches!(
        store.upload_status(s.id, &scope).await,
        Err(StorageError::UploadNotFound)
    ));
}

pub async fn finish_with_wrong_digest_ends_session(store: &dyn BlobStore) {
    let scope = UploadScope::new("r");
    let s = store
        .start_upload(&scope, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    store
        .append_upload(s.id, &scope, None, body(&[b"abc"]), LIMIT)
        .await
        .unwrap();
    let wrong = sha256(b"abd");
    assert!(matches!(
        store.finish_upload(s.id, &scope, &wrong, None, LIMIT).await,
        Err(StorageError::DigestMismatch { .. })
    ));
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert_eq!(store.stat(&sha256(b"abc")).await.unwrap(), None);
    assert!(matches!(
        store.upload_status(s.id, &scope).await,
        Err(StorageError::UploadNotFound)
    ));
}

pub async fn finish_with_other_algorithm(store: &dyn BlobStore) {
    let scope = UploadScope::new("r");
    let content = b"hashed twice";
    let sha512 = Digest::compute(DigestAlgorithm::Sha512, content);
    let s = store
        .start_upload(&scope, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    store
        .append_upload(s.id, &scope, None, body(&[content]), LIMIT)
        .await
        .unwrap();
    store
        .finish_upload(s.id, &scope, &sha512, None, LIMIT)
        .await
        .unwrap();
    assert_eq!(read_all(store, &sha512, None).await, content);

    let s = store
        .start_upload(&scope, DigestAlgorithm::Sha512)
        .await
        .unwrap();
    assert_eq!(s.algorithm, DigestAlgorithm::Sha512);
    let other = b"sha512 from the start";
    let d = Digest::compute(DigestAlgorithm::Sha512, other);
    store
        .finish_upload(s.id, &scope, &d, Some((None, body(&[other]))), LIMIT)
        .await
        .unwrap();
    assert_eq!(read_all(store, &d, None).await, other);
}

pub async fn cancel_and_unknown(store: &dyn BlobStore) {
    let scope = UploadScope::new("r");
    let s = store
        .start_upload(&scope, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    store
        .append_upload(s.id, &scope, None, body(&[b"abc"]), LIMIT)
        .await
        .unwrap();
    assert!(matches!(
        store.cancel_upload(s.id, &UploadScope::new("x")).await,
        Err(StorageError::UploadNotFound)
    ));
    store.cancel_upload(s.id, &scope).await.unwrap();
    assert!(matches!(
        store.upload_status(s.id, &scope).await,
        Err(StorageError::UploadNotFound)
    ));
    assert!(matches!(
        store.cancel_upload(s.id, &scope).await,
        Err(StorageError::UploadNotFound)
    ));
    let unknown = UploadId::random();
    assert!(matches!(
        store.upload_status(unknown, &scope).await,
        Err(StorageError::UploadNotFound)
    ));
    assert!(matches!(
        store
            .finish_upload(unknown, &scope, &sha256(b""), None, LIMIT)
            .await,
        Err(StorageError::UploadNotFound)
    ));
}

pub async fn stale_uploads_purged_and_batch_deletes(store: &dyn BlobStore) {
    let scope = UploadScope::new("r");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let s = store
            .start_upload(&scope, DigestAlgorithm::Sha256)
            .await
            .unwrap();
        store
            .append_upload(s.id, &scope, None, body(&[b"abc"]), LIMIT)
            .await
            .unwrap();
        ids.push(s.id);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Written to within the last minute: alive.
    assert_eq!(store.purge_uploads(now - 60_000).await.unwrap(), 0);
    assert_eq!(store.upload_status(ids[0], &scope).await.unwrap().offset, 3);
    assert_eq!(store.purge_uploads(now + 60_000).await.unwrap(), 2);
    for id in ids {
        assert!(matches!(
            store.upload_status(id, &scope).await,
            Err(StorageError::UploadNotFound)
        ));
    }

    let (a, b) = (sha256(b"first"), sha256(b"second"));
    store.put(&a, body(&[b"first"]), LIMIT).await.unwrap();
    store.put(&b, body(&[b"second"]), LIMIT).await.unwrap();
    let absent = sha256(b"never stored");
    let mut gone = store
        .delete_many(&[a.clone(), b.clone(), absent.clone()])
        .await;
    gone.sort();
    let mut expected = vec![a.clone(), b.clone(), absent];
    expected.sort();
    assert_eq!(gone, expected, "absent blobs count as gone");
    assert_eq!(store.stat(&a).await.unwrap(), None);
    assert_eq!(store.stat(&b).await.unwrap(), None);
}

/// The listing garbage collection compares with the metadata store: every
/// stored blob once, in digest order, paged with `after`, with its size and
/// a recent modification time.
pub async fn blobs_listed_in_order(store: &dyn BlobStore) {
    let mut stored = put_numbered(store, "listed blob", 7).await;
    stored.sort();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let all = store.list_blobs(None, 100).await.unwrap();
    let digests: Vec<Digest> = all.iter().map(|b| b.digest.clone()).collect();
    assert_eq!(digests, stored);
    for b in &all {
        assert_eq!(b.size, "listed blob 0".len() as u64);
        assert!((b.modified_ms - now).abs() < 120_000, "{b:?}");
    }
    let mut paged = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.list_blobs(after.as_ref(), 3).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        paged.extend(page.into_iter().map(|b| b.digest));
    }
    assert_eq!(paged, stored);
    store.delete_many(&stored).await;
    assert!(store.list_blobs(None, 100).await.unwrap().is_empty());
}

pub async fn upload_size_limit(store: &dyn BlobStore) {
    let scope = UploadScope::new("r");
    let s = store
        .start_upload(&scope, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    store
        .append_upload(s.id, &scope, None, body(&[b"12345"]), 8)
        .await
        .unwrap();
    assert!(matches!(
        store
            .append_upload(s.id, &scope, None, body(&[b"6789"]), 8)
            .await,
        Err(StorageError::TooLarge { limit: 8 })
    ));
    assert_eq!(store.upload_status(s.id, &scope).await.unwrap().offset, 5);
}

/// Sessions live in the backend, not in the process: a store opened again on
/// the same data resumes them without reading their bytes again.
pub async fn sessions_survive_reopen(first: &dyn BlobStore, second: &dyn BlobStore) {
    let scope = UploadScope::new("r");
    let s = first
        .start_upload(&scope, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    first
        .append_upload(s.id, &scope, Some(0), body(&[b"hello "]), LIMIT)
        .await
        .unwrap();
    assert_eq!(second.upload_status(s.id, &scope).await.unwrap().offset, 6);
    second
        .append_upload(s.id, &scope, Some(6), body(&[b"world"]), LIMIT)
        .await
        .unwrap();
    let digest = sha256(b"hello world");
    second
        .finish_upload(s.id, &scope, &digest, None, LIMIT)
        .await
        .unwrap();
    assert_eq!(read_all(first, &digest, None).await, b"hello world");
}

pub async fn concurrent_writers_to_one_session(store: Arc<dyn BlobStore>) {
    let scope = UploadScope::new("r");
    let s = store
        .start_upload(&scope, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // A body that stays open until told to finish keeps the session busy.
    let slow: ByteStream = Box::pin(
        stream::once(async { Ok(Bytes::from_static(b"first")) }).chain(stream::once(async move {
            let _ = rx.await;
            Ok(Bytes::from_static(b"!"))
        })),
    );
    let writer = {
        let store = store.clone();
        let scope = scope.clone();
        tokio::spawn(async move {
            store
                .append_upload(s.id, &scope, Some(0), slow, LIMIT)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(matches!(
        store
            .append_upload(s.id, &scope, Some(0), body(&[b"second"]), LIMIT)
            .await,
        Err(StorageError::UploadBusy)
    ));
    tx.send(()).unwrap();
    assert_eq!(writer.await.unwrap().unwrap().offset, 6);
}

mod fs_backend {
    use super::*;
    use crate::FsBlobStore;

    async fn store() -> (tempfile::TempDir, FsBlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        (dir, store)
    }

    macro_rules! suite {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_dir, store) = store().await;
                super::$name(&store).await;
            }
        )*};
    }
    suite!(
        put_read_and_ranges,
        empty_blob,
        bad_writes_leave_nothing,
        chunked_upload,
        finish_with_wrong_digest_ends_session,
        finish_with_other_algorithm,
        cancel_and_unknown,
        upload_size_limit,
        stale_uploads_purged_and_batch_deletes,
        blobs_listed_in_order,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_survive_reopen() {
        let (dir, first) = store().await;
        let second = FsBlobStore::open(dir.path()).await.unwrap();
        super::sessions_survive_reopen(&first, &second).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_to_one_session() {
        let (_dir, store) = store().await;
        super::concurrent_writers_to_one_session(Arc::new(store)).await;
    }

    /// Regression guard for the crash story: bytes written past the recorded
    /// offset (a chunk that never completed) are cut off on the next append.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn torn_chunk_is_cut_off() {
        let (dir, store) = store().await;
        let scope = UploadScope::new("r");
        let s = store
            .start_upload(&scope, DigestAlgorithm::Sha256)
            .await
            .unwrap();
        store
            .append_upload(s.id, &scope, None, body(&[b"good"]), LIMIT)
            .await
            .unwrap();
        let data = dir.path().join("uploads").join(format!("{}.data", s.id));
        let mut torn = std::fs::read(&data).unwrap();
        torn.extend_from_slice(b"GARBAGE");
        std::fs::write(&data, torn).unwrap();
        store
            .append_upload(s.id, &scope, Some(4), body(&[b"!"]), LIMIT)
            .await
            .unwrap();
        let digest = sha256(b"good!");
        store
            .finish_upload(s.id, &scope, &digest, None, LIMIT)
            .await
            .unwrap();
        assert_eq!(read_all(&store, &digest, None).await, b"good!");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_clears_tmp_and_lays_out_by_digest() {
        let (dir, store) = store().await;
        std::fs::write(dir.path().join("tmp").join("leftover"), b"x").unwrap();
        let digest = sha256(b"layout");
        store.put(&digest, body(&[b"layout"]), LIMIT).await.unwrap();
        let expected = dir
            .path()
            .join("blobs/sha256")
            .join(&digest.encoded()[..2])
            .join(digest.encoded());
        assert_eq!(std::fs::read(expected).unwrap(), b"layout");
        drop(store);
        FsBlobStore::open(dir.path()).await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    /// Removed blobs leave `blobs/` at once, files and all; a `trash/`
    /// directory an earlier build left goes at the next open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removed_blobs_leave_no_file_behind() {
        let (dir, store) = store().await;
        let files = |dir: &std::path::Path| -> usize {
            std::fs::read_dir(dir.join("blobs/sha256"))
                .unwrap()
                .map(|fan| std::fs::read_dir(fan.unwrap().path()).unwrap().count())
                .sum()
        };
        let digests = put_numbered(&store, "removed", 40).await;
        assert_eq!(files(dir.path()), 40);
        let gone = store.delete_many(&digests[..20]).await;
        assert_eq!(gone.len(), 20);
        assert_eq!(files(dir.path()), 20);
        for digest in &digests[..20] {
            assert_eq!(store.stat(digest).await.unwrap(), None);
        }
        for digest in &digests[20..] {
            assert!(store.stat(digest).await.unwrap().is_some());
        }

        let left = dir.path().join("trash/3/7-left");
        std::fs::create_dir_all(left.parent().unwrap()).unwrap();
        std::fs::write(&left, b"x").unwrap();
        drop(store);
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        assert!(!dir.path().join("trash").exists());
        for digest in &digests[20..] {
            assert!(store.stat(digest).await.unwrap().is_some());
        }
    }
}

mod s3_backend {
    use super::*;
    use crate::S3BlobStore;
    use crate::s3::tests::{remove_all, test_config};

    macro_rules! suite {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(config) = test_config() else { return };
                let store = S3BlobStore::open(&config).unwrap();
                super::$name(&store).await;
                remove_all(&store).await;
            }
        )*};
    }
    suite!(
        put_read_and_ranges,
        empty_blob,
        bad_writes_leave_nothing,
        chunked_upload,
        finish_with_wrong_digest_ends_session,
        finish_with_other_algorithm,
        cancel_and_unknown,
        upload_size_limit,
        stale_uploads_purged_and_batch_deletes,
        blobs_listed_in_order,
    );

    /// Two stores on one bucket and prefix are two nodes, or one node restarted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_survive_reopen() {
        let Some(config) = test_config() else { return };
        let first = S3BlobStore::open(&config).unwrap();
        let second = S3BlobStore::open(&config).unwrap();
        super::sessions_survive_reopen(&first, &second).await;
        remove_all(&first).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_to_one_session() {
        let Some(config) = test_config() else { return };
        let store = Arc::new(S3BlobStore::open(&config).unwrap());
        super::concurrent_writers_to_one_session(store.clone()).await;
        remove_all(&store).await;
    }
}
