//! Small constructors for the admin listener's answers, one per status, so every endpoint says
//! what went wrong the same way: plain text for errors, JSON for data.

use http::{HeaderValue, Response, StatusCode, header};

/// An admin answer.
pub type Answer = Response<Vec<u8>>;

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Answer {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Admin data is live: never let a browser or a proxy keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn plain(status: StatusCode, reason: &str) -> Answer {
    let mut body = reason.as_bytes().to_vec();
    body.push(b'\n');
    respond(status, "text/plain; charset=utf-8", body)
}

/// 200 with a plain-text body.
pub fn text(body: &str) -> Answer {
    plain(StatusCode::OK, body)
}

/// `status` with a JSON body.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Answer {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(e) => internal_error(&format!("cannot encode the answer as JSON: {e}")),
    }
}

/// 200 with the Prometheus text exposition.
pub fn metrics(body: Vec<u8>) -> Answer {
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        body,
    )
}

/// 200 with an HTML page.
pub fn html(body: &'static str) -> Answer {
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

/// 400: the request itself is wrong; `reason` says how.
pub fn bad_request(reason: &str) -> Answer {
    plain(StatusCode::BAD_REQUEST, reason)
}

/// 401 with a bearer challenge.
pub fn unauthorized(reason: &str) -> Answer {
    let mut resp = plain(StatusCode::UNAUTHORIZED, reason);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"knitcache admin\""),
    );
    resp
}

/// 401 for a protected read: asks for Basic first (a browser then prompts, see `read_auth`),
/// and names Bearer for clients that send the token as it is.
pub fn unauthorized_read(reason: &str) -> Answer {
    let mut resp = plain(StatusCode::UNAUTHORIZED, reason);
    let h = resp.headers_mut();
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"knitcache admin\", charset=\"UTF-8\""),
    );
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"knitcache admin\""),
    );
    resp
}

/// 403: this client may not do this at all.
pub fn forbidden(reason: &str) -> Answer {
    plain(StatusCode::FORBIDDEN, reason)
}

/// 404: no such endpoint (or no such thing to act on).
pub fn not_found(reason: &str) -> Answer {
    plain(StatusCode::NOT_FOUND, reason)
}

/// 405 with the methods the endpoint accepts.
pub fn method_not_allowed(allow: &'static str) -> Answer {
    let mut resp = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// 413: the body is larger than the endpoint reads.
pub fn payload_too_large(limit: usize) -> Answer {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body over {limit} bytes"),
    )
}

/// 500: something on our side failed.
pub fn internal_error(reason: &str) -> Answer {
    plain(StatusCode::INTERNAL_SERVER_ERROR, reason)
}
