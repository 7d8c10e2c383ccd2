//! Basic auth against the bcrypt hashes of `basic_auth_users`, as exporter-toolkit does it.
//!
//! A bcrypt verification costs tens of milliseconds by design, so:
//! - one runs at a time (per web config), on a blocking thread, never on the runtime's
//!   workers: a flood of wrong passwords costs at most one core;
//! - a successful verification is cached, keyed by SHA-256 of user, hash and password, so a
//!   scraper that sends the same credentials every interval pays once. Only successes are
//!   cached (a wrong password cannot push a right one out); the cache holds at most
//!   [`CACHE_ENTRIES`] keys and starts afresh when full; a new web config starts a new one;
//! - an unknown user is verified against a real hash of the config too, so that timing does
//!   not tell which users exist; the answer is the same 401.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine;
use http::HeaderValue;
use tokio::sync::Semaphore;

use super::config::PasswordHash;

/// Successful verifications kept.
pub(super) const CACHE_ENTRIES: usize = 256;

/// The users of a web config and their cache.
pub(super) struct BasicAuth {
    users: BTreeMap<String, PasswordHash>,
    /// Verified against for unknown users (any user's hash: the same cost).
    decoy: PasswordHash,
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt: Arc<Semaphore>,
}

impl BasicAuth {
    /// None when there are no users (no basic auth).
    pub(super) fn new(users: BTreeMap<String, PasswordHash>) -> Option<BasicAuth> {
        let decoy = users.values().next()?.clone();
        Some(BasicAuth {
            users,
            decoy,
            verified: Mutex::new(HashSet::new()),
            bcrypt: Arc::new(Semaphore::new(1)),
        })
    }

    pub(super) fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether `authorization` (the request's header) names a user with the right password.
    pub(super) async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.decoy).0.clone();
        let key = cache_key(&user, &hash, &password);
        if known.is_some() && self.cached(&key) {
            return true;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        // Checked again: the request ahead in the queue may have verified the same.
        if known.is_some() && self.cached(&key) {
            return true;
        }
        let matches = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = matches && known.is_some();
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= CACHE_ENTRIES {
                verified.clear();
            }
            verified.insert(key);
        }
        ok
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }
}

/// User and password of a `Basic` authorization header.
fn credentials(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        // Length-prefixed, so that no two triples give the same bytes.
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut key = [0; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("header")
    }

    fn auth() -> BasicAuth {
        // Cost 4, the least bcrypt allows: tests need not be slow.
        let hash = bcrypt::hash_with_salt("s3cret", 4, [7; 16])
            .expect("hash")
            .format_for_version(bcrypt::Version::TwoY);
        let other = bcrypt::hash_with_salt("other", 4, [8; 16])
            .expect("hash")
            .to_string();
        BasicAuth::new(BTreeMap::from([
            ("prometheus".to_owned(), PasswordHash(hash)),
            ("zed".to_owned(), PasswordHash(other)),
        ]))
        .expect("users")
    }

    #[tokio::test]
    async fn only_the_right_user_and_password_pass() {
        let auth = auth();
        assert!(auth.allows(Some(&header("prometheus", "s3cret"))).await);
        assert!(!auth.allows(Some(&header("prometheus", "wrong"))).await);
        assert!(!auth.allows(Some(&header("prometheus", ""))).await);
        // The decoy is a real user's hash: its password must not let an unknown user in.
        assert!(!auth.allows(Some(&header("nobody", "s3cret"))).await);
        assert!(!auth.allows(None).await);
        for bad in ["Bearer abc", "Basic !!!", "Basic", "Basic cHJvbWV0aGV1cw=="] {
            let value = HeaderValue::from_static(bad);
            assert!(!auth.allows(Some(&value)).await, "{bad}");
        }
        // The scheme is case-insensitive; a password may hold ':'.
        let encoded = base64::engine::general_purpose::STANDARD.encode("prometheus:s3cret");
        let value = HeaderValue::from_str(&format!("basic {encoded}")).expect("header");
        assert!(auth.allows(Some(&value)).await);
    }

    #[tokio::test]
    async fn successes_are_cached_failures_are_not() {
        let auth = auth();
        assert!(auth.allows(Some(&header("prometheus", "s3cret"))).await);
        assert!(!auth.allows(Some(&header("prometheus", "nope"))).await);
        assert!(!auth.allows(Some(&header("nobody", "s3cret"))).await);
        let verified = auth.verified.lock().expect("lock").len();
        assert_eq!(verified, 1, "one success cached, no failure");
        // A cached success answers without bcrypt: with the semaphore held it still passes.
        let _held = auth.bcrypt.clone().try_acquire_owned().expect("permit");
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            auth.allows(Some(&header("prometheus", "s3cret"))),
        )
        .await;
        assert_eq!(answer, Ok(true));
    }

    #[test]
    fn cache_keys_do_not_collide_across_fields() {
        assert_ne!(cache_key("ab", "h", "c"), cache_key("a", "h", "bc"));
        assert_eq!(cache_key("a", "h", "b"), cache_key("a", "h", "b"));
    }
}
