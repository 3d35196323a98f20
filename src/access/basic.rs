//! HTTP Basic against an htpasswd file: the login of small sites, where a few people share the
//! ERP and an SSO would be too much.
//!
//! The file is Apache's format, `user:hash` per line (`htpasswd -B` for bcrypt; argon2 PHC
//! strings as `argon2` writes them). Only slow, salted hashes are accepted: the MD5, SHA-1 and
//! crypt(3) forms of old htpasswd files are refused when the file is read, with the fix.
//!
//! * Verification runs on tokio's blocking pool (a bcrypt check takes tens of milliseconds,
//!   which would stall every request on the worker thread), at most [`MAX_VERIFYING`] at once,
//!   so a flood of guesses costs a bounded share of the CPU.
//! * A successful check is remembered for `cache` under a keyed hash of the credentials (the key
//!   is random per loaded file and never leaves the process), so a dashboard's polls cost a
//!   hash lookup, not a bcrypt run. Failures are not remembered.
//! * An unknown user is verified against a real hash of the file all the same, and refused with
//!   the same answer as a wrong password: neither the response nor its timing tells which.
//! * The file is read with the configuration, so a reload (SIGHUP, `--watch-config`) reads it
//!   again and starts with nothing remembered: a removed user is out at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};

/// Checks run at once on the blocking pool; more wait for a turn.
pub const MAX_VERIFYING: usize = 2;

/// Successful checks remembered at once.
const REMEMBERED: usize = 10_000;

/// A stored password hash, of a kind verified in constant time by its crate.
#[derive(Clone)]
enum Hash {
    /// `$2a$`, `$2b$`, `$2x$` or `$2y$` (the `bcrypt` crate).
    Bcrypt(String),
    /// A PHC string `$argon2id$…` (or `argon2i`, `argon2d`; the `argon2` crate).
    Argon2(String),
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, &'static str> {
        if text.starts_with("$2") {
            return text
                .parse::<bcrypt::HashParts>()
                .map(|_| Hash::Bcrypt(text.to_owned()))
                .map_err(|_| "is not a valid bcrypt hash");
        }
        if text.starts_with("$argon2") {
            return argon2::PasswordHash::new(text)
                .map(|_| Hash::Argon2(text.to_owned()))
                .map_err(|_| "is not a valid argon2 hash");
        }
        Err(
            "is not a bcrypt or argon2 hash (MD5 `$apr1$`, SHA-1 `{SHA}`, crypt and plain text \
             are too fast to guess against)",
        )
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Argon2(h) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(h).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok()
                })
            }
        }
    }
}

/// One loaded htpasswd file, with the successful checks remembered since it was read.
pub struct Htpasswd {
    path: PathBuf,
    users: HashMap<String, Hash>,
    /// Verified for an unknown user, so that it costs what a known one does.
    decoy: Hash,
    key: [u8; 32],
    remember_for: Duration,
    remembered: quick_cache::sync::Cache<[u8; 32], Instant>,
    turns: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Htpasswd {
    /// The path and the number of users; never a name or a hash (the configuration's `Debug`
    /// is published as its version and printed in logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("path", &self.path)
            .field("users", &self.users.len())
            .field("remember_for", &self.remember_for)
            .finish()
    }
}

impl Htpasswd {
    /// Reads and checks `path`; a problem names the line and the fix.
    pub fn load(path: &Path, remember_for: Duration) -> Result<Htpasswd, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(path, &text, remember_for)
    }

    fn parse(path: &Path, text: &str, remember_for: Duration) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        let mut first = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{} line {}", path.display(), i + 1);
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!(
                    "{at} is not `user:hash`; write one user per line, e.g. with \
                     `htpasswd -B {} NAME`",
                    path.display()
                ));
            };
            let hash = Hash::parse(hash).map_err(|why| {
                format!(
                    "{at}: the hash of {user:?} {why}; set it again with `htpasswd -B {} {user}`",
                    path.display()
                )
            })?;
            if users.insert(user.to_owned(), hash.clone()).is_some() {
                return Err(format!(
                    "{at}: {user:?} appears twice; keep one line per user"
                ));
            }
            first.get_or_insert(hash);
        }
        let Some(decoy) = first else {
            return Err(format!(
                "{} has no users, so nobody could log in; add one with `htpasswd -B {} NAME`",
                path.display(),
                path.display()
            ));
        };
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness for the check cache: {e}"))?;
        Ok(Htpasswd {
            path: path.to_owned(),
            users,
            decoy,
            key,
            remember_for,
            remembered: quick_cache::sync::Cache::new(REMEMBERED),
            turns: tokio::sync::Semaphore::new(MAX_VERIFYING),
        })
    }

    /// Whether `authorization` (the request's header value) carries `Basic` credentials of a
    /// user of the file with the right password.
    pub async fn admits(self: &Arc<Self>, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let Some(raw) = authorization else {
            return false;
        };
        let id = self.fingerprint(raw);
        if self
            .remembered
            .get(&id)
            .is_some_and(|at| at.elapsed() < self.remember_for)
        {
            return true;
        }
        let Ok(_turn) = self.turns.acquire().await else {
            return false;
        };
        let file = self.clone();
        let checked =
            tokio::task::spawn_blocking(move || file.verify(&user, password.as_bytes())).await;
        let ok = checked.unwrap_or(false);
        if ok {
            self.remembered.insert(id, Instant::now());
        }
        ok
    }

    /// The password check itself (slow: run it off the async workers).
    fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                // The same work as a known user, and the same answer as a wrong password.
                let _ = self.decoy.verify(password);
                false
            }
        }
    }

    /// A keyed hash of the credentials as sent: the remembered checks hold neither passwords
    /// nor anything a guess could be tested against outside this process.
    fn fingerprint(&self, authorization: &[u8]) -> [u8; 32] {
        let mut h = Blake2b::<U32>::new();
        h.update(self.key);
        h.update(authorization);
        h.finalize().into()
    }
}

/// `user` and `password` of a `Basic` authorization value (RFC 7617); `None` for another
/// scheme, bad base64, no colon, or a user name that is not UTF-8.
fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let (scheme, credentials) = crate::admin::read_auth::split_scheme(value)?;
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
        format!("Basic {encoded}").into_bytes()
    }

    fn file(text: &str) -> Result<Htpasswd, String> {
        Htpasswd::parse(Path::new("users.htpasswd"), text, Duration::from_secs(60))
    }

    fn argon2_hash(password: &str) -> String {
        use argon2::PasswordHasher;
        let salt =
            argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let params = argon2::Params::new(8, 1, 1, None).expect("params");
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .expect("hash")
            .to_string()
    }

    fn users() -> Arc<Htpasswd> {
        let alice = bcrypt::hash("wonderland", 4).expect("bcrypt");
        let bob = argon2_hash("builder");
        Arc::new(file(&format!("# staff\n\nalice:{alice}\nbob:{bob}\n")).expect("valid"))
    }

    #[tokio::test]
    async fn bcrypt_and_argon2_users_with_their_passwords_are_admitted() {
        let f = users();
        assert!(f.admits(Some(&basic("alice:wonderland"))).await);
        assert!(f.admits(Some(&basic("bob:builder"))).await);
        assert!(
            f.admits(Some(b"basic  Ym9iOmJ1aWxkZXI= ")).await,
            "scheme in any case"
        );
    }

    #[tokio::test]
    async fn everything_else_is_refused() {
        let f = users();
        for value in [
            basic("alice:wrong"),
            basic("alice:"),
            basic("alice"),
            basic("carol:wonderland"),
            basic("bob:wonderland"),
            basic(":wonderland"),
            b"Bearer wonderland".to_vec(),
            b"Basic !!!".to_vec(),
            b"Basic".to_vec(),
        ] {
            let shown = String::from_utf8_lossy(&value).into_owned();
            assert!(!f.admits(Some(&value)).await, "{shown}");
        }
        assert!(!f.admits(None).await);
    }

    #[tokio::test]
    async fn a_success_is_remembered_for_its_time_only_and_failures_never() {
        let f = users();
        let alice = basic("alice:wonderland");
        assert!(f.remembered.is_empty());
        assert!(!f.admits(Some(&basic("alice:nope"))).await);
        assert!(f.remembered.is_empty(), "failures are not remembered");
        assert!(f.admits(Some(&alice)).await);
        assert_eq!(f.remembered.len(), 1);
        assert!(f.remembered.get(&f.fingerprint(&alice)).is_some());
        // Expired: checked again (and remembered anew).
        let old = Instant::now()
            .checked_sub(Duration::from_secs(61))
            .expect("past");
        f.remembered.insert(f.fingerprint(&alice), old);
        assert!(f.admits(Some(&alice)).await);
        let at = f
            .remembered
            .get(&f.fingerprint(&alice))
            .expect("remembered");
        assert!(at.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn fingerprints_are_keyed_per_loaded_file() {
        let (a, b) = (users(), users());
        let v = basic("alice:wonderland");
        assert_ne!(a.fingerprint(&v), b.fingerprint(&v));
        assert_eq!(a.fingerprint(&v), a.fingerprint(&v));
        assert_ne!(a.fingerprint(&v), a.fingerprint(&basic("alice:wonderlanD")));
    }

    #[test]
    fn bad_files_name_the_line_and_the_fix() {
        let e = file("alice:$apr1$abc$def\n").expect_err("md5");
        assert!(e.contains("users.htpasswd line 1"), "{e}");
        assert!(e.contains("htpasswd -B users.htpasswd alice"), "{e}");
        let e = file("# nobody\n").expect_err("empty");
        assert!(e.contains("has no users"), "{e}");
        let e = file("\nalice\n").expect_err("no colon");
        assert!(e.contains("line 2 is not `user:hash`"), "{e}");
        let e = file("alice:$2y$04$short\n").expect_err("bad bcrypt");
        assert!(e.contains("is not a valid bcrypt hash"), "{e}");
        let hash = bcrypt::hash("x", 4).expect("bcrypt");
        let e = file(&format!("alice:{hash}\nalice:{hash}\n")).expect_err("twice");
        assert!(e.contains("line 2: \"alice\" appears twice"), "{e}");
    }

    #[test]
    fn debug_names_the_file_and_counts_its_users_but_shows_none() {
        let shown = format!("{:?}", users());
        assert!(
            shown.contains("\"users.htpasswd\"") && shown.contains("users: 2"),
            "{shown}"
        );
        assert!(shown.contains("remember_for: 60s"), "{shown}");
        assert!(!shown.contains("alice") && !shown.contains("$2"), "{shown}");
    }

    #[tokio::test]
    async fn a_remembered_login_needs_no_turn_while_guesses_hold_them_all() {
        let f = users();
        let alice = basic("alice:wonderland");
        assert!(f.admits(Some(&alice)).await);
        // A flood of guesses occupies every turn at the verifier: a dashboard that logged in
        // a moment ago still passes at once, by what was remembered.
        let held = f
            .turns
            .acquire_many(MAX_VERIFYING as u32)
            .await
            .expect("turns");
        let again = tokio::time::timeout(Duration::from_secs(10), f.admits(Some(&alice))).await;
        assert_eq!(again, Ok(true), "admitted from memory, without a turn");
        // Credentials not remembered wait for a turn, however long the guesses take.
        let bob = basic("bob:builder");
        let waiting = tokio::time::timeout(Duration::from_millis(300), f.admits(Some(&bob))).await;
        assert!(waiting.is_err(), "checked only with a turn");
        drop(held);
        assert!(f.admits(Some(&bob)).await);
    }
}
