//! The `cluster:` section: the Redis-protocol server's URL (never with a password in it), the
//! variable the password comes from, the key prefix, the operation timeout, the shared tier's
//! size cap and the fill lease's length. The same URL check serves `--cluster URL` on the
//! command line.

use std::time::Duration;

use redis::IntoConnectionInfo;

use super::super::defaults::*;
use super::super::file::*;
use super::super::model::*;
use super::{Problems, env_name, positive_ms};

/// The `cluster:` section: `Some(None)` when cluster mode is off (no `url`), `None` when the
/// section is wrong.
pub(super) fn cluster(c: &FileCluster, p: &mut Problems) -> Option<Option<ClusterSettings>> {
    let mut ok = true;
    let url = match c.url.as_deref().map(check_url) {
        None => None,
        Some(Ok(url)) => Some(url),
        Some(Err(why)) => {
            p.at("cluster.url", None, why);
            ok = false;
            None
        }
    };
    if !env_name(
        &c.password_env,
        "cluster.password_env",
        DEFAULT_CLUSTER_PASSWORD_ENV,
        p,
    ) {
        ok = false;
    }
    let prefix = &c.key_prefix;
    if prefix.is_empty()
        || prefix.len() > 64
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        let msg = format!(
            "{prefix:?} is not a key prefix; use 1 to 64 letters, digits, '_', '-', '.' or ':', \
             e.g. key_prefix: {DEFAULT_CLUSTER_KEY_PREFIX}"
        );
        p.at("cluster.key_prefix", None, msg);
        ok = false;
    }
    let timeout = positive_ms(c.timeout_ms, "cluster.timeout_ms", p);
    let lease = positive_ms(c.lease_ms, "cluster.lease_ms", p);
    if !ok {
        return None;
    }
    let (timeout, lease): (Duration, Duration) = (timeout?, lease?);
    Some(url.map(|url| ClusterSettings {
        url,
        password_env: c.password_env.clone(),
        key_prefix: prefix.clone(),
        timeout,
        // Beyond what a `usize` holds nothing is that large anyway.
        shared_max_object_bytes: usize::try_from(c.shared_max_object_bytes).unwrap_or(usize::MAX),
        lease,
    }))
}

/// A `redis://` or `rediss://` URL without a password, as `cluster.url` and `--cluster` take
/// it; the message says what is wrong and how to write it.
pub(crate) fn check_url(url: &str) -> Result<String, String> {
    let example = "write e.g. redis://127.0.0.1:6379/0, or rediss://redis.example:6380/0 for TLS";
    if let Some((scheme, _)) = url.split_once("://")
        && !matches!(scheme, "redis" | "rediss")
    {
        return Err(format!(
            "{url:?} has the scheme {scheme:?}; knitcache speaks redis:// and rediss:// (TLS); \
             {example}"
        ));
    }
    let Some(parsed) = redis::parse_redis_url(url) else {
        return Err(format!("{url:?} is not a URL; {example}"));
    };
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(format!(
            "{url:?} has the scheme {:?}; knitcache speaks redis:// and rediss:// (TLS); {example}",
            parsed.scheme()
        ));
    }
    if parsed.password().is_some() {
        return Err(format!(
            "the URL carries a password, which must not be written in a file; remove it and set \
             the environment variable named by cluster.password_env \
             ({DEFAULT_CLUSTER_PASSWORD_ENV} by default) instead"
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} names no host; {example}"));
    }
    // The client's own reading of it (database number, TLS) is the last word.
    if let Err(e) = url.into_connection_info() {
        return Err(format!("{url:?} is not a Redis URL ({e}); {example}"));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::check_url;

    fn problems(cluster_yaml: &str) -> String {
        let yaml = format!("upstream:\n  address: \"127.0.0.1:5007\"\ncluster:\n{cluster_yaml}");
        match crate::config::parse(&yaml, "t.yaml") {
            Ok(c) => panic!("accepted: {:?}", c.cluster),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_section_is_off_unless_a_url_is_given_and_each_key_is_checked() {
        let off = crate::config::parse(
            "upstream:\n  address: \"127.0.0.1:5007\"\ncluster:\n  key_prefix: x\n",
            "t.yaml",
        )
        .expect("valid");
        assert_eq!(off.cluster, None);
        let on = crate::config::parse(
            "upstream:\n  address: \"127.0.0.1:5007\"\ncluster:\n  url: redis://r:6379/2\n",
            "t.yaml",
        )
        .expect("valid");
        let on = on.cluster.expect("on");
        assert_eq!(
            (on.url.as_str(), on.key_prefix.as_str()),
            ("redis://r:6379/2", "knitcache")
        );
        let e = problems("  url: \"redis://:pw@r:6379\"\n");
        assert!(
            e.contains("cluster.url") && e.contains("password_env"),
            "{e}"
        );
        let e = problems("  url: redis://r\n  key_prefix: \"a b\"\n");
        assert!(
            e.contains("cluster.key_prefix") && e.contains("key_prefix: knitcache"),
            "{e}"
        );
        let e = problems("  url: redis://r\n  password_env: \"1-x\"\n");
        assert!(e.contains("cluster.password_env"), "{e}");
        let e = problems("  url: redis://r\n  timeout_ms: 0\n");
        assert!(
            e.contains("cluster.timeout_ms") && e.contains("timeout_ms: 500"),
            "{e}"
        );
        let e = problems("  url: redis://r\n  lease_ms: 0\n");
        assert!(
            e.contains("cluster.lease_ms") && e.contains("lease_ms: 30000"),
            "{e}"
        );
        let e = problems("  uri: redis://r\n");
        assert!(e.contains("cluster.uri"), "an unknown key is named: {e}");
    }

    #[test]
    fn urls_are_redis_or_rediss_without_a_password() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://redis.example:6380/1").is_ok());
        assert!(check_url("redis://user@127.0.0.1:6379").is_ok());
        let secret = check_url("redis://:hunter2@127.0.0.1:6379").expect_err("password");
        assert!(secret.contains("password_env"), "{secret}");
        assert!(
            !secret.contains("hunter2"),
            "the message never repeats it: {secret}"
        );
        assert!(
            check_url("http://127.0.0.1:6379")
                .expect_err("scheme")
                .contains("scheme")
        );
        assert!(check_url("127.0.0.1:6379").is_err());
        assert!(check_url("redis://127.0.0.1:6379/notanumber").is_err());
    }
}
