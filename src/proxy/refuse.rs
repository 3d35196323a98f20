//! Responses the proxy writes itself instead of the ERP's: `400` for a target with no canonical
//! form, `401`/`403` for a client an access policy refuses, `429` over a rate limit, `503` when the
//! ERP cannot be asked, and the status for an ERP failure.

use std::time::Duration;

use bytes::Bytes;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::limits::rate::Limited;

/// `429 Too Many Requests` with `Retry-After` and the IETF `RateLimit`/`RateLimit-Policy`
/// headers (draft-ietf-httpapi-ratelimit-headers).
pub async fn too_many_requests(session: &mut Session, limited: &Limited) -> Result<()> {
    let secs = limited.retry_after_secs();
    let body = format!(
        "{{\"error\":\"rate limited\",\"class\":{},\"retry_after_secs\":{secs}}}\n",
        serde_json::Value::from(limited.class.as_str())
    );
    let mut h = ResponseHeader::build(429, Some(6))?;
    h.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
    h.insert_header("ratelimit-policy", limited.policy_header())?;
    h.insert_header("ratelimit", limited.limit_header())?;
    write(session, h, body).await
}

/// `503 Service Unavailable` with `Retry-After`, saying why the ERP was not asked.
pub async fn unavailable(session: &mut Session, retry_after: Duration, why: &Error) -> Result<()> {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let reason = match why.etype() {
        ErrorType::Custom(kind) => kind,
        _ => "upstream unavailable",
    };
    let body = format!("{{\"error\":\"{reason}\",\"retry_after_secs\":{secs}}}\n");
    let mut h = ResponseHeader::build(503, Some(4))?;
    h.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
    write(session, h, body).await
}

/// `400 Bad Request` for a request target with no canonical form (`canonical`), saying why.
pub async fn bad_target(session: &mut Session, why: crate::canonical::Rejection) -> Result<()> {
    let body = format!("{{\"error\":\"{why}\"}}\n");
    write(session, ResponseHeader::build(400, Some(3))?, body).await
}

/// `403 Forbidden` for a client an access policy refuses. The body names no rule, address or
/// route: a prober learns nothing but that it may not pass.
pub async fn forbidden(session: &mut Session) -> Result<()> {
    let body = "{\"error\":\"forbidden\"}\n".to_owned();
    write(session, ResponseHeader::build(403, Some(3))?, body).await
}

/// `401 Unauthorized` with a `Basic` challenge for `realm` (RFC 7617): the same answer for no
/// credentials, an unknown user and a wrong password.
pub async fn unauthorized(session: &mut Session, realm: &str) -> Result<()> {
    let body = "{\"error\":\"unauthorized\"}\n".to_owned();
    let mut h = ResponseHeader::build(401, Some(4))?;
    let challenge = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
    h.insert_header(http::header::WWW_AUTHENTICATE, challenge)?;
    write(session, h, body).await
}

/// A forward-auth service's refusal, relayed as it answered (its status, fields and body), so
/// a browser follows its redirect to the login page; never stored by anyone.
pub async fn relay(session: &mut Session, refusal: crate::access::forward::Refusal) -> Result<()> {
    let mut h = ResponseHeader::build(refusal.status, Some(refusal.headers.len() + 2))?;
    for (name, value) in &refusal.headers {
        h.append_header(name.clone(), value.clone())?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, refusal.body.len().to_string())?;
    if !h.headers.contains_key(http::header::CACHE_CONTROL) {
        h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(refusal.body), true).await
}

/// `503` when the forward-auth service could not be asked: the gate stays shut.
pub async fn auth_unavailable(session: &mut Session, retry_after: Duration) -> Result<()> {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let body =
        format!("{{\"error\":\"authentication unavailable\",\"retry_after_secs\":{secs}}}\n");
    let mut h = ResponseHeader::build(503, Some(4))?;
    h.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
    write(session, h, body).await
}

async fn write(session: &mut Session, mut h: ResponseHeader, body: String) -> Result<()> {
    h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(h), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

/// The status for a request that failed: the ERP's own 5xx, `504` for an ERP timeout, `502` for
/// any other ERP failure, `408` for a client too slow to send its body, `400` for a bad request,
/// `0` when the client is already gone (or stopped reading).
pub fn status_for(e: &Error) -> u16 {
    let downstream = e.esource() == &ErrorSource::Downstream;
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ReadTimedout if downstream => 408,
        ErrorType::WriteTimedout if downstream => 0,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => 504,
        ErrorType::Custom(k) if *k == crate::limits::TOTAL_TIMEOUT => 504,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(t: ErrorType, s: ErrorSource) -> Box<Error> {
        Error::create(t, s, None, None)
    }

    #[test]
    fn statuses_for_failures() {
        assert_eq!(
            status_for(&err(ErrorType::ReadTimedout, ErrorSource::Upstream)),
            504
        );
        assert_eq!(
            status_for(&err(ErrorType::ConnectRefused, ErrorSource::Upstream)),
            502
        );
        assert_eq!(
            status_for(&err(ErrorType::HTTPStatus(503), ErrorSource::Upstream)),
            503
        );
        assert_eq!(
            status_for(&err(ErrorType::InvalidHTTPHeader, ErrorSource::Downstream)),
            400
        );
        assert_eq!(
            status_for(&err(ErrorType::WriteError, ErrorSource::Downstream)),
            0
        );
        assert_eq!(
            status_for(&err(ErrorType::ReadTimedout, ErrorSource::Downstream)),
            408,
            "a client too slow with its body"
        );
        assert_eq!(
            status_for(&err(ErrorType::WriteTimedout, ErrorSource::Downstream)),
            0,
            "a client that stopped reading gets nothing more"
        );
    }
}
