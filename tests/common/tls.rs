//! TLS for tests: a certificate authority made at test time (rcgen), leaf certificates it signs
//! written as PEM files for the proxy, and clients that trust only that CA, speaking HTTP/1.1
//! (hyper) or HTTP/2 (h2) over one kept connection, so a test can count what each request did
//! and keep a connection across a certificate change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::{Resp, TIMEOUT};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate's PEM files, and its DER form to compare with what a client was shown.
pub struct Leaf {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA's certificate, for a client's trust store.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA's certificate to `path` as PEM, for a client that reads its trust from
    /// a file (`SSL_CERT_FILE`). Returns `path`.
    pub fn write_pem(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.issuer.pem()).expect("write CA certificate");
        path.to_path_buf()
    }

    /// A certificate for `localhost` and `127.0.0.1` signed by this CA, written to
    /// `dir/stem.crt` and `dir/stem.key` (the leaf, then the CA, as a chain file carries it).
    pub fn leaf(&self, dir: &Path, stem: &str) -> Leaf {
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let cert_file = dir.join(format!("{stem}.crt"));
        let key_file = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_file, format!("{}{}", cert.pem(), self.issuer.pem()))
            .expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        Leaf {
            cert_file,
            key_file,
            der: cert.der().clone(),
        }
    }
}

/// A TLS connection to `addr` trusting only `ca`, offering `alpn` (e.g. `[b"h2", b"http/1.1"]`).
pub async fn connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    try_connect(addr, ca, alpn).await.expect("TLS handshake")
}

/// As `connect`, with the handshake's error instead of a panic.
pub async fn try_connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    // The provider the proxy installs (ring), so this process has only one.
    knitcache::tls::install_provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("CA into the trust store");
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(
        TIMEOUT,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// The ALPN protocol the server chose.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// The certificate the server presented (the leaf).
pub fn server_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates")[0]
        .clone()
}

/// An HTTP/1.1 connection over TLS, reused for every request.
pub struct H1 {
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl H1 {
    /// HTTP/1.1 on `stream` (which should have negotiated `http/1.1` or nothing).
    pub async fn on(stream: TlsStream<TcpStream>) -> H1 {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        H1 { send }
    }

    /// `method path` with `headers`, read whole.
    pub async fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new()).expect("request");
        let send = async {
            self.send.ready().await.expect("connection ready");
            let resp = self.send.send_request(req).await.expect("response");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            }
        };
        tokio::time::timeout(TIMEOUT, send)
            .await
            .expect("HTTP/1.1 request timed out")
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, &[]).await
    }
}

/// An HTTP/2 connection, one stream per request.
#[derive(Clone)]
pub struct H2 {
    send: h2::client::SendRequest<Bytes>,
}

impl H2 {
    /// HTTP/2 on `stream` (TLS that negotiated `h2`, or plain TCP for h2c prior knowledge).
    pub async fn on<S>(stream: S) -> H2
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = h2::client::handshake(stream)
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        H2 { send }
    }

    /// `method path` with `headers`, read whole.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(()).expect("request");
        let send = async {
            let mut send = self.send.clone().ready().await.expect("connection ready");
            let (resp, _) = send.send_request(req, true).expect("stream opened");
            let resp = resp.await.expect("response");
            let (parts, mut body) = resp.into_parts();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("body chunk");
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: Bytes::from(bytes),
            }
        };
        tokio::time::timeout(TIMEOUT, send)
            .await
            .expect("HTTP/2 request timed out")
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[]).await
    }

    /// The connection's request handle, for a request built by hand.
    pub fn sender(&self) -> h2::client::SendRequest<Bytes> {
        self.send.clone()
    }
}
