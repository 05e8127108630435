//! Directory sign-in: checks a username and password against an LDAP server (OpenLDAP,
//! Active Directory) by binding as the user, and reads what Switchboard keeps in step
//! with the directory (display name, org unit, admin group membership). What happens with
//! the answer (creating or updating the local user, issuing a token) is in `auth`.
//!
//! Every sign-in opens its own connection, bounded as a whole by [`LdapConfig::timeout`]:
//! sign-ins are rare next to messages, and a fresh connection never carries another
//! user's bind.

use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use switchboard_protocol::ErrorCode;

use crate::ApiError;

/// How to find and check a directory user. Parsed once by the binary (`--ldap-*`).
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldap://host:port` (no TLS: put the directory on a trusted network or a tunnel).
    pub url: String,
    /// The name to bind as, with `{user}` for the username: a DN
    /// (`uid={user},ou=people,dc=example,dc=org`) or Active Directory's
    /// `{user}@example.org`. None: search for the user first (`search_base`).
    pub user_dn: Option<String>,
    /// Where users are searched (search-then-bind, and reading the attributes of a user
    /// bound by a name that is not a DN).
    pub search_base: Option<String>,
    /// Filter finding one user, with `{user}` (escaped) for the username.
    pub user_filter: String,
    /// Service account for the search; None searches anonymously.
    pub bind_dn: Option<String>,
    pub bind_password: Option<String>,
    /// Members of this group (DN) become admins, non-members stop being admins. Checked
    /// through the user's `memberOf` and else a search of the group for `member`,
    /// `uniqueMember` or `memberUid`. None leaves the admin flag alone.
    pub admin_group: Option<String>,
    /// Attribute synced to the display name on each sign-in (e.g. `displayName`, `cn`).
    pub display_name_attr: Option<String>,
    /// Attribute synced to the org unit on each sign-in (e.g. `ou`, `department`).
    pub org_attr: Option<String>,
    /// Longest a whole directory sign-in (connect, bind, searches) may take; past it the
    /// sign-in fails with `unavailable`.
    pub timeout: Duration,
}

impl LdapConfig {
    /// A config for `url` that binds as `user_dn`, with the defaults for the rest.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user_dn: None,
            search_base: None,
            user_filter: "(uid={user})".into(),
            bind_dn: None,
            bind_password: None,
            admin_group: None,
            display_name_attr: None,
            org_attr: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// Checks that the options fit together; the message names the missing option.
    pub fn validate(&self) -> Result<(), String> {
        if !self.url.starts_with("ldap://") {
            return Err(format!("--ldap-url {:?}: only ldap://host:port is supported", self.url));
        }
        match &self.user_dn {
            None if self.search_base.is_none() => {
                Err("LDAP sign-in needs --ldap-user-dn or --ldap-search-base".into())
            }
            Some(t) if !t.contains("{user}") => {
                Err(format!("--ldap-user-dn {t:?} must contain {{user}}"))
            }
            Some(t) if !is_dn(t) && self.search_base.is_none() && self.reads_entry() => {
                Err("--ldap-user-dn is not a DN: reading attributes or the admin group needs \
                 --ldap-search-base too"
                    .into())
            }
            _ if !self.user_filter.contains("{user}") => {
                Err(format!("--ldap-user-filter {:?} must contain {{user}}", self.user_filter))
            }
            _ if self.bind_dn.is_some() != self.bind_password.is_some() => {
                Err("--ldap-bind-dn and --ldap-bind-password go together".into())
            }
            _ => Ok(()),
        }
    }

    /// Whether a sign-in reads the user's entry after binding.
    fn reads_entry(&self) -> bool {
        self.admin_group.is_some() || self.display_name_attr.is_some() || self.org_attr.is_some()
    }
}

/// What the directory says about a user who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryProfile {
    pub display_name: Option<String>,
    pub org: Option<String>,
    /// Some when an admin group is configured.
    pub admin: Option<bool>,
}

/// Why a directory sign-in failed: the password or user is wrong, or the directory could
/// not answer (never taken as a yes).
#[derive(Debug)]
enum Failure {
    Rejected,
    Unavailable(String),
}

impl From<LdapError> for Failure {
    fn from(e: LdapError) -> Self {
        match e {
            // 49 invalidCredentials, 32 noSuchObject (a DN template for nobody), 48
            // inappropriateAuthentication (an empty password on a server that refuses
            // unauthenticated binds), 19 constraintViolation (e.g. an expired password).
            LdapError::LdapResult { result } if matches!(result.rc, 49 | 32 | 48 | 19) => {
                Failure::Rejected
            }
            other => Failure::Unavailable(other.to_string()),
        }
    }
}

/// Binds as `username` with `password`; on success reads the profile. `username` has been
/// validated (letters, digits, `.`, `_`, `-`), so it needs no escaping in a DN, and gets
/// it anyway in a filter.
pub async fn authenticate(
    config: &LdapConfig,
    username: &str,
    password: &str,
) -> Result<DirectoryProfile, ApiError> {
    // An empty password is an "unauthenticated bind" that many servers answer with
    // success: it must never reach the directory.
    if password.is_empty() {
        return Err(rejected());
    }
    let outcome = tokio::time::timeout(config.timeout, check(config, username, password)).await;
    match outcome {
        Ok(Ok(profile)) => Ok(profile),
        Ok(Err(Failure::Rejected)) => Err(rejected()),
        Ok(Err(Failure::Unavailable(detail))) => Err(unavailable(config, &detail)),
        Err(_) => {
            Err(unavailable(config, &format!("no answer within {} ms", config.timeout.as_millis())))
        }
    }
}

fn rejected() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials, "wrong username or password")
}

/// The client learns that the directory is the cause; where it is and what went wrong go
/// to the log only (an anonymous caller has no business with internal addresses).
fn unavailable(config: &LdapConfig, detail: &str) -> ApiError {
    tracing::error!(url = %config.url, %detail, "directory (LDAP) sign-in failed");
    ApiError::new(
        ErrorCode::Unavailable,
        "sign-in failed: the directory (LDAP) cannot be reached or did not answer; retry later",
    )
}

async fn check(
    config: &LdapConfig,
    username: &str,
    password: &str,
) -> Result<DirectoryProfile, Failure> {
    let settings = LdapConnSettings::new().set_conn_timeout(config.timeout);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &config.url).await?;
    ldap3::drive!(conn);
    let filter = config.user_filter.replace("{user}", &ldap3::ldap_escape(username));
    let attrs = profile_attrs(config);

    // The name to bind as, and the user's entry when it is already known.
    let (bind_name, mut entry) = match &config.user_dn {
        Some(template) => (template.replace("{user}", &ldap3::dn_escape(username)), None),
        None => {
            let base = config.search_base.as_deref().unwrap_or_default();
            if let (Some(dn), Some(pw)) = (&config.bind_dn, &config.bind_password) {
                let bound = ldap.simple_bind(dn, pw).await?.success();
                if let Err(e) = bound {
                    return Err(Failure::Unavailable(format!("the service account {dn}: {e}")));
                }
            }
            let found = find_one(&mut ldap, base, &filter, &attrs).await?;
            let Some(found) = found else { return Err(Failure::Rejected) };
            (found.dn.clone(), Some(found))
        }
    };
    ldap.simple_bind(&bind_name, password).await?.success()?;

    if config.reads_entry() && entry.is_none() {
        entry = match (&config.search_base, is_dn(&bind_name)) {
            (_, true) => read_entry(&mut ldap, &bind_name, &attrs).await?,
            (Some(base), false) => find_one(&mut ldap, base, &filter, &attrs).await?,
            (None, false) => None,
        };
    }
    let first = |attr: &Option<String>| {
        let attr = attr.as_deref()?;
        entry.as_ref()?.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr))?.1.first().cloned()
    };
    let mut profile = DirectoryProfile {
        display_name: first(&config.display_name_attr).filter(|s| !s.trim().is_empty()),
        org: first(&config.org_attr),
        admin: None,
    };
    if let Some(group) = &config.admin_group {
        let dn = entry.as_ref().map_or(bind_name.as_str(), |e| e.dn.as_str());
        let by_attr = entry.as_ref().is_some_and(|e| member_of(e, group));
        let admin = by_attr || in_group(&mut ldap, group, dn, username).await?;
        profile.admin = Some(admin);
    }
    let _ = ldap.unbind().await;
    Ok(profile)
}

fn profile_attrs(config: &LdapConfig) -> Vec<String> {
    let mut attrs: Vec<String> =
        [&config.display_name_attr, &config.org_attr].into_iter().flatten().cloned().collect();
    if config.admin_group.is_some() {
        attrs.push("memberOf".into());
    }
    if attrs.is_empty() {
        // "1.1": no attributes, only the DN.
        attrs.push("1.1".into());
    }
    attrs
}

/// A name such as `uid=x,ou=people,...` rather than `x@example.org`.
fn is_dn(name: &str) -> bool {
    name.contains('=') && !name.contains('@')
}

async fn read_entry(
    ldap: &mut ldap3::Ldap,
    dn: &str,
    attrs: &[String],
) -> Result<Option<SearchEntry>, Failure> {
    let (entries, _) = ldap.search(dn, Scope::Base, "(objectClass=*)", attrs).await?.success()?;
    Ok(entries.into_iter().next().map(SearchEntry::construct))
}

/// The one entry under `base` matching `filter`; None when there is none or several (an
/// ambiguous filter must not let the first match in).
async fn find_one(
    ldap: &mut ldap3::Ldap,
    base: &str,
    filter: &str,
    attrs: &[String],
) -> Result<Option<SearchEntry>, Failure> {
    let (entries, _) = ldap.search(base, Scope::Subtree, filter, attrs).await?.success()?;
    if entries.len() > 1 {
        tracing::warn!(%filter, count = entries.len(), "LDAP user filter matches several entries");
        return Ok(None);
    }
    Ok(entries.into_iter().next().map(SearchEntry::construct))
}

fn member_of(entry: &SearchEntry, group: &str) -> bool {
    let group = normalize_dn(group);
    entry
        .attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("memberOf"))
        .flat_map(|(_, values)| values)
        .any(|v| normalize_dn(v) == group)
}

/// Whether the group entry lists the user (groupOfNames, groupOfUniqueNames, posixGroup).
async fn in_group(
    ldap: &mut ldap3::Ldap,
    group: &str,
    dn: &str,
    username: &str,
) -> Result<bool, Failure> {
    let filter = format!(
        "(|(member={dn})(uniqueMember={dn})(memberUid={user}))",
        dn = ldap3::ldap_escape(dn),
        user = ldap3::ldap_escape(username)
    );
    match ldap.search(group, Scope::Base, &filter, ["1.1"]).await?.success() {
        Ok((entries, _)) => Ok(!entries.is_empty()),
        // The group does not exist (or the user may not see it): not a member.
        Err(LdapError::LdapResult { result }) if result.rc == 32 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// DNs compare without case and without spaces after commas.
fn normalize_dn(dn: &str) -> String {
    dn.split(',').map(|part| part.trim().to_ascii_lowercase()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_do_not_fit_together_are_named() {
        let mut c = LdapConfig::new("ldap://127.0.0.1:389");
        assert!(c.validate().unwrap_err().contains("--ldap-user-dn"));
        c.user_dn = Some("{user}@example.org".into());
        assert!(c.validate().is_ok());
        c.admin_group = Some("cn=admins,dc=example,dc=org".into());
        assert!(c.validate().unwrap_err().contains("--ldap-search-base"));
        c.search_base = Some("dc=example,dc=org".into());
        assert!(c.validate().is_ok());
        c.bind_dn = Some("cn=reader,dc=example,dc=org".into());
        assert!(c.validate().unwrap_err().contains("--ldap-bind-password"));
        c.url = "ldaps://x".into();
        assert!(c.validate().unwrap_err().contains("ldap://"));
    }

    #[test]
    fn group_dns_compare_loosely() {
        assert_eq!(normalize_dn("CN=Admins, OU=Groups,DC=x"), "cn=admins,ou=groups,dc=x");
    }
}
