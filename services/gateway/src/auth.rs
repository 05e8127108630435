//! Passwords and tokens. Passwords are hashed with argon2id (on the blocking pool: a hash
//! takes tens of milliseconds); tokens are 32 random bytes, handed out once and stored
//! only as their SHA-256.

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use switchboard_protocol::ErrorCode;
use switchboard_storage::{DirectoryUser, LoginLock, Store, StoreError, User, now_ms};

use crate::ApiError;
use crate::ldap::LdapConfig;
use crate::lockout::{self, LoginGuard};
use crate::org::{NO_PASSWORD, normalize_org};

/// Prefix of every token, so secret scanners and people can recognise one.
pub const TOKEN_PREFIX: &str = "sbt_";

/// Hashes a password with argon2id and a random salt (PHC string).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("hashing failed: {e}")))
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("hashing task failed: {e}")))?
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A random password of 20 characters from an unambiguous alphabet.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// SHA-256 of a session token: what storage keeps, and what a sign-out names.
pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// `bytes` random bytes from the OS, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    OsRng.fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// A uniformly random number in `0..n` (0 when `n` is 0).
pub fn random_below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    // 64 random bits: the modulo bias is below 2^-40 for any n a delay takes.
    OsRng.next_u64() % n
}

pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex(32))
}

/// Checks a username and password; on success issues a token valid for `ttl_ms`.
/// Unknown user and wrong password give the same error, and take the same time.
/// Throttled (see [`crate::lockout`]): a locked account, an unknown name "locked" the
/// same way, or an address with too many failures get `rate_limited` without any check.
///
/// Precedence with a directory (`ldap`): an account with a local password signs in with
/// it, and only with it (the directory cannot take it over), and bots never sign in with
/// a password; every other name (unknown here, or a person without a local password:
/// created by a directory sign-in or the directory import) is checked against the
/// directory, and on success created or brought in step locally. A directory that
/// cannot be reached is `unavailable`, not a failed attempt: it counts against nobody.
#[allow(clippy::too_many_arguments)]
pub async fn login(
    store: &dyn Store,
    guard: &LoginGuard,
    ldap: Option<&LdapConfig>,
    ip: Option<IpAddr>,
    username: &str,
    password: &str,
    ttl_ms: i64,
) -> Result<(String, i64, User), ApiError> {
    guard.check_ip(ip)?;
    let now = now_ms();
    let found = store.credentials(username).await?;
    // Accounts are throttled in storage (every gateway sees it), unknown names in memory.
    let lock = match &found {
        Some((user, _)) => {
            let lock = store.login_lock(user.id).await?;
            if lock.locked_until > now {
                return Err(lockout::throttled((lock.locked_until - now) as u64));
            }
            Some(lock)
        }
        None => {
            guard.check_unknown(username, now)?;
            None
        }
    };
    let account = found.as_ref().map(|(user, _)| user.clone());
    let failed = || failed_attempt(store, guard, ip, account.as_ref(), username, now);
    let user = match (found, ldap) {
        // Bots sign in with their token only; a directory entry of that name is not theirs.
        (Some((user, _)), _) if user.bot => return Err(failed().await),
        (Some((user, hash)), _) if has_local_password(&hash) => {
            if !verify_password(password.to_owned(), hash).await {
                return Err(failed().await);
            }
            user
        }
        (_, Some(ldap)) => {
            if validate_username(username).is_err() {
                return Err(failed().await);
            }
            let profile = match crate::ldap::authenticate(ldap, username, password).await {
                Ok(profile) => profile,
                Err(e) if e.code() == ErrorCode::InvalidCredentials => {
                    return Err(failed().await);
                }
                Err(e) => return Err(e),
            };
            let synced = store
                .sync_directory_user(DirectoryUser {
                    username: username.to_owned(),
                    display_name: profile.display_name,
                    org: profile.org.and_then(|org| normalize_org(&org).ok()),
                    admin: profile.admin,
                    password_hash: NO_PASSWORD.to_owned(),
                })
                .await;
            match synced {
                Ok(user) => user,
                // A local account with a password appeared meanwhile: it is not ours.
                Err(StoreError::UserExists(_)) => return Err(failed().await),
                Err(e) => return Err(e.into()),
            }
        }
        (found, None) => {
            if found.is_none() {
                // Spend the time a real check would, so timing does not reveal who exists.
                let _ = hash_password(password.to_owned()).await;
            }
            return Err(failed().await);
        }
    };
    if lock.is_some_and(|lock| lock != LoginLock::default()) {
        store.login_succeeded(user.id).await?;
    }
    let token = new_token();
    let expires_at = now_ms() + ttl_ms;
    store.insert_token(&token_hash(&token), user.id, expires_at).await?;
    Ok((token, expires_at, user))
}

/// Records a failed sign-in (against the address, and the account or the unknown name),
/// locking the account when it has failed too often; returns the error the client gets,
/// the same whatever the reason.
async fn failed_attempt(
    store: &dyn Store,
    guard: &LoginGuard,
    ip: Option<IpAddr>,
    account: Option<&User>,
    username: &str,
    now: i64,
) -> ApiError {
    guard.ip_failed(ip);
    let Some(user) = account else {
        guard.unknown_failed(username, now);
        return wrong_credentials();
    };
    let failures = match store.login_failed(user.id).await {
        Ok(failures) => failures,
        Err(e) => return e.into(),
    };
    if let Some(delay) = guard.lock_for(failures) {
        if let Err(e) = store.lock_login(user.id, now_ms() + delay.as_millis() as i64).await {
            return e.into();
        }
        tracing::info!(user = %user.username, failures, "sign-in locked after failures");
    }
    wrong_credentials()
}

fn wrong_credentials() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials, "wrong username or password")
}

/// Whether `hash` is a password hash (not the "no password" mark of accounts created by
/// the directory import or a directory sign-in).
fn has_local_password(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok()
}

/// The user a bearer token belongs to.
pub async fn authenticate(store: &dyn Store, token: &str) -> Result<User, ApiError> {
    store.user_by_token(&token_hash(token)).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::Unauthenticated, "the token is invalid, expired or revoked")
    })
}

/// Rules for usernames: 1 to 64 of letters, digits, `.`, `_`, `-`; starting with a letter
/// or digit. Kept strict so names are safe in URLs, logs and the CLI.
pub fn validate_username(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid username {name:?}: use 1-64 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// Passwords must have at least 8 characters.
pub fn validate_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 {
        return Err(ApiError::invalid("a password needs at least 8 characters"));
    }
    Ok(())
}
