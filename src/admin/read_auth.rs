//! Who may read `/stats`, `/metrics` and `/dashboard` when `admin.protect_reads` is on: the
//! holder of the admin token. It is accepted two ways:
//!
//! * `Authorization: Bearer <token>`: Prometheus (`authorization` / `bearer_token_file` in a
//!   scrape config, `bearerTokenSecret` in a ServiceMonitor), curl, scripts;
//! * HTTP Basic with any user name and the token as the password: what a browser sends for the
//!   dashboard. The 401 asks for Basic, so the browser prompts once; it then sends the same
//!   credentials with the page's same-origin `fetch('/stats')` (fetch's `credentials:
//!   'same-origin'`), so the page logs in without code of its own and never holds the token.
//!
//! Both compare in constant time (`purge::constant_time_eq`). `/healthz` and `/readyz` stay open:
//! the kubelet's probes carry no credentials, and they publish nothing secret.

use base64::Engine;

use super::purge::constant_time_eq;

/// Whether `authorization` (the request's header value) carries `token`.
pub fn allowed(token: &str, authorization: Option<&[u8]>) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some((scheme, credentials)) = split_scheme(value) else {
        return false;
    };
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return constant_time_eq(credentials, token.as_bytes());
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        // `user:password`; the user name is not checked (browsers make the user type one).
        return decoded
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| constant_time_eq(&decoded[colon + 1..], token.as_bytes()));
    }
    false
}

/// `Scheme credentials` split at the first space, credentials without surrounding spaces.
pub(crate) fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|&b| b == b' ')?;
    // The trim takes the separating space too.
    let credentials = value[space..].trim_ascii();
    Some((&value[..space], credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn basic(user_pass: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
        format!("Basic {encoded}").into_bytes()
    }

    #[test]
    fn bearer_and_basic_with_the_token_are_allowed() {
        for v in [
            format!("Bearer {TOKEN}").into_bytes(),
            format!("bearer  {TOKEN} ").into_bytes(),
            basic(&format!("admin:{TOKEN}")),
            basic(&format!(":{TOKEN}")),
        ] {
            assert!(allowed(TOKEN, Some(&v)), "{}", String::from_utf8_lossy(&v));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for v in [
            b"Bearer wrong-token-0123456789".to_vec(),
            format!("Bearer {TOKEN}x").into_bytes(),
            basic(&format!("{TOKEN}:")),
            basic(TOKEN),
            b"Basic !!!not-base64".to_vec(),
            format!("Token {TOKEN}").into_bytes(),
            TOKEN.as_bytes().to_vec(),
        ] {
            assert!(!allowed(TOKEN, Some(&v)), "{}", String::from_utf8_lossy(&v));
        }
        assert!(!allowed(TOKEN, None));
    }
}
