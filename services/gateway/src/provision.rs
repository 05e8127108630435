//! `POST /api/v1/admin/provision`: bulk, idempotent creation of test accounts, groups and
//! direct conversations, with a fresh token per account, for load tests and demos.
//!
//! Built so a load generator can set up 10,000 users in one request without 10,000
//! argon2 logins: the shared password is hashed once per request, and tokens are issued
//! here. Re-running the same request creates nothing new and answers with the same
//! users, groups and conversations (and new tokens). The request and answer shapes are
//! documented in `docs/protocol.md` ("Bulk provisioning").
//!
//! Provisioning writes through the [`switchboard_storage::Store`] directly and pushes no
//! `conversation` frames: it is meant to run before the accounts connect.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use switchboard_protocol::{Conversation, ConversationKind, ErrorCode};
use switchboard_storage::{NewUser, StoreError, User, now_ms};

use crate::{ApiError, Gateway, auth};

/// Most accounts one request may provision (the answer holds a token for each).
const MAX_COUNT: u32 = 100_000;
/// Most groups one request may provision.
const MAX_GROUPS: usize = 10_000;
/// Store operations run concurrently; the store serialises writes itself, this only
/// overlaps reads and round trips.
const CONCURRENCY: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// Accounts are named `{prefix}-0` .. `{prefix}-{count-1}`.
    prefix: String,
    count: u32,
    /// The password of every new account (existing accounts keep theirs).
    password: String,
    /// Groups over consecutive accounts; see [`GroupSpec`].
    #[serde(default)]
    groups: Vec<GroupSpec>,
    /// Open the direct conversations of the pairs (0,1), (2,3), ...
    #[serde(default)]
    direct_pairs: bool,
    /// Issue a fresh token for every account (default true).
    #[serde(default = "yes")]
    issue_tokens: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    name: String,
    /// Members: `size` accounts starting at index `first`, wrapping around at `count`.
    size: u32,
    /// Index of the first member, who owns the group; default: the account right after
    /// the previous group's last member (0 for the first group).
    #[serde(default)]
    first: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ProvisionResponse {
    /// Every account, in index order.
    users: Vec<ProvisionedUser>,
    groups: Vec<Conversation>,
    directs: Vec<Conversation>,
    /// How many accounts and conversations this request created (0 on a re-run).
    created_users: u32,
    created_groups: u32,
    created_directs: u32,
    /// Expiry of the issued tokens, milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

#[derive(Debug, Serialize)]
struct ProvisionedUser {
    username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// The handler. It reads the bearer token and the body itself (rather than through the
/// REST module's extractors) so that this file is self-contained; the errors are the same.
pub async fn provision(
    State(gateway): State<Gateway>,
    crate::rest::ClientIp(ip): crate::rest::ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ProvisionResponse>, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(ErrorCode::Unauthenticated, "missing Authorization: Bearer <token>")
        })?;
    let caller = auth::authenticate(gateway.store().as_ref(), token).await?;
    let req: ProvisionRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::MalformedFrame, format!("invalid JSON body: {e}")))?;
    if !caller.admin {
        return Err(ApiError::new(ErrorCode::Forbidden, "only admins may provision accounts"));
    }
    validate(&req)?;
    let names: Vec<String> = (0..req.count).map(|i| format!("{}-{i}", req.prefix)).collect();

    // Existing accounts first, so the password is hashed only when one is missing.
    let existing: Vec<Option<User>> = stream::iter(names.clone())
        .map(|name| {
            let gateway = gateway.clone();
            async move { lookup(&gateway, &name).await }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let missing = existing.iter().filter(|u| u.is_none()).count() as u32;
    let hash =
        if missing > 0 { Some(auth::hash_password(req.password.clone()).await?) } else { None };
    let users: Vec<User> = stream::iter(names.into_iter().zip(existing))
        .map(|(name, found)| {
            let gateway = gateway.clone();
            let hash = hash.clone();
            async move {
                match found {
                    Some(user) => Ok(user),
                    None => create(&gateway, &name, hash.unwrap_or_default()).await,
                }
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    if let Some(admin) = users.iter().find(|u| u.admin) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{} is an admin account; provisioning never issues tokens for one",
                admin.username
            ),
        ));
    }

    let mut groups = Vec::with_capacity(req.groups.len());
    let mut created_groups = 0;
    let mut cursor = 0u32;
    for spec in &req.groups {
        let first = spec.first.unwrap_or(cursor) % req.count;
        cursor = (first + spec.size) % req.count;
        let members: Vec<User> =
            (0..spec.size).map(|k| users[((first + k) % req.count) as usize].clone()).collect();
        let (group, created) = group(&gateway, &spec.name, &members).await?;
        created_groups += u32::from(created);
        groups.push(group);
    }

    let mut directs = Vec::new();
    let mut created_directs = 0;
    if req.direct_pairs {
        let pairs: Vec<(User, User)> =
            users.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect();
        let opened: Vec<(Conversation, bool)> = stream::iter(pairs)
            .map(|(a, b)| {
                let gateway = gateway.clone();
                async move { Ok::<_, ApiError>(gateway.store().open_direct(&a, &b).await?) }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        for (mut conversation, created) in opened {
            conversation.read_seq = None;
            created_directs += u32::from(created);
            directs.push(conversation);
        }
    }

    let expires_at = now_ms() + gateway.config().token_ttl.as_millis() as i64;
    let issue_tokens = req.issue_tokens;
    let provisioned: Vec<ProvisionedUser> = stream::iter(users)
        .map(|user| {
            let gateway = gateway.clone();
            async move {
                let token = if issue_tokens {
                    let token = format!("{}{}", auth::TOKEN_PREFIX, auth::random_hex(32));
                    let hash = auth::token_hash(&token);
                    gateway.store().insert_token(&hash, user.id, expires_at).await?;
                    Some(token)
                } else {
                    None
                };
                Ok::<_, ApiError>(ProvisionedUser { username: user.username, token })
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    tracing::info!(
        admin = %caller.username,
        prefix = %req.prefix,
        count = req.count,
        created_users = missing,
        created_groups,
        created_directs,
        "provisioned"
    );
    gateway.audit(crate::AuditEvent {
        actor: &caller.username,
        action: "user.provision",
        target: &req.prefix,
        ip,
        detail: &format!(
            "{} accounts ({missing} created), {created_groups} groups, tokens issued: {}",
            req.count, req.issue_tokens
        ),
    });
    Ok(Json(ProvisionResponse {
        users: provisioned,
        groups,
        directs,
        created_users: missing,
        created_groups,
        created_directs,
        expires_at: issue_tokens.then_some(expires_at),
    }))
}

fn validate(req: &ProvisionRequest) -> Result<(), ApiError> {
    if req.prefix.is_empty() || req.prefix.len() > 50 {
        return Err(ApiError::invalid("prefix must have 1 to 50 characters"));
    }
    auth::validate_username(&format!("{}-0", req.prefix))?;
    auth::validate_password(&req.password)?;
    if req.count == 0 || req.count > MAX_COUNT {
        return Err(ApiError::invalid(format!("count must be 1 to {MAX_COUNT}")));
    }
    if req.groups.len() > MAX_GROUPS {
        return Err(ApiError::invalid(format!("at most {MAX_GROUPS} groups per request")));
    }
    for g in &req.groups {
        if g.size == 0 || g.size > req.count {
            return Err(ApiError::invalid(format!(
                "group {:?}: size must be 1 to count ({})",
                g.name, req.count
            )));
        }
    }
    Ok(())
}

async fn lookup(gateway: &Gateway, name: &str) -> Result<Option<User>, ApiError> {
    match gateway.store().user_by_name(name).await {
        Ok(user) => Ok(Some(user)),
        Err(StoreError::UserNotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn create(gateway: &Gateway, name: &str, password_hash: String) -> Result<User, ApiError> {
    let new = NewUser {
        username: name.to_owned(),
        display_name: name.to_owned(),
        org: "loadtest".to_owned(),
        admin: false,
        password_hash,
        department: String::new(),
        title: String::new(),
        bot: false,
    };
    match gateway.store().create_user(new).await {
        Ok(user) => Ok(user),
        // Created meanwhile by a concurrent request: use that one.
        Err(StoreError::UserExists(_)) => Ok(gateway.store().user_by_name(name).await?),
        Err(e) => Err(e.into()),
    }
}

/// The group named `name` owned by `members[0]`, created with `members` if the owner has
/// no group of that name yet. Returns it and whether it was created now.
async fn group(
    gateway: &Gateway,
    name: &str,
    members: &[User],
) -> Result<(Conversation, bool), ApiError> {
    let owner = &members[0];
    let name = name.trim();
    let existing = gateway.store().conversations_of(owner.id).await?;
    if let Some(mut found) =
        existing.into_iter().find(|c| c.kind == ConversationKind::Group && c.name == name)
    {
        found.read_seq = None;
        return Ok((found, false));
    }
    let (mut created, _) = gateway.store().create_group(owner, name, members).await?;
    created.read_seq = None;
    Ok((created, true))
}
