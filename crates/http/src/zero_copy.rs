//! A plain-TCP connection that sends file-backed body chunks with
//! `sendfile(2)`.
//!
//! hyper writes a response as byte buffers. When a buffer it writes is a blob
//! chunk that the storage layer mapped from a file ([`storage::mapped`]), this
//! wrapper asks the kernel to send that file range directly; the bytes never
//! pass through user memory, as with nginx's `sendfile on`. Every other buffer
//! (headers, small bodies) is written normally. hyper only learns how many
//! bytes were written, which is the same either way.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use storage::mapped::{FileRegion, file_region};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct ZeroCopyTcp(pub TcpStream);

impl ZeroCopyTcp {
    fn poll_send_region(
        &self,
        cx: &mut Context<'_>,
        region: &FileRegion,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            let sent = self
                .0
                .try_io(Interest::WRITABLE, || sendfile(&self.0, region, len));
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

/// One `sendfile(2)` call from `region` to the socket.
#[allow(unsafe_code)]
fn sendfile(socket: &TcpStream, region: &FileRegion, len: usize) -> io::Result<usize> {
    let mut offset = libc::off_t::try_from(region.offset).map_err(io::Error::other)?;
    // SAFETY: both descriptors are open for the duration of the call (the
    // socket is borrowed, the file is kept alive by `region`), and `offset`
    // is a valid pointer to an off_t.
    let n = unsafe {
        libc::sendfile(
            socket.as_raw_fd(),
            region.file.as_raw_fd(),
            &mut offset,
            len,
        )
    };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob file ended before its recorded size",
        )),
        n => Ok(n as usize),
    }
}

impl AsyncRead for ZeroCopyTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match file_region(buf) {
            Some(region) => self.poll_send_region(cx, &region, buf.len()),
            None => Pin::new(&mut self.0).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        if let Some(region) = file_region(&bufs[first]) {
            return self.poll_send_region(cx, &region, bufs[first].len());
        }
        // Write the buffers up to the next file region in one call.
        let end = bufs[first..]
            .iter()
            .position(|b| file_region(b).is_some())
            .map_or(bufs.len(), |i| first + i);
        Pin::new(&mut self.0).poll_write_vectored(cx, &bufs[first..end])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
