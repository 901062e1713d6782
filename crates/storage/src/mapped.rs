//! Blob chunks that are mappings of blob files, and the table that lets the
//! HTTP layer find the file behind such a chunk and send it with `sendfile(2)`
//! instead of copying it through user memory.
//!
//! A [`MappedChunk`] is real memory (a read-only mapping of part of an
//! immutable blob file), so any consumer may read it like any other bytes. While
//! it is alive, its address range is recorded in [`REGIONS`] with the file and
//! offset it maps; [`file_region`] answers "is this buffer a file region, and
//! which?". A connection that can send file regions directly (plain TCP) does,
//! and the mapping's pages are never touched; one that cannot (TLS, HTTP/2)
//! reads the mapping.
//!
//! Why hand-written: no crate offers zero-copy file sending underneath hyper,
//! whose bodies are byte buffers.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use memmap2::Mmap;

/// A file and an offset in it.
#[derive(Clone, Debug)]
pub struct FileRegion {
    pub file: Arc<File>,
    pub offset: u64,
}

struct Region {
    len: usize,
    file: Arc<File>,
    offset: u64,
}

/// Live mapped chunks by start address. Addresses are unique while a chunk is
/// alive: its mapping is unmapped only after it has been removed from here.
static REGIONS: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());

/// The file region holding exactly the bytes of `buf`, if `buf` lies within a
/// live mapped chunk. A buffer that merely overlaps one is not a region.
pub fn file_region(buf: &[u8]) -> Option<FileRegion> {
    if buf.is_empty() {
        return None;
    }
    let start = buf.as_ptr() as usize;
    let regions = REGIONS.read().unwrap_or_else(|e| e.into_inner());
    let (&base, region) = regions.range(..=start).next_back()?;
    let inside = start - base;
    (inside + buf.len() <= region.len).then(|| FileRegion {
        file: region.file.clone(),
        offset: region.offset + inside as u64,
    })
}

/// A mapping of `len` bytes of a blob file from `offset`, registered in
/// [`REGIONS`] for as long as it lives.
struct MappedChunk {
    map: Mmap,
}

impl AsRef<[u8]> for MappedChunk {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for MappedChunk {
    fn drop(&mut self) {
        // Runs before `map` is unmapped, so the address leaves the table first.
        REGIONS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(self.map.as_ptr() as usize));
    }
}

/// Maps `len` bytes of `file` from `offset` as a chunk if every page is
/// already in the page cache, without blocking (mapping and `mincore(2)` do
/// not wait on the disk); `None` when some page is not, for
/// [`map_chunk`] on a blocking thread.
pub(crate) fn map_cached_chunk(
    file: &Arc<File>,
    file_size: u64,
    offset: u64,
    len: u64,
) -> std::io::Result<Option<Bytes>> {
    let map = map(file, file_size, offset, len)?;
    Ok(resident(&map).then(|| register(map, file, offset)))
}

/// Maps `len` bytes of `file` from `offset` as a chunk, after reading into the
/// page cache what is not there yet (so sending it later never waits on the
/// disk). Blocking: call from a blocking thread.
pub(crate) fn map_chunk(
    file: &Arc<File>,
    file_size: u64,
    offset: u64,
    len: u64,
) -> std::io::Result<Bytes> {
    let map = map(file, file_size, offset, len)?;
    if !resident(&map) {
        for i in (0..map.len()).step_by(page_size()) {
            std::hint::black_box(map[i]);
        }
    }
    Ok(register(map, file, offset))
}

#[allow(unsafe_code)]
fn map(file: &File, file_size: u64, offset: u64, len: u64) -> std::io::Result<Mmap> {
    if file_size < offset + len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "blob file is shorter than its recorded size",
        ));
    }
    // SAFETY: a mapped file must not be truncated or modified while mapped.
    // Blob files are written once under a temporary name and renamed into place
    // after their digest checks; nothing opens them for writing afterwards, and
    // removal (unlink) leaves existing mappings intact.
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len as usize)
            .map(file)
    }
}

fn register(map: Mmap, file: &Arc<File>, offset: u64) -> Bytes {
    REGIONS.write().unwrap_or_else(|e| e.into_inner()).insert(
        map.as_ptr() as usize,
        Region {
            len: map.len(),
            file: file.clone(),
            offset,
        },
    );
    Bytes::from_owner(MappedChunk { map })
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// Whether every page of the mapping is in the page cache (mincore(2)).
#[allow(unsafe_code)]
fn resident(map: &Mmap) -> bool {
    let page = page_size();
    let start = map.as_ptr() as usize;
    let aligned = start - start % page;
    let len = map.len() + (start - aligned);
    let mut pages = vec![0u8; len.div_ceil(page)];
    // SAFETY: [aligned, aligned + len) lies within the mapping memmap2 made
    // (it maps from the page boundary below the requested offset), and
    // `pages` has one byte per page of that range.
    let rc = unsafe { libc::mincore(aligned as *mut libc::c_void, len, pages.as_mut_ptr()) };
    rc == 0 && pages.iter().all(|p| p & 1 == 1)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn chunks_are_registered_while_alive() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..50_000u32).map(|i| (i % 256) as u8).collect();
        tmp.write_all(&content).unwrap();
        let file = Arc::new(File::open(tmp.path()).unwrap());
        // An offset that is not page aligned.
        let chunk = map_chunk(&file, 50_000, 5_000, 20_000).unwrap();
        assert_eq!(&chunk[..], &content[5_000..25_000]);
        let region = file_region(&chunk[100..200]).unwrap();
        assert_eq!(region.offset, 5_100);
        assert!(file_region(&chunk[..]).is_some());
        // A buffer that does not lie in a chunk is not a region.
        assert!(file_region(&content[..10]).is_none());
        let copy = chunk.to_vec();
        assert!(file_region(&copy).is_none());
        let sub = chunk.slice(10..20);
        drop(chunk);
        assert!(file_region(&sub).is_some(), "a slice keeps the chunk alive");
        let address = sub.as_ptr() as usize;
        drop(sub);
        let regions = REGIONS.read().unwrap();
        assert!(
            regions
                .range(..=address)
                .next_back()
                .is_none_or(|(b, r)| b + r.len <= address)
        );
        assert!(map_chunk(&file, 50_000, 40_000, 20_000).is_err());
    }

    /// Pages evicted from the page cache are read in by `map_chunk`; the
    /// non-blocking path declines rather than fault on the async thread.
    #[test]
    #[allow(unsafe_code)]
    fn cold_pages_take_the_blocking_path() {
        use std::os::fd::AsRawFd;
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        tmp.write_all(&content).unwrap();
        tmp.as_file().sync_all().unwrap();
        let file = Arc::new(File::open(tmp.path()).unwrap());
        // SAFETY: the descriptor is open; the call reads no memory of ours.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if let Some(chunk) = map_cached_chunk(&file, 1_000_000, 4096, 500_000).unwrap() {
            // The kernel kept the pages after all: the chunk must still be right.
            assert_eq!(&chunk[..], &content[4096..504_096]);
        }
        let chunk = map_chunk(&file, 1_000_000, 4096, 500_000).unwrap();
        assert_eq!(&chunk[..], &content[4096..504_096]);
        let cached = map_cached_chunk(&file, 1_000_000, 4096, 500_000)
            .unwrap()
            .unwrap();
        assert_eq!(&cached[..], &content[4096..504_096]);
    }
}
