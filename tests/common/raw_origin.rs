//! A scripted origin that writes exact bytes, for answers a well-behaved HTTP server never sends:
//! a body cut short of its `Content-Length`, a chunked body never terminated, a connection reset
//! in the middle of a body, bytes past the end of a response. The connection ends as the script
//! says, or stays open for the next request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the origin ends the connection after writing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// An orderly close (FIN).
    Close,
    /// A reset (RST: linger 0), after the bytes written have had time to be read.
    Reset,
    /// Nothing: the next request on the connection is read and answered.
    KeepOpen,
}

/// The bytes of one answer, written as they are, then the end.
#[derive(Debug, Clone)]
pub struct Script {
    pub bytes: Vec<u8>,
    pub end: End,
}

impl Script {
    /// A complete `200` with `body` and its `Content-Length`.
    pub fn complete(body: &[u8]) -> Script {
        let mut bytes =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend_from_slice(body);
        Script {
            bytes,
            end: End::Close,
        }
    }

    /// A `200` whose head says `Content-Length: announced` and whose body is `body` (shorter).
    pub fn cut(announced: usize, body: &[u8], end: End) -> Script {
        let mut bytes =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n").into_bytes();
        bytes.extend_from_slice(body);
        Script { bytes, end }
    }

    /// A chunked `200` of `body` in one chunk; `terminated` adds the last chunk (`0\r\n\r\n`).
    pub fn chunked(body: &[u8], terminated: bool) -> Script {
        let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        bytes.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(b"\r\n");
        if terminated {
            bytes.extend_from_slice(b"0\r\n\r\n");
        }
        Script {
            bytes,
            end: End::Close,
        }
    }
}

type Handler = Arc<dyn Fn(&str, usize) -> Script + Send + Sync>;

/// A running scripted origin. Dropping it stops accepting connections.
pub struct RawOrigin {
    addr: SocketAddr,
    /// Each request's path, and the number of the connection it came on.
    seen: Arc<Mutex<Vec<(String, usize)>>>,
    accept: JoinHandle<()>,
}

impl RawOrigin {
    /// Answers each request for a path with `script(path, n)`, `n` being how many requests for
    /// that path came before (the query is part of the path given).
    pub async fn start(
        script: impl Fn(&str, usize) -> Script + Send + Sync + 'static,
    ) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let seen: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
        let handler: Handler = Arc::new(script);
        let log = seen.clone();
        let accept = tokio::spawn(async move {
            let mut connections = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let (log, handler) = (log.clone(), handler.clone());
                let conn = Conn {
                    number: connections,
                    log,
                    handler,
                };
                connections += 1;
                tokio::spawn(async move { serve(stream, conn).await });
            }
        });
        RawOrigin { addr, seen, accept }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received for `path` (exactly, query included).
    pub fn count(&self, path: &str) -> usize {
        self.seen.lock().iter().filter(|(p, _)| p == path).count()
    }

    /// The numbers of the connections the requests for `path` came on, in order.
    pub fn connections(&self, path: &str) -> Vec<usize> {
        let seen = self.seen.lock();
        seen.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, c)| *c)
            .collect()
    }
}

/// One accepted connection: its number, and what it records and answers with.
struct Conn {
    number: usize,
    log: Arc<Mutex<Vec<(String, usize)>>>,
    handler: Handler,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(mut stream: TcpStream, conn: Conn) {
    loop {
        let Some(end) = answer(&mut stream, &conn).await else {
            return;
        };
        match end {
            End::KeepOpen => continue,
            End::Close => {
                let _ = stream.shutdown().await;
            }
            End::Reset => {
                // Let the proxy read what was written first: a reset discards unread input.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = stream.set_zero_linger();
            }
        }
        return;
    }
}

/// Reads one request head (GETs only: no body) and writes its script; how the script ends the
/// connection, or `None` if it closed first.
async fn answer(stream: &mut TcpStream, conn: &Conn) -> Option<End> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => head.push(byte[0]),
        }
    }
    let line = String::from_utf8_lossy(&head).into_owned();
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let n = {
        let mut log = conn.log.lock();
        let n = log.iter().filter(|(p, _)| *p == path).count();
        log.push((path.clone(), conn.number));
        n
    };
    let script = (conn.handler)(&path, n);
    stream.write_all(&script.bytes).await.ok()?;
    stream.flush().await.ok()?;
    Some(script.end)
}
