//! The `upstream:` section: the ERP's address, its timeouts, the health probe, and the form its
//! request targets are brought to (with what that form allows of the routes' keys).

use std::net::SocketAddr;

use crate::canonical::Form;

use super::super::defaults::*;
use super::super::file::*;
use super::super::model::*;
use super::listen::{address, loops_back};
use super::{Problems, positive_ms};

/// The `upstream:` section; `own` are the proxy's listen and admin addresses, which the ERP's
/// address must not be.
pub(super) fn upstream(
    file: Option<&FileUpstream>,
    own: [Option<SocketAddr>; 2],
    p: &mut Problems,
) -> Option<UpstreamSettings> {
    let Some(u) = file else {
        let msg = "missing; knitcache needs the ERP's address: add upstream: { address: \
                   \"127.0.0.1:5007\" } (the port the ERP listens on, its APP_PORT)";
        p.at("upstream", None, msg.to_owned());
        return None;
    };
    let address = match &u.address {
        None => {
            let msg = "missing; add address: \"127.0.0.1:5007\" under upstream: (the port the ERP \
                       listens on, its APP_PORT)";
            p.at("upstream.address", None, msg.to_owned());
            None
        }
        Some(text) => address(text, "upstream.address", "127.0.0.1:5007", p),
    };
    let address = address.filter(|a| {
        let problem = if a.ip().is_unspecified() {
            Some(format!(
                "{a} is a listen address, not a destination; write the ERP's address, e.g. \
                 \"127.0.0.1:{}\"",
                a.port()
            ))
        } else if a.port() == 0 {
            Some(format!(
                "{a} has port 0, which no server listens on; write the ERP's port"
            ))
        } else if let Some((key, own)) = ["listen", "admin_listen"]
            .into_iter()
            .zip(own)
            .find_map(|(key, own)| own.filter(|own| loops_back(*own, *a)).map(|own| (key, own)))
        {
            Some(format!(
                "{a} is knitcache's own {key} address ({own}), so requests would loop back into \
                 the proxy; run the ERP on another port (its APP_PORT, e.g. 5007) and point \
                 upstream.address there"
            ))
        } else {
            None
        };
        let ok = problem.is_none();
        if let Some(msg) = problem {
            p.at("upstream.address", None, msg);
        }
        ok
    });
    let connect = positive_ms(u.connect_timeout_ms, "upstream.connect_timeout_ms", p);
    let read = positive_ms(u.read_timeout_ms, "upstream.read_timeout_ms", p);
    let write = positive_ms(u.write_timeout_ms, "upstream.write_timeout_ms", p);
    let health_path = health_path(&u.health_path, p);
    let interval = positive_ms(u.health_interval_ms, "upstream.health_interval_ms", p);
    let timeout = positive_ms(u.health_timeout_ms, "upstream.health_timeout_ms", p);
    if let (Some(i), Some(t)) = (interval, timeout)
        && t > i
    {
        let msg = format!(
            "health_timeout_ms = {} is longer than health_interval_ms = {}, so probes would \
             overlap; set health_timeout_ms at most {}",
            t.as_millis(),
            i.as_millis(),
            i.as_millis()
        );
        p.at("upstream.health_timeout_ms", None, msg);
    }
    Some(UpstreamSettings {
        address: address?,
        connect_timeout: connect?,
        read_timeout: read?,
        write_timeout: write?,
        health_path: health_path?,
        health_interval: interval?,
        health_timeout: timeout?,
        url_form: match u.url_form {
            FileUrlForm::Wsgi => Form::Wsgi,
            FileUrlForm::Rfc3986 => Form::Rfc3986,
        },
    })
}

/// The health probe's path: an absolute path (a query is allowed), printable ASCII, no spaces.
fn health_path(path: &str, p: &mut Problems) -> Option<String> {
    let problem = if !path.starts_with('/') {
        Some(format!(
            "{path:?} does not start with /; write a path the ERP answers in both of its modes, \
             e.g. health_path: {DEFAULT_HEALTH_PATH}"
        ))
    } else if !path.bytes().all(|b| b.is_ascii_graphic()) {
        Some(format!(
            "{path:?} contains spaces or characters that cannot appear in a request line; \
             percent-encode them, e.g. health_path: {DEFAULT_HEALTH_PATH}"
        ))
    } else {
        None
    };
    match problem {
        Some(msg) => {
            p.at("upstream.health_path", None, msg);
            None
        }
        None => Some(path.to_owned()),
    }
}

/// A key of some parameters (`only`, `ignore`) is safe only where knitcache reads a query as the
/// origin does: the WSGI form sends the origin parameters split the one way the key splits them.
/// An origin read in RFC 3986's form may also split on `;` or read `+` as it likes, so a
/// parameter the key leaves out could change its answer: only a key of every parameter is
/// allowed there.
pub(super) fn partial_keys_need_wsgi(file: &FileConfig, form: Form, p: &mut Problems) {
    if form == Form::Wsgi {
        return;
    }
    let msg = |kind| {
        format!(
            "query_key: {kind} needs upstream.url_form: wsgi; with rfc3986 the origin may read \
             parameters the key leaves out (split on ;, + kept), and one client's choice would \
             be served to the others; use query_key: all, or url_form: wsgi if the origin is a \
             WSGI application"
        )
    };
    let kind = |q: &FileQueryKey| match q {
        FileQueryKey::All => None,
        FileQueryKey::Only(_) => Some("{ only }"),
        FileQueryKey::Ignore(_) => Some("{ ignore }"),
    };
    let defaults = kind(&file.defaults.query_key);
    if let Some(k) = defaults {
        p.at("defaults.query_key", None, msg(k));
    }
    for (i, r) in file.routes.iter().enumerate() {
        if let Some(k) = r.query_key.as_ref().and_then(kind) {
            p.at(&format!("routes[{i}].query_key"), r.name.as_deref(), msg(k));
        }
    }
}
