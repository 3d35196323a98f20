//! Writing a whole response straight to a client's socket, around pingora's HTTP/1 writer.
//!
//! A fresh hit is a header and a body that are both ready. pingora's writer serialises a
//! `ResponseHeader`, copies it and then the body through its buffer and body writer, and
//! flushes at the end: most of a small hit's remaining cost. Here the header goes out as bytes
//! made from a template, with the body in the same `writev`, or, for a body in a sealed file,
//! followed by `sendfile` from it.
//!
//! This is only for a plain-TCP HTTP/1 connection whose request has no body, with nothing of
//! the response written yet: then pingora's writer has nothing buffered, and after the request
//! it sees a connection with no response started, which it keeps alive or closes as
//! `Connection` said. TLS, HTTP/2 and requests with a body keep pingora's writer.
//!
//! The socket is non-blocking and registered with tokio's reactor by pingora. A write that
//! would block waits for writability on a duplicate of the descriptor, registered only while
//! it waits: most responses fit the socket's send buffer and never wait. Each wait is bounded
//! by the session's write timeout (`clients.send_timeout_ms`, as for pingora's own writer): a
//! client that stops reading loses its connection instead of holding the task forever.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use rustix::io::Errno;
use rustix::net::SendFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::cache::sealed_body::SealedBody;

/// A client's socket that a response may be written to directly.
pub struct ClientSocket<'a> {
    fd: BorrowedFd<'a>,
    keepalive: bool,
    /// Longest wait for the client to take more bytes; `None`: no limit.
    stall: Option<Duration>,
}

/// The client's socket of `session`, if its response may be written around pingora's writer:
/// HTTP/1 over plain TCP, a request without a body, and no response header sent yet.
pub fn client_socket(session: &Session) -> Option<ClientSocket<'_>> {
    let ServerSession::H1(h1) = session.as_downstream() else {
        return None;
    };
    if h1.response_written().is_some() || has_body(session.req_header()) {
        return None;
    }
    // A TLS stream is another type; only pingora's own TCP stream is written to in the clear.
    let tcp = h1.stream().as_any().downcast_ref::<L4Stream>()?;
    // SAFETY: the descriptor belongs to the session's stream, which outlives the borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(tcp.as_raw_fd()) };
    Some(ClientSocket {
        fd,
        keepalive: h1.will_keepalive(),
        stall: h1.get_write_timeout(),
    })
}

/// Whether the request carries a body: its reader would need draining first.
fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0")
}

impl ClientSocket<'_> {
    /// Whether the connection stays open after this response (the `Connection` value to send).
    pub fn keepalive(&self) -> bool {
        self.keepalive
    }

    /// Writes all of `parts`, in order, waiting while the socket's send buffer is full, each
    /// wait at most the write timeout (then the error is `TimedOut`). Returns the bytes
    /// written; on an error some may have been.
    pub async fn write_all(&self, mut left: &mut [IoSlice<'_>]) -> (usize, io::Result<()>) {
        let mut written = 0;
        let mut waiter: Option<AsyncFd<OwnedFd>> = None;
        while !left.is_empty() {
            match rustix::io::writev(self.fd, left) {
                Ok(n) => {
                    written += n;
                    IoSlice::advance_slices(&mut left, n);
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if let Err(e) = self.wait_writable(&mut waiter).await {
                        return (written, Err(e));
                    }
                }
                Err(e) => return (written, Err(e.into())),
            }
        }
        (written, Ok(()))
    }

    /// Writes `head`, then all of `body` from its sealed file with `sendfile` (the kernel takes
    /// references to its pages instead of copying them), waiting as `write_all` does. Returns
    /// the bytes written; on an error some may have been.
    pub async fn write_sealed(&self, head: &[u8], body: &SealedBody) -> (usize, io::Result<()>) {
        let mut waiter: Option<AsyncFd<OwnedFd>> = None;
        let mut sent = 0;
        // More follows: the header waits for the body's first pages instead of leaving alone.
        while sent < head.len() {
            match rustix::net::send(
                self.fd,
                &head[sent..],
                SendFlags::MORE | SendFlags::NOSIGNAL,
            ) {
                Ok(n) => sent += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if let Err(e) = self.wait_writable(&mut waiter).await {
                        return (sent, Err(e));
                    }
                }
                Err(e) => return (sent, Err(e.into())),
            }
        }
        let mut offset: u64 = 0;
        while (offset as usize) < body.len() {
            let left = body.len() - offset as usize;
            match rustix::fs::sendfile(self.fd, body.file(), Some(&mut offset), left) {
                // The file is sealed at its length: it cannot end early.
                Ok(0) => return (sent + offset as usize, Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if let Err(e) = self.wait_writable(&mut waiter).await {
                        return (sent + offset as usize, Err(e));
                    }
                }
                Err(e) => return (sent + offset as usize, Err(e.into())),
            }
        }
        (sent + body.len(), Ok(()))
    }

    /// Waits until the socket can take more, registering a duplicate of it on first use.
    async fn wait_writable(&self, waiter: &mut Option<AsyncFd<OwnedFd>>) -> io::Result<()> {
        let afd = match waiter {
            Some(afd) => afd,
            None => {
                let dup = self.fd.try_clone_to_owned()?;
                // SAFETY: `dup` is an open descriptor that the `AsyncFd` owns and closes.
                let afd = unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }
                    .map_err(io::Error::from)?;
                waiter.insert(afd)
            }
        };
        let mut ready = match self.stall {
            Some(stall) => tokio::time::timeout(stall, afd.writable())
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")
                })??,
            None => afd.writable().await?,
        };
        // The next write decides: if it would block again, the next wait re-arms.
        ready.clear_ready();
        Ok(())
    }
}
