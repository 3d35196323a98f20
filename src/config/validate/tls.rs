//! `listen_tls` and `tls:`: the HTTPS listener's address, its certificate and key (read and
//! checked as a pair here, so `knitcache check` and a reload report a bad file before it is
//! used), the redirect from plain HTTP and HSTS.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::file::*;
use super::super::model::*;
use super::Problems;
use super::listen::{address, clash};

/// `listen_tls` and `tls:`; `others` are the plain listeners it must not share a port with.
/// `Some(None)`: valid, no TLS; `None`: a problem was reported.
pub(super) fn tls(
    file: &FileConfig,
    others: [(Option<SocketAddr>, &str); 2],
    p: &mut Problems,
) -> Option<Option<TlsSettings>> {
    let t = &file.tls;
    let Some(text) = &file.listen_tls else {
        let set: Vec<&str> = [
            ("tls.cert_file", t.cert_file.is_some()),
            ("tls.key_file", t.key_file.is_some()),
            ("tls.redirect_http", t.redirect_http),
            ("tls.hsts_max_age_secs", t.hsts_max_age_secs > 0),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if let Some(first) = set.first() {
            let msg = format!(
                "{} set but listen_tls is not, so nothing would use it; add listen_tls: \
                 \"0.0.0.0:5443\" to turn HTTPS on, or remove the tls: section",
                set.join(", ")
            );
            p.at(first, None, msg);
            return None;
        }
        return Some(None);
    };
    let listen = address(text, "listen_tls", "0.0.0.0:5443", p);
    if let Some(listen) = listen {
        for (other, key) in others {
            if let Some(other) = other
                && clash(listen, other)
            {
                let msg = format!(
                    "{listen} uses the same port as {key} = {other}; HTTPS needs a port of its \
                     own, e.g. listen_tls: \"0.0.0.0:5443\""
                );
                p.at("listen_tls", None, msg);
                return None;
            }
        }
    }
    let mut files = Vec::new();
    for (key, value, example) in [
        (
            "tls.cert_file",
            &t.cert_file,
            "/etc/knitcache/tls/fullchain.pem",
        ),
        (
            "tls.key_file",
            &t.key_file,
            "/etc/knitcache/tls/privkey.pem",
        ),
    ] {
        match value {
            Some(path) => files.push(path.clone()),
            None => p.at(
                key,
                None,
                format!(
                    "listen_tls is set but {key} is not; write the PEM file, e.g. {key}: {example}"
                ),
            ),
        }
    }
    let [cert_file, key_file] = <[_; 2]>::try_from(files).ok()?;
    if let Err(e) = crate::tls::load_pair(&cert_file, &key_file) {
        p.at(e.which.key(), None, e.message);
        return None;
    }
    let listen = listen?;
    Some(Some(TlsSettings {
        listen,
        cert_file,
        key_file,
        redirect_http: t.redirect_http,
        hsts_max_age: (t.hsts_max_age_secs > 0).then(|| Duration::from_secs(t.hsts_max_age_secs)),
    }))
}
