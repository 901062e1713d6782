//! The filesystem backend: blobs as files under a local directory.
//!
//! Layout under the root:
//! - `blobs/<algorithm>/<first two hex>/<hex>`: stored blobs, one file per digest
//!   however many repositories use it.
//! - `uploads/<uuid>.json` and `uploads/<uuid>.data`: an upload session's state
//!   (scope, offset, hasher state) and the bytes received so far.
//! - `tmp/`: whole-blob uploads in flight; emptied when the store opens.
//!
//! Writes are hashed by the task receiving them and written by a blocking
//! thread, with writeback started as they go; the file is fsynced and renamed
//! into `blobs/` only when its digest checks, and the directory is fsynced after
//! the rename, so a blob that has been reported stored survives a power failure.
//! Nothing is ever read back to verify it.
//!
//! A session's state file is replaced atomically (write, rename) after the
//! chunk it describes has been fsynced, so it never vouches for bytes that are
//! not on disk. It is not itself fsynced: after a power failure a session may
//! be back at an earlier chunk (or gone, if it had none), which the client
//! learns from the upload's status; after a crash of the process alone nothing
//! is lost. Bytes past the recorded offset (a chunk that never completed) are
//! cut off when the session is next used.
//!
//! One process owns a root: sessions are serialized per process (`busy`), and
//! `tmp/` is cleared at open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use oci::{Digest, DigestAlgorithm, DigestHasher};
use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::range::RangeRequest;
use crate::stream::{BlobRead, ByteStream};
use crate::upload::{BusyGuard, BusySessions, UploadId, UploadScope, UploadStatus};
use crate::{BlobStore, ListedBlob};

/// Size of the chunks a blob is read in. Large enough that the per-chunk hop to
/// a blocking thread is noise; small enough that memory stays flat per stream.
const READ_CHUNK: u64 = 4 * 1024 * 1024;

/// Reads at least this large map the file instead of copying it into a buffer.
const MAP_THRESHOLD: u64 = 256 * 1024;

/// Chunks buffered between the request body and the writer thread.
const WRITE_QUEUE: usize = 16;

/// Bytes hashed between two yields to the async scheduler (about 30 µs).
const HASH_SLICE: usize = 64 * 1024;

/// Blocking threads a batch of blob removals is spread over. An unlink
/// mostly waits for the disk (the directory entry, the inode, and on a
/// filesystem mounted with `discard`, the freed blocks: 200-250 µs each on
/// the benchmark machine, of which 60 µs of CPU), so several overlap.
const REMOVAL_THREADS: usize = 8;

/// While a blob streams in, the kernel is asked to start writing each stretch
/// of this size to disk, so the fsync at the end waits only for the tail.
const WRITEBACK_STRIDE: u64 = 8 * 1024 * 1024;

#[derive(Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    /// Upload sessions a request is working on right now. A second request on
    /// the same session is refused rather than interleaved, which would corrupt
    /// both the data file and the hasher state.
    busy: BusySessions,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let store = FsBlobStore {
            root: root.clone(),
            busy: BusySessions::default(),
        };
        blocking(move || {
            for dir in ["blobs", "uploads", "tmp"] {
                fs::create_dir_all(root.join(dir))?;
            }
            // The fan-out directories of the canonical algorithm exist up front,
            // so storing a blob never has to create one.
            for byte in 0..=255u8 {
                fs::create_dir_all(root.join("blobs/sha256").join(format!("{byte:02x}")))?;
            }
            for entry in fs::read_dir(root.join("tmp"))? {
                let path = entry?.path();
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
            // Earlier builds renamed removed blobs into `trash/` and unlinked
            // them later; what a stopped one left there goes now.
            match fs::remove_dir_all(root.join("trash")) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
        .await?;
        Ok(store)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        // Safe to join: a Digest is `<sha256|sha512>:<lowercase hex>`.
        let encoded = digest.encoded();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&encoded[..2])
            .join(encoded)
    }

    fn session(&self, id: UploadId) -> Session {
        // Safe to join: an UploadId prints as a hyphenated UUID.
        let uploads = self.root.join("uploads");
        Session {
            state: uploads.join(format!("{id}.json")),
            data: uploads.join(format!("{id}.data")),
        }
    }

    fn claim(&self, id: UploadId) -> Result<BusyGuard, StorageError> {
        self.busy.claim(id)
    }

    /// Moves a verified file into its place in `blobs/`, or drops it if that
    /// blob is already stored.
    async fn commit(&self, file: PathBuf, digest: &Digest) -> Result<(), StorageError> {
        let target = self.blob_path(digest);
        blocking(move || {
            if target.exists() {
                return fs::remove_file(&file);
            }
            let parent = target.parent().expect("blob paths have a parent");
            if !parent.exists() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&file, &target)?;
            File::open(parent)?.sync_all()
        })
        .await
    }

    /// Appends `body` to a session's data file at its recorded offset.
    async fn append_locked(
        &self,
        session: &Session,
        state: &mut SessionState,
        at: Option<u64>,
        body: ByteStream,
        max_size: u64,
    ) -> Result<(), StorageError> {
        if let Some(at) = at
            && at != state.offset
        {
            return Err(StorageError::UploadOffsetMismatch {
                offset: state.offset,
                given: at,
            });
        }
        let algorithm = state.algorithm()?;
        let hasher = DigestHasher::restore(algorithm, &state.hasher_bytes()?)
            .map_err(|e| StorageError::backend(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let data = session.data.clone();
        let offset = state.offset;
        let file = blocking({
            let data = data.clone();
            move || {
                let mut file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(false)
                    .open(&data)?;
                if file.metadata()?.len() != offset {
                    // Bytes past the offset are from a chunk that never completed.
                    file.set_len(offset)?;
                }
                file.seek(SeekFrom::Start(offset))?;
                Ok(file)
            }
        })
        .await?;
        match write_stream(file, hasher, offset, body, max_size).await {
            Ok((hasher, total)) => {
                state.offset = total;
                state.set_hasher(&hasher);
                Ok(())
            }
            Err(e) => {
                let _ =
                    blocking(move || OpenOptions::new().write(true).open(&data)?.set_len(offset))
                        .await;
                Err(e)
            }
        }
    }
}

/// The two files of an upload session.
#[derive(Debug, Clone)]
struct Session {
    state: PathBuf,
    data: PathBuf,
}

impl Session {
    /// Removes both files; a missing data file (nothing appended) is fine.
    async fn remove(&self) {
        let _ = tokio::fs::remove_file(&self.data).await;
        let _ = tokio::fs::remove_file(&self.state).await;
    }
}

/// What a session's state file records.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct SessionState {
    scope: String,
    algorithm: String,
    offset: u64,
    /// Hex of the hasher state after `offset` bytes.
    hasher: String,
    started_at_ms: u64,
    updated_at_ms: u64,
}

impl SessionState {
    fn algorithm(&self) -> Result<DigestAlgorithm, StorageError> {
        self.algorithm
            .parse()
            .map_err(|e| StorageError::backend(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    fn hasher_bytes(&self) -> Result<Vec<u8>, StorageError> {
        hex::decode(&self.hasher)
            .map_err(|e| StorageError::backend(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    fn set_hasher(&mut self, hasher: &DigestHasher) {
        self.hasher = hex::encode(hasher.save());
        self.updated_at_ms = now_ms();
    }

    fn status(&self, id: UploadId) -> Result<UploadStatus, StorageError> {
        Ok(UploadStatus {
            id,
            offset: self.offset,
            algorithm: self.algorithm()?,
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn load_state(session: &Session, scope: &UploadScope) -> Result<SessionState, StorageError> {
    let text = match tokio::fs::read(&session.state).await {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::UploadNotFound),
        Err(e) => return Err(StorageError::Backend(e)),
    };
    let state: SessionState = serde_json::from_slice(&text)
        .map_err(|e| StorageError::backend(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    if state.scope != scope.0 {
        return Err(StorageError::UploadNotFound);
    }
    Ok(state)
}

/// Replaces a session's state file atomically (not durably: see the module
/// documentation). A new session's file is created in place, never replacing one.
async fn save_state(
    session: &Session,
    state: &SessionState,
    new: bool,
) -> Result<(), StorageError> {
    let text = serde_json::to_vec(state).map_err(|e| StorageError::backend(io::Error::other(e)))?;
    let path = session.state.clone();
    blocking(move || {
        if new {
            return OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?
                .write_all(&text);
        }
        let tmp = path.with_extension("json.tmp");
        File::create(&tmp)?.write_all(&text)?;
        fs::rename(&tmp, &path)
    })
    .await
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::backend(io::Error::other(e)))?
        .map_err(StorageError::Backend)
}

/// Streams `body` into `file`, hashing it on the way, and fsyncs the file.
/// `already` bytes precede the body (for the size limit). Returns the hasher
/// and the new total length.
///
/// The receiving task hashes each chunk while it is still hot in the CPU
/// cache, and a blocking thread writes it: receiving and hashing on one core
/// overlap with writing on another. Hashing goes in slices of
/// [`HASH_SLICE`] bytes with a yield to the scheduler between them, so a large
/// chunk never holds an async worker for more than a few tens of microseconds.
async fn write_stream(
    file: File,
    hasher: DigestHasher,
    already: u64,
    mut body: ByteStream,
    max_size: u64,
) -> Result<(DigestHasher, u64), StorageError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
    let mut hasher = hasher;
    let writer = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let mut file = file;
        let mut written = already;
        // Start of the stretch not yet handed to writeback, and of the one
        // handed over before it.
        let mut flushed = already;
        let mut previous = None;
        while let Some(chunk) = rx.blocking_recv() {
            file.write_all(&chunk)?;
            written += chunk.len() as u64;
            if written - flushed >= WRITEBACK_STRIDE {
                writeback(&file, flushed, written - flushed, previous);
                previous = Some((flushed, written - flushed));
                flushed = written;
            }
        }
        file.sync_data()
    });
    let mut total = already;
    let mut outcome = Ok(());
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) => {
                total += chunk.len() as u64;
                if total > max_size {
                    outcome = Err(StorageError::TooLarge { limit: max_size });
                    break;
                }
                let mut slices = chunk.chunks(HASH_SLICE).peekable();
                while let Some(slice) = slices.next() {
                    hasher.update(slice);
                    if slices.peek().is_some() {
                        tokio::task::yield_now().await;
                    }
                }
                if tx.send(chunk).await.is_err() {
                    break; // The writer failed; its error is reported below.
                }
            }
            Err(e) => {
                outcome = Err(StorageError::Body(e));
                break;
            }
        }
    }
    drop(tx);
    writer
        .await
        .map_err(|e| StorageError::backend(io::Error::other(e)))?
        .map_err(StorageError::Backend)?;
    outcome.map(|()| (hasher, total))
}

/// Asks the kernel to start writing a just-written stretch of `file` to disk,
/// and waits until the stretch before it is written. A blob in flight thus
/// holds at most two stretches of unwritten data, and the fsync at the end
/// waits only for the tail. A hint: errors are ignored; the fsync that follows
/// is what guarantees durability.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn writeback(file: &File, offset: u64, len: u64, previous: Option<(u64, u64)>) {
    use std::os::fd::AsRawFd;
    let range = |o: u64, l: u64| {
        Some((
            libc::off64_t::try_from(o).ok()?,
            libc::off64_t::try_from(l).ok()?,
        ))
    };
    let fd = file.as_raw_fd();
    // SAFETY (both calls): the descriptor is open for the duration of the
    // call, which reads no memory of ours.
    if let Some((o, l)) = range(offset, len) {
        unsafe { libc::sync_file_range(fd, o, l, libc::SYNC_FILE_RANGE_WRITE) };
    }
    if let Some((o, l)) = previous.and_then(|(o, l)| range(o, l)) {
        let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        unsafe { libc::sync_file_range(fd, o, l, wait) };
    }
}

#[cfg(not(target_os = "linux"))]
fn writeback(_: &File, _: u64, _: u64, _: Option<(u64, u64)>) {}

/// Hashes a whole file with `algorithm`: only when a session is finished with a
/// digest of another algorithm than the one it was started with.
async fn hash_file(path: PathBuf, algorithm: DigestAlgorithm) -> Result<Digest, StorageError> {
    blocking(move || {
        let mut file = File::open(path)?;
        let mut hasher = DigestHasher::new(algorithm);
        let mut buf = vec![0u8; READ_CHUNK as usize];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    })
    .await
}

/// Streams `len` bytes (a large read) of `file` from `start`, as chunks that
/// are mappings of the file ([`crate::mapped`]): a plain-TCP connection sends
/// them with `sendfile(2)` without touching them, any other reads them without
/// a copy into a buffer. Each chunk is its own mapping, released as soon as it
/// has been sent, so resident memory stays flat however large the blob.
fn read_stream(file: File, size: u64, start: u64, len: u64) -> ByteStream {
    let file = Arc::new(file);
    let end = start + len;
    Box::pin(futures_util::stream::unfold(Some(start), move |position| {
        let file = file.clone();
        async move {
            let position = position?;
            if position >= end {
                return None;
            }
            let want = (end - position).min(READ_CHUNK);
            // Cached data is mapped right here; only reading from the disk
            // goes to a blocking thread.
            let read =
                match crate::mapped::map_cached_chunk(&file, size, position, want).transpose() {
                    Some(chunk) => chunk,
                    None => tokio::task::spawn_blocking(move || {
                        crate::mapped::map_chunk(&file, size, position, want)
                    })
                    .await
                    .unwrap_or_else(|join| Err(io::Error::other(join))),
                };
            match read {
                Ok(chunk) => Some((Ok(chunk), Some(position + want))),
                Err(e) => Some((Err(e), None)),
            }
        }
    }))
}

/// What opening a blob for reading gave: its bytes (small reads) or the file
/// to stream from.
enum Opened {
    Read(Bytes),
    Stream(File, u64, u64),
}

fn copy_chunk(file: &File, position: u64, want: u64) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; want as usize];
    file.read_exact_at(&mut buf, position)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob file is shorter than its recorded size",
            ),
            _ => e,
        })?;
    Ok(Bytes::from(buf))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::Backend(e)),
        }
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead, StorageError> {
        let path = self.blob_path(digest);
        // One blocking call opens the file, checks the range, and for a small
        // read reads it too; large reads stream as mapped chunks.
        let opened = tokio::task::spawn_blocking(move || {
            let file = File::open(path)?;
            let size = file.metadata()?.len();
            let range = match range {
                None => None,
                Some(r) => match r.resolve(size) {
                    Some(resolved) => Some(resolved),
                    None => return Ok(Err(size)),
                },
            };
            let (start, len) = range.map_or((0, size), |r| (r.start, r.len()));
            let opened = if len < MAP_THRESHOLD {
                Opened::Read(copy_chunk(&file, start, len)?)
            } else {
                Opened::Stream(file, start, len)
            };
            Ok::<_, io::Error>(Ok((opened, size, range)))
        })
        .await
        .map_err(|e| StorageError::backend(io::Error::other(e)))?;
        let (opened, size, range) = match opened {
            Ok(Ok(v)) => v,
            Ok(Err(size)) => return Err(StorageError::RangeNotSatisfiable { size }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::BlobNotFound(digest.clone()));
            }
            Err(e) => return Err(StorageError::Backend(e)),
        };
        let body: ByteStream = match opened {
            Opened::Read(bytes) => Box::pin(futures_util::stream::once(async move { Ok(bytes) })),
            Opened::Stream(file, start, len) => read_stream(file, size, start, len),
        };
        Ok(BlobRead { size, range, body })
    }

    async fn put(
        &self,
        expected: &Digest,
        body: ByteStream,
        max_size: u64,
    ) -> Result<u64, StorageError> {
        let tmp = self.root.join("tmp").join(UploadId::random().to_string());
        let file = blocking({
            let tmp = tmp.clone();
            move || File::create(tmp)
        })
        .await?;
        let written = write_stream(
            file,
            DigestHasher::new(expected.algorithm()),
            0,
            body,
            max_size,
        )
        .await;
        let checked = written.and_then(|(hasher, size)| {
            let actual = hasher.finish();
            if &actual == expected {
                Ok(size)
            } else {
                Err(StorageError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                })
            }
        });
        match checked {
            Ok(size) => {
                self.commit(tmp, expected).await?;
                Ok(size)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ListedBlob>, StorageError> {
        let root = self.root.join("blobs");
        let after = after.map(|d| d.as_str().to_owned()).unwrap_or_default();
        blocking(move || {
            // `<algorithm>/<first two hex digits>/<hex>`: walking the
            // directories in name order lists digests in order, and whole
            // directories before `after` are skipped.
            let mut listed = Vec::new();
            for algorithm in sorted_names(&root)? {
                for prefix in sorted_names(&root.join(&algorithm))? {
                    if format!("{algorithm}:{prefix}~") < after {
                        continue;
                    }
                    let dir = root.join(&algorithm).join(&prefix);
                    for name in sorted_names(&dir)? {
                        let text = format!("{algorithm}:{name}");
                        if text <= after {
                            continue;
                        }
                        // Anything else in the tree (a stray file) is not a blob.
                        let Ok(digest) = text.parse::<Digest>() else {
                            continue;
                        };
                        let meta = match fs::metadata(dir.join(&name)) {
                            Ok(m) => m,
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(e),
                        };
                        let modified_ms = meta
                            .modified()?
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                        listed.push(ListedBlob {
                            digest,
                            size: meta.len(),
                            modified_ms,
                        });
                        if listed.len() == limit {
                            return Ok(listed);
                        }
                    }
                }
            }
            Ok(listed)
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::Backend(e)),
        }
    }

    /// Unlinks the batch, spread over a few blocking threads. Once unlinked, the blob is gone for every reader of `blobs/`; a
    /// stream already open keeps reading its file.
    async fn delete_many(&self, digests: &[Digest]) -> Vec<Digest> {
        let mut parts: Vec<Vec<(Digest, PathBuf)>> = vec![Vec::new(); REMOVAL_THREADS];
        for (i, digest) in digests.iter().enumerate() {
            parts[i % REMOVAL_THREADS].push((digest.clone(), self.blob_path(digest)));
        }
        let mut removals = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            removals.push(tokio::task::spawn_blocking(move || {
                let mut gone = Vec::with_capacity(part.len());
                for (digest, path) in part {
                    match fs::remove_file(&path) {
                        Ok(()) => gone.push(digest),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => gone.push(digest),
                        Err(e) => tracing::warn!(%digest, error = %e, "could not remove a blob"),
                    }
                }
                gone
            }));
        }
        let mut gone = Vec::with_capacity(digests.len());
        for removal in removals {
            match removal.await {
                Ok(g) => gone.extend(g),
                Err(e) => tracing::warn!(error = %e, "removing blobs failed"),
            }
        }
        gone
    }

    async fn start_upload(
        &self,
        scope: &UploadScope,
        algorithm: DigestAlgorithm,
    ) -> Result<UploadStatus, StorageError> {
        let id = UploadId::random();
        let session = self.session(id);
        let now = now_ms();
        let mut state = SessionState {
            scope: scope.0.clone(),
            algorithm: algorithm.as_str().to_owned(),
            offset: 0,
            hasher: String::new(),
            started_at_ms: now,
            updated_at_ms: now,
        };
        state.set_hasher(&DigestHasher::new(algorithm));
        save_state(&session, &state, true).await?;
        state.status(id)
    }

    async fn upload_status(
        &self,
        id: UploadId,
        scope: &UploadScope,
    ) -> Result<UploadStatus, StorageError> {
        load_state(&self.session(id), scope).await?.status(id)
    }

    async fn append_upload(
        &self,
        id: UploadId,
        scope: &UploadScope,
        at: Option<u64>,
        body: ByteStream,
        max_size: u64,
    ) -> Result<UploadStatus, StorageError> {
        let _guard = self.claim(id)?;
        let session = self.session(id);
        let mut state = load_state(&session, scope).await?;
        self.append_locked(&session, &mut state, at, body, max_size)
            .await?;
        save_state(&session, &state, false).await?;
        state.status(id)
    }

    async fn finish_upload(
        &self,
        id: UploadId,
        scope: &UploadScope,
        expected: &Digest,
        final_chunk: Option<(Option<u64>, ByteStream)>,
        max_size: u64,
    ) -> Result<u64, StorageError> {
        let _guard = self.claim(id)?;
        let session = self.session(id);
        let mut state = load_state(&session, scope).await?;
        if let Some((at, body)) = final_chunk {
            self.append_locked(&session, &mut state, at, body, max_size)
                .await?;
        }
        let data = session.data.clone();
        if state.offset == 0 {
            // Nothing was ever appended: the data file may not exist yet.
            blocking({
                let data = data.clone();
                move || {
                    OpenOptions::new()
                        .create(true)
                        .write(true)
                        .truncate(true)
                        .open(data)
                        .map(drop)
                }
            })
            .await?;
        }
        let algorithm = state.algorithm()?;
        let actual = if algorithm == expected.algorithm() {
            DigestHasher::restore(algorithm, &state.hasher_bytes()?)
                .map_err(|e| StorageError::backend(io::Error::new(io::ErrorKind::InvalidData, e)))?
                .finish()
        } else {
            hash_file(data.clone(), expected.algorithm()).await?
        };
        let outcome = if &actual == expected {
            self.commit(data, expected).await.map(|()| state.offset)
        } else {
            Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            })
        };
        session.remove().await;
        outcome
    }

    async fn cancel_upload(&self, id: UploadId, scope: &UploadScope) -> Result<(), StorageError> {
        let _guard = self.claim(id)?;
        let session = self.session(id);
        load_state(&session, scope).await?;
        session.remove().await;
        Ok(())
    }

    async fn purge_uploads(&self, before_ms: i64) -> Result<u64, StorageError> {
        let uploads = self.root.join("uploads");
        let before =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(before_ms.max(0) as u64);
        let mut stale = std::collections::HashSet::new();
        let mut entries = tokio::fs::read_dir(&uploads)
            .await
            .map_err(StorageError::Backend)?;
        while let Some(entry) = entries.next_entry().await.map_err(StorageError::Backend)? {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json").or_else(|| n.strip_suffix(".data")))
                .and_then(UploadId::parse)
            else {
                continue;
            };
            // The state file is rewritten by every append, the data file
            // written by it: either one recent means the session is alive.
            let session = self.session(id);
            let touched =
                |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let newest = touched(&session.state).max(touched(&session.data));
            if newest.is_some_and(|t| t < before) {
                stale.insert(id);
            }
        }
        let mut purged = 0;
        for id in stale {
            let Ok(_guard) = self.claim(id) else { continue };
            self.session(id).remove().await;
            purged += 1;
        }
        Ok(purged)
    }

    /// The root is there and takes a write: a file created and removed in `tmp/`.
    async fn ping(&self) -> Result<(), StorageError> {
        let probe = self
            .root
            .join("tmp")
            .join(format!("ping-{}", UploadId::random()));
        blocking(move || {
            File::create(&probe)?;
            fs::remove_file(&probe)
        })
        .await
    }
}

/// The names in a directory, sorted; none if it does not exist.
fn sorted_names(dir: &std::path::Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
