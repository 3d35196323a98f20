//! Forward authentication: an external service decides, by the convention of nginx's
//! `auth_request`, Traefik's ForwardAuth and Caddy's `forward_auth`, so a company can put its
//! SSO (oauth2-proxy, Authelia, Authentik) in front of the ERP.
//!
//! For each request the gate sends the service a `GET` of the configured URL through the one
//! HTTP client (`http_client`), carrying the original request in `X-Forwarded-Method`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Uri` and `X-Forwarded-For`, and the
//! client's credentials (`Authorization`, `Cookie`). Then:
//! * a `2xx` admits the request, and the configured response fields (e.g. `Remote-User`) are
//!   set on the ERP's request, replacing any the client sent;
//! * any other answer is the client's answer: status, fields (`Location`, `WWW-Authenticate`,
//!   `Set-Cookie`, ...) and body, up to `max_body_bytes`, so a browser follows the SSO's
//!   redirect to its login page;
//! * no answer in time, a refused connection, or an answer the client cannot be given (larger
//!   than the bound, not HTTP) is a `503`: a failing auth service never opens the gate.
//!
//! An admission is remembered for `cache_secs` under a keyed hash of the credentials and the
//! request (method, host, target: services like Authelia decide per path), so a dashboard's
//! polls do not each cost a round trip. Refusals and failures are not remembered.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use pingora_http::RequestHeader;

use crate::http_client::{self, Get};

/// Admissions remembered at once.
const REMEMBERED: usize = 10_000;

/// The fields an admission copies onto the ERP's request.
type Fields = Vec<(HeaderName, HeaderValue)>;

/// What the auth service decided.
#[derive(Debug)]
pub enum Verdict {
    /// Admitted: these fields go onto the ERP's request (each configured name, with every value
    /// the service sent; names it did not send are absent).
    Allow(Fields),
    /// Refused: the service's answer, to be relayed to the client.
    Refuse(Refusal),
    /// The service could not be asked, or its answer cannot be relayed: `503`.
    Unavailable(String),
}

/// An auth service's refusal, as the client gets it.
#[derive(Debug)]
pub struct Refusal {
    /// Its status (never 2xx).
    pub status: u16,
    /// Its end-to-end fields (framing and hop-by-hop fields are the proxy's own).
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

/// A forward-auth service and the admissions remembered since the configuration was loaded.
pub struct ForwardAuth {
    addr: SocketAddr,
    path: String,
    host: String,
    copy_headers: Vec<HeaderName>,
    timeout: Duration,
    max_body_bytes: usize,
    key: [u8; 32],
    remember_for: Duration,
    remembered: quick_cache::sync::Cache<[u8; 32], (Instant, Fields)>,
}

impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("url", &format_args!("http://{}{}", self.host, self.path))
            .field("copy_headers", &self.copy_headers)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("remember_for", &self.remember_for)
            .finish()
    }
}

/// The settings of one service, as validated.
pub struct Settings {
    /// `http://IP:port/path?query`.
    pub url: http::Uri,
    /// Response fields copied onto the ERP's request.
    pub copy_headers: Vec<HeaderName>,
    /// The limit of the whole exchange with the service.
    pub timeout: Duration,
    /// Largest refusal body relayed.
    pub max_body_bytes: usize,
    /// How long an admission is remembered (zero: never).
    pub remember_for: Duration,
}

impl ForwardAuth {
    /// A service at `settings.url`; the URL must be `http://IP:port/...` (checked by the caller,
    /// which names the key; here only for the reason).
    pub fn new(settings: Settings) -> Result<ForwardAuth, String> {
        let url = &settings.url;
        if url.scheme_str() != Some("http") {
            return Err(
                "must start with http:// (the service is asked in plain HTTP/1.1, \
                        like the ERP; keep it on loopback or a private network)"
                    .to_owned(),
            );
        }
        let authority = url.authority().ok_or("has no IP:port")?;
        let ip: IpAddr = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| {
                "names a host, not an IP address (names are not resolved, as for \
                          upstream.address); write its IP, e.g. http://127.0.0.1:4180/..."
            })?;
        let addr = SocketAddr::new(ip, authority.port_u16().unwrap_or(80));
        let path = url
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness for the cache: {e}"))?;
        Ok(ForwardAuth {
            addr,
            path,
            host: authority.as_str().to_owned(),
            copy_headers: settings.copy_headers,
            timeout: settings.timeout,
            max_body_bytes: settings.max_body_bytes,
            key,
            remember_for: settings.remember_for,
            remembered: quick_cache::sync::Cache::new(REMEMBERED),
        })
    }

    /// The response fields copied onto the ERP's request; a client's own are removed first.
    pub fn copy_headers(&self) -> &[HeaderName] {
        &self.copy_headers
    }

    /// Asks the service about `req` (canonical) from `client`, received over TLS if `tls`.
    pub async fn check(&self, req: &RequestHeader, client: IpAddr, tls: bool) -> Verdict {
        let proto = if tls { "https" } else { "http" };
        let credentials = [header::AUTHORIZATION, header::COOKIE].map(|name| {
            let values: Vec<&[u8]> = req
                .headers
                .get_all(&name)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            (name, values)
        });
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let host = req
            .headers
            .get(header::HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()))
            .unwrap_or_default();
        let id = self.fingerprint(&credentials, req.method.as_str(), proto, host, target);
        if let Some((at, fields)) = self.remembered.get(&id)
            && at.elapsed() < self.remember_for
        {
            return Verdict::Allow(fields);
        }
        let mut get = Get::new(self.addr, &self.path)
            .host(&self.host)
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .body(http_client::Body::Keep {
                max_bytes: self.max_body_bytes,
            })
            .header(
                HeaderName::from_static("x-forwarded-method"),
                req.method.as_str(),
            )
            .header(HeaderName::from_static("x-forwarded-proto"), proto)
            .header(HeaderName::from_static("x-forwarded-uri"), target)
            .header(
                HeaderName::from_static("x-forwarded-for"),
                &client.to_string(),
            );
        if let Ok(host) = std::str::from_utf8(host)
            && !host.is_empty()
        {
            get = get.header(HeaderName::from_static("x-forwarded-host"), host);
        }
        for (name, values) in &credentials {
            // Values that are not text cannot be credentials a service reads; left out.
            let joined: Vec<&str> = values
                .iter()
                .filter_map(|v| std::str::from_utf8(v).ok())
                .collect();
            if !joined.is_empty() {
                let separator = if *name == header::COOKIE { "; " } else { ", " };
                get = get.header(name.clone(), &joined.join(separator));
            }
        }
        let answer = match get.send().await {
            Ok(answer) => answer,
            Err(e) => return Verdict::Unavailable(e.to_string()),
        };
        match answer.status {
            200..=299 => {
                let fields = self.fields_to_copy(&answer.headers);
                if !self.remember_for.is_zero() {
                    self.remembered.insert(id, (Instant::now(), fields.clone()));
                }
                Verdict::Allow(fields)
            }
            100..=199 => Verdict::Unavailable(format!(
                "the auth service answered {} (an interim status)",
                answer.status
            )),
            status => Verdict::Refuse(Refusal {
                status,
                headers: end_to_end(answer.headers),
                body: answer.body,
            }),
        }
    }

    fn fields_to_copy(&self, headers: &HeaderMap) -> Fields {
        self.copy_headers
            .iter()
            .flat_map(|name| {
                headers
                    .get_all(name)
                    .iter()
                    .map(move |v| (name.clone(), v.clone()))
            })
            .collect()
    }

    /// A keyed hash of what the decision may depend on: the credentials and the request.
    fn fingerprint(
        &self,
        credentials: &[(HeaderName, Vec<&[u8]>); 2],
        method: &str,
        proto: &str,
        host: &[u8],
        target: &str,
    ) -> [u8; 32] {
        let mut h = Blake2b::<U32>::new();
        h.update(self.key);
        // Every part is length-prefixed, so no two requests hash the same input.
        let mut part = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        for (_, values) in credentials {
            part(&(values.len() as u64).to_le_bytes());
            for v in values {
                part(v);
            }
        }
        part(method.as_bytes());
        part(proto.as_bytes());
        part(host);
        part(target.as_bytes());
        h.finalize().into()
    }
}

/// `headers` without the fields of a message's framing and of one connection (RFC 9110 §7.6.1):
/// the relayed answer gets its own.
fn end_to_end(mut headers: HeaderMap) -> HeaderMap {
    for name in [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(url: &str) -> Result<ForwardAuth, String> {
        ForwardAuth::new(Settings {
            url: url.parse().expect("uri"),
            copy_headers: vec![HeaderName::from_static("remote-user")],
            timeout: Duration::from_secs(1),
            max_body_bytes: 1024,
            remember_for: Duration::from_secs(30),
        })
    }

    #[test]
    fn urls_must_be_plain_http_to_an_address() {
        let s = service("http://127.0.0.1:4180/oauth2/auth?x=1").expect("valid");
        assert_eq!(s.addr, "127.0.0.1:4180".parse().expect("addr"));
        assert_eq!(s.path, "/oauth2/auth?x=1");
        assert_eq!(s.host, "127.0.0.1:4180");
        let s = service("http://[::1]/auth").expect("valid");
        assert_eq!(s.addr, "[::1]:80".parse().expect("addr"));
        assert!(
            service("https://127.0.0.1/auth")
                .expect_err("tls")
                .contains("http://")
        );
        assert!(
            service("http://auth.internal:4180/")
                .expect_err("name")
                .contains("IP")
        );
        assert!(
            format!("{:?}", service("http://127.0.0.1:1/a").expect("valid"))
                .contains("http://127.0.0.1:1/a")
        );
    }

    #[test]
    fn fingerprints_tell_credentials_and_requests_apart() {
        let s = service("http://127.0.0.1:1/").expect("valid");
        let creds = |auth: &'static [u8], cookie: &'static [u8]| {
            [
                (header::AUTHORIZATION, vec![auth]),
                (header::COOKIE, vec![cookie]),
            ]
        };
        let base = s.fingerprint(&creds(b"Bearer a", b""), "GET", "http", b"h", "/x");
        assert_eq!(
            base,
            s.fingerprint(&creds(b"Bearer a", b""), "GET", "http", b"h", "/x")
        );
        for other in [
            s.fingerprint(&creds(b"Bearer b", b""), "GET", "http", b"h", "/x"),
            s.fingerprint(&creds(b"", b"Bearer a"), "GET", "http", b"h", "/x"),
            s.fingerprint(&creds(b"Bearer a", b""), "POST", "http", b"h", "/x"),
            s.fingerprint(&creds(b"Bearer a", b""), "GET", "http", b"g", "/x"),
            s.fingerprint(&creds(b"Bearer a", b""), "GET", "http", b"h", "/y"),
            s.fingerprint(&creds(b"Bearer a", b""), "GET", "http", b"", "h/x"),
            s.fingerprint(&creds(b"Bearer a", b""), "GET", "https", b"h", "/x"),
        ] {
            assert_ne!(base, other);
        }
        let t = service("http://127.0.0.1:1/").expect("valid");
        assert_ne!(
            base,
            t.fingerprint(&creds(b"Bearer a", b""), "GET", "http", b"h", "/x"),
            "keyed"
        );
    }

    #[test]
    fn only_configured_fields_are_copied_and_framing_is_never_relayed() {
        let s = service("http://127.0.0.1:1/").expect("valid");
        let mut h = HeaderMap::new();
        h.append("remote-user", HeaderValue::from_static("alice"));
        h.append("remote-user", HeaderValue::from_static("alice2"));
        h.append("remote-email", HeaderValue::from_static("a@x"));
        // The proxy removes these names from the client's request before copying the
        // service's: a client cannot name itself.
        assert_eq!(s.copy_headers(), ["remote-user"]);
        let copied = s.fields_to_copy(&h);
        assert_eq!(copied.len(), 2);
        assert!(copied.iter().all(|(n, _)| n == "remote-user"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::LOCATION, HeaderValue::from_static("/login"));
        let relayed = end_to_end(h);
        assert!(relayed.get(header::CONTENT_LENGTH).is_none());
        assert!(relayed.get(header::CONNECTION).is_none());
        assert!(relayed.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(
            relayed.get(header::LOCATION).map(HeaderValue::as_bytes),
            Some(&b"/login"[..])
        );
    }
}
