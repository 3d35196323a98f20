//! Large stored bodies kept in sealed memory files, so that a hit hands the kernel references
//! to the body's pages (`sendfile`) instead of copying it into the socket.
//!
//! Sending a 100 KB body with `writev` copies it into the socket's buffers: on loopback that
//! copy was over 40 % of a 100 KB hit's CPU (`perf`), and it is what nginx, sending its cache
//! files with `sendfile`, does not pay. A body of at least [`MIN_BYTES`] is written once, when it
//! is stored, into a `memfd` of its own, which is then sealed against every change and mapped
//! read-only; the mapping is the stored `Bytes` every other path reads. A hit on the direct path
//! sends the header, then the body with `sendfile` from the file.
//!
//! Why this is safe: the kernel queues references to the file's pages, not copies, so the
//! pages must never change while a response is in flight. The seals (`F_SEAL_WRITE`, `SHRINK`,
//! `GROW`, then `SEAL`) make that the kernel's guarantee: nothing, in this process or any
//! other, can write to the file again. When the entry is dropped its file is closed and
//! unmapped, and pages still queued on a socket live on until they are sent.
//!
//! Why a file per body: a shared arena would reuse a freed body's pages for the next one while
//! a slow client's socket still held them. One descriptor per large body (a 128 MiB memory
//! tier holds at most 2,048 bodies of 64 KiB) is the price. Sealed files never take more than
//! half of the process's open-file limit (which `raise_open_files_limit` lifts to its hard
//! limit at start), so client connections always find descriptors; past that, or if a file
//! cannot be made, the body stays on the heap and is sent with `writev`.
//!
//! Memory stays visible: the mapping is populated when it is made, so its pages count in the
//! process's RSS (as shared memory) as the heap copy did, and the memory tier weighs them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Bodies this large or larger are sealed; smaller ones cost more in descriptors and
/// `mmap` calls than their copy.
pub const MIN_BYTES: usize = 64 * 1024;

/// Sealed files open now.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Whether a body was kept on the heap for want of a file yet (logged once as a warning).
static WARNED: AtomicBool = AtomicBool::new(false);

/// Sealed files open now, for the `knitcache_cache_sealed_bodies` gauge.
pub fn open_files() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// The most sealed files open at once: half of the open-file limit when first asked.
fn max_open() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map_or(usize::MAX, |soft| {
                usize::try_from(soft / 2).unwrap_or(usize::MAX)
            })
    })
}

/// Counts one more open file in `open` unless `max` are open already.
fn take(open: &AtomicUsize, max: usize) -> bool {
    open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        (n < max).then_some(n + 1)
    })
    .is_ok()
}

/// Lifts the soft open-file limit to the hard one, as nginx's `worker_rlimit_nofile` and Go's
/// runtime do: the soft default (often 1,024) is too low for a proxy's connections and its
/// sealed bodies. Returns the limit in force.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "the open-file limit could not be raised");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// A body in a sealed, read-only memory file.
pub struct SealedBody {
    file: OwnedFd,
    map: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and never changes (sealed); it is unmapped only on drop,
// when no reference to it is left.
unsafe impl Send for SealedBody {}
// SAFETY: as above: shared reads of immutable memory.
unsafe impl Sync for SealedBody {}

impl std::fmt::Debug for SealedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBody")
            .field("len", &self.len)
            .finish()
    }
}

impl SealedBody {
    /// A sealed copy of `body` (which must not be empty), if the budget of open files allows.
    pub fn seal(body: &[u8]) -> io::Result<SealedBody> {
        if body.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty body has nothing to seal",
            ));
        }
        if !take(&OPEN, max_open()) {
            return Err(io::Error::other(
                "half of the open-file limit is held by sealed bodies",
            ));
        }
        // Counted from here; `Drop` uncounts a body that was made, this one that was not.
        Self::make(body).inspect_err(|_| {
            OPEN.fetch_sub(1, Ordering::Relaxed);
        })
    }

    fn make(body: &[u8]) -> io::Result<SealedBody> {
        let file = rustix::fs::memfd_create(
            "knitcache-body",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut written = 0;
        while written < body.len() {
            match rustix::io::write(&file, &body[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        rustix::fs::fcntl_add_seals(
            &file,
            SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )?;
        // SAFETY: a new read-only shared mapping of the whole file, which can no longer change
        // size or contents; it is unmapped once, on drop.
        let map = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                body.len(),
                ProtFlags::READ,
                MapFlags::SHARED | MapFlags::POPULATE,
                &file,
                0,
            )?
        };
        let map = NonNull::new(map.cast::<u8>()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(SealedBody {
            file,
            map,
            len: body.len(),
        })
    }

    /// The file, to `sendfile` from.
    pub fn file(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The memory it holds: whole pages.
    pub fn resident_bytes(&self) -> usize {
        self.len.next_multiple_of(rustix::param::page_size())
    }

    /// Never true: an empty body is not sealed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for SealedBody {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `map` is a live read-only mapping of `len` bytes until drop.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }
}

impl Drop for SealedBody {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `seal`, unmapped once; no slice of it outlives `self`
        // (the `Bytes` views own an `Arc` of it).
        let _ = unsafe { rustix::mm::munmap(self.map.as_ptr().cast(), self.len) };
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The owner a `Bytes` view of a sealed body keeps alive.
struct View(Arc<SealedBody>);

impl AsRef<[u8]> for View {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().as_ref()
    }
}

/// `body` as it is stored: its bytes, and the sealed file they are a view of when it is at
/// least [`MIN_BYTES`] and a file could be made (else `heap(body)`, on the heap).
pub fn store<B: AsRef<[u8]>>(
    body: B,
    heap: impl FnOnce(B) -> Bytes,
) -> (Bytes, Option<Arc<SealedBody>>) {
    let bytes = body.as_ref();
    if bytes.len() < MIN_BYTES {
        return (heap(body), None);
    }
    match SealedBody::seal(bytes) {
        Ok(sealed) => {
            let sealed = Arc::new(sealed);
            (Bytes::from_owner(View(Arc::clone(&sealed))), Some(sealed))
        }
        Err(e) => {
            if WARNED.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, bytes = bytes.len(), "a large body stays on the heap");
            } else {
                tracing::warn!(
                    error = %e,
                    bytes = bytes.len(),
                    "a large body stays on the heap and is sent with a copy (logged once); \
                     raise the open-file limit (LimitNOFILE) if this is the limit"
                );
            }
            (heap(body), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    use super::*;

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn the_view_reads_the_body_and_the_file_sends_it() {
        let want = body(MIN_BYTES + 3);
        let (bytes, sealed) = store(Bytes::from(want.clone()), |_| unreachable!("sealed"));
        let sealed = sealed.expect("a large body is sealed");
        assert_eq!(&bytes[..], &want[..]);
        assert_eq!(sealed.len(), want.len());
        let (mut rx, tx) = UnixStream::pair().expect("pair");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).expect("read");
            got
        });
        let mut offset = 0u64;
        while (offset as usize) < want.len() {
            let n = rustix::fs::sendfile(&tx, sealed.file(), Some(&mut offset), want.len())
                .expect("sendfile");
            assert!(n > 0);
        }
        drop(tx);
        assert_eq!(reader.join().expect("reader"), want);
    }

    #[test]
    fn nothing_can_change_a_sealed_file() {
        let sealed = SealedBody::seal(&body(MIN_BYTES)).expect("sealed");
        let seals = rustix::fs::fcntl_get_seals(sealed.file()).expect("seals");
        for seal in [
            SealFlags::WRITE,
            SealFlags::SHRINK,
            SealFlags::GROW,
            SealFlags::SEAL,
        ] {
            assert!(seals.contains(seal), "{seal:?} in {seals:?}");
        }
        assert_eq!(
            rustix::io::pwrite(sealed.file(), b"x", 0),
            Err(rustix::io::Errno::PERM)
        );
        assert!(rustix::fs::ftruncate(sealed.file(), 1).is_err());
        // SAFETY: an attempt that must fail; nothing is mapped if it does not.
        let writable = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                MIN_BYTES,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                sealed.file(),
                0,
            )
        };
        assert!(writable.is_err(), "no writable mapping of a sealed file");
    }

    #[test]
    fn the_budget_stops_at_its_maximum() {
        let open = AtomicUsize::new(0);
        assert!(take(&open, 2));
        assert!(take(&open, 2));
        assert!(!take(&open, 2), "a third file over a budget of two");
        assert_eq!(open.load(Ordering::Relaxed), 2, "a refusal counts nothing");
        open.fetch_sub(1, Ordering::Relaxed);
        assert!(take(&open, 2), "a closed file frees its place");
        assert!(!take(&AtomicUsize::new(0), 0));
    }

    #[test]
    fn small_and_empty_bodies_stay_on_the_heap() {
        let small = Bytes::from(body(MIN_BYTES - 1));
        let (bytes, sealed) = store(small.clone(), |b| b);
        assert!(sealed.is_none());
        assert_eq!(
            bytes.as_ptr(),
            small.as_ptr(),
            "the same buffer, not a copy"
        );
        assert!(SealedBody::seal(&[]).is_err());
    }
}
