//! The proxy's TLS certificate: reading the certificate chain and private key from their PEM
//! files, checking that they belong together, and the live certificate the TLS listener
//! presents, replaced in place on a reload.
//!
//! rustls asks a resolver for the certificate at each handshake, so swapping the resolver's
//! certificate changes what new connections get while connections already established keep
//! the session keys they negotiated: nothing is dropped. Protocol versions are TLS 1.2 and 1.3
//! with rustls' default cipher suites (`proxy::tls_termination`); the key is held by rustls'
//! `ring` provider.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Which of the two files a problem is about, by its config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `tls.cert_file`.
    Cert,
    /// `tls.key_file`.
    Key,
}

impl Which {
    /// The config key naming the file.
    pub fn key(self) -> &'static str {
        match self {
            Which::Cert => "tls.cert_file",
            Which::Key => "tls.key_file",
        }
    }
}

/// Why a certificate and key cannot be used, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file at fault (`Cert` when the two do not match).
    pub which: Which,
    /// What is wrong and what to do, without the key's name.
    pub message: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.which.key(), self.message)
    }
}

impl std::error::Error for TlsError {}

fn problem(which: Which, message: String) -> TlsError {
    TlsError { which, message }
}

/// Reads `cert_file` (the leaf certificate first, then its intermediates) and `key_file` (PKCS#8,
/// PKCS#1 or SEC1, in PEM) and checks that the key is the certificate's.
pub fn load_pair(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    let provider = provider()?;
    CertifiedKey::from_der(certs, key, &provider)
        .map(Arc::new)
        .map_err(|e| {
            problem(
                Which::Cert,
                format!(
                    "{} and {} do not belong together ({e}); give tls.key_file the private key \
                     the certificate was issued for, and put the server's own certificate first \
                     in tls.cert_file",
                    cert_file.display(),
                    key_file.display()
                ),
            )
        })
}

/// Makes `ring` the process's rustls crypto provider, unless one is installed already.
pub fn install_provider() {
    // rustls marks `ring` deprecated for lacking post-quantum key exchange; the provider that
    // has it (aws-lc-rs) needs cmake and a C toolchain in every build. TLS 1.2 and 1.3 with
    // X25519 and the P-curves are what `ring` offers, as pingora's own listener did.
    #[allow(deprecated)]
    let ring = tokio_rustls::rustls::crypto::ring::default_provider();
    // An error means another provider was installed first, which serves as well.
    let _ = ring.install_default();
}

/// The process's rustls crypto provider: `ring` (no C toolchain, no cmake).
fn provider() -> Result<Arc<CryptoProvider>, TlsError> {
    install_provider();
    CryptoProvider::get_default().cloned().ok_or_else(|| {
        problem(
            Which::Key,
            "no TLS crypto provider is installed in this process".to_owned(),
        )
    })
}

fn read(path: &Path, which: Which) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        problem(
            which,
            format!(
                "cannot read {}: {e}; check the path and that the user running knitcache may \
                 read it",
                path.display()
            ),
        )
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, Which::Cert)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(problem(
            Which::Cert,
            format!(
                "{} holds no certificate; give a PEM file with a \"-----BEGIN CERTIFICATE-----\" \
                 block (the server's certificate first, then its intermediates)",
                path.display()
            ),
        )),
        Err(e) => Err(problem(
            Which::Cert,
            format!(
                "{} is not a readable PEM certificate file ({e}); give the certificate chain in \
                 PEM",
                path.display()
            ),
        )),
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, Which::Key)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => "holds no private key".to_owned(),
            e => format!("is not a readable PEM private key ({e})"),
        };
        problem(
            Which::Key,
            format!(
                "{} {why}; give the certificate's private key in PEM (\"-----BEGIN PRIVATE \
                 KEY-----\", RSA or EC), unencrypted",
                path.display()
            ),
        )
    })
}

/// The certificate the TLS listener presents, replaceable while connections are open.
#[derive(Debug)]
pub struct LiveCert {
    current: ArcSwap<CertifiedKey>,
}

impl LiveCert {
    /// Starts with the pair in `cert_file` and `key_file`.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<LiveCert>, TlsError> {
        let pair = load_pair(cert_file, key_file)?;
        Ok(Arc::new(LiveCert {
            current: ArcSwap::new(pair),
        }))
    }

    /// Reads the pair again (the files may have been replaced, or named anew) and presents it
    /// to the next handshakes. On an error nothing changes.
    pub fn reload(&self, cert_file: &Path, key_file: &Path) -> Result<(), TlsError> {
        let pair = load_pair(cert_file, key_file)?;
        self.current.store(pair);
        tracing::info!(
            cert = %cert_file.display(),
            key = %key_file.display(),
            "TLS certificate loaded; new connections get it"
        );
        Ok(())
    }
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
