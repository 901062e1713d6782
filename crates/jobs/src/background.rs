//! The background runtime: where lifecycle runs do their work, at a low CPU
//! priority, so that a collection, a retention run or an integrity check
//! takes the processor only when requests leave it idle.
//!
//! Linux gives each thread its own nice value, and a thread inherits its
//! creator's. The runtime's threads lower theirs as they start, so what a
//! run spawns from there is low too: the blocking threads that unlink blob
//! files or read blobs to hash them, and the worker threads of the database
//! connections a run opens (the embedded database's lifecycle readers).
//!
//! A run's *write transactions* must not run there: a transaction holds the
//! database's single writer (SQLite) or row locks (PostgreSQL), and a
//! low-priority thread holding them while it waits for the processor would
//! make every push wait behind it. The registry sends them to the runtime
//! requests are served on (`registry::Registry::in_foreground`).
//!
//! Elsewhere than Linux the nice value would be the whole process's, so the
//! priority is left alone there.

use std::future::Future;
use std::sync::Mutex;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// A multi-threaded runtime of one worker whose threads run at `nice`.
#[derive(Debug)]
pub(crate) struct Background {
    /// Taken (and shut down without waiting) when this is dropped: a
    /// runtime may not be dropped in an async context, where the last
    /// `Lifecycle` may well be dropped.
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
}

impl Background {
    /// `nice`: 0 (the priority requests have) to 19 (the lowest).
    pub(crate) fn start(nice: i32) -> std::io::Result<Self> {
        let nice = nice.clamp(0, 19);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wharf-background")
            .on_thread_start(move || lower_thread_priority(nice))
            .enable_all()
            .build()?;
        Ok(Background {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
        })
    }

    pub(crate) fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(work)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let runtime = match self.runtime.get_mut() {
            Ok(runtime) => runtime.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

/// Raises the calling thread's nice value to `nice` (Linux: per thread),
/// unless it is that high already.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_thread_priority(nice: i32) {
    // SAFETY: getpriority and setpriority take plain integers and touch no
    // memory of ours; with PRIO_PROCESS and `who` 0, Linux applies them to
    // the calling thread alone. Raising one's own nice value needs no
    // privilege. (-1 from getpriority may also be an error, which cannot
    // happen for the calling thread; either way the value is then set.)
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if current >= nice {
        return;
    }
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        tracing::warn!(
            nice,
            error = %std::io::Error::last_os_error(),
            "could not lower the priority of a background thread"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_thread_priority(_nice: i32) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The thread's own nice value, from `/proc/thread-self/stat` (field 19).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may hold spaces; count after its `)`.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn work_and_what_it_spawns_run_at_the_background_priority() {
        let background = Background::start(19).unwrap();
        let base = own_nice();
        let (worker, blocking) = background
            .spawn(async {
                let blocking = tokio::task::spawn_blocking(own_nice).await.unwrap();
                let thread = std::thread::spawn(own_nice).join().unwrap();
                assert_eq!(thread, blocking, "a thread inherits its creator's priority");
                (own_nice(), blocking)
            })
            .await
            .unwrap();
        assert_eq!((worker, blocking), (base.max(19), base.max(19)));
        // Requests' threads keep theirs.
        assert_eq!(own_nice(), base);
    }

    #[tokio::test]
    async fn nice_zero_leaves_the_priority_alone() {
        let background = Background::start(0).unwrap();
        let base = own_nice();
        let nice = background.spawn(async { own_nice() }).await.unwrap();
        assert_eq!(nice, base);
    }
}
