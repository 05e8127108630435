//! From a scenario to a plan per simulated user: provisions the accounts and conversations
//! through `POST /api/v1/admin/provision` (idempotent, tokens issued by the server), then
//! decides who talks where, whom each user watches, and from which seq each conversation
//! is verified.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_protocol::Conversation;

use crate::http::Http;
use crate::scenario::{Kind, Scenario};

/// What one simulated user does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserPlan {
    /// Position among all users of the run (connection ramp, gateway and source address).
    pub index: u32,
    pub username: String,
    pub token: String,
    /// Conversation id -> its last seq when provisioned: verification starts after it.
    pub conversations: BTreeMap<i64, i64>,
    /// The 1:1 conversation with this user's partner.
    pub direct: Option<i64>,
    pub groups: Vec<i64>,
    pub watch: Vec<String>,
    /// Whether this user sends chat messages.
    pub sends: bool,
    /// With `--protocol xmpp`: partner, rooms and senders (then `token` is the password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmpp: Option<crate::xmpp_client::XmppPlan>,
}

impl UserPlan {
    /// Where this user's next message goes: one of its groups with probability
    /// `group_share` (always, without a partner), else its partner; None with neither.
    pub fn next_conversation(&self, rng: &mut crate::rng::Rng, group_share: f64) -> Option<i64> {
        let group = |rng: &mut crate::rng::Rng| self.groups[rng.below(self.groups.len())];
        match (self.direct, self.groups.is_empty()) {
            (Some(d), true) => Some(d),
            (None, false) => Some(group(rng)),
            (Some(d), false) => {
                Some(if rng.uniform(0.0, 1.0) < group_share { group(rng) } else { d })
            }
            (None, true) => None,
        }
    }
}

#[derive(Deserialize)]
struct Provisioned {
    users: Vec<ProvisionedUser>,
    groups: Vec<Conversation>,
    directs: Vec<Conversation>,
    created_users: u32,
}

#[derive(Deserialize)]
struct ProvisionedUser {
    username: String,
    token: Option<String>,
}

/// Signs an admin in with a password over REST.
pub async fn admin_login(authority: &str, user: &str, password: &str) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Login {
        token: String,
    }
    let login: Login = Http::new(authority, None)
        .post("/api/v1/login", &json!({"username": user, "password": password}))
        .await
        .context("admin sign-in failed")?;
    Ok(login.token)
}

/// The provisioning request for a scenario: groups laid over consecutive users and
/// 1:1 pairs for chat scenarios, one group of everyone for a broadcast.
fn request(s: &Scenario) -> serde_json::Value {
    let p = &s.provision;
    let mut groups = Vec::new();
    match s.kind {
        Kind::Broadcast => {
            groups.push(json!({"name": format!("{}-all-{}", p.prefix, s.users), "size": s.users}));
        }
        _ if s.chats() && !p.group_sizes.is_empty() => {
            let mut covered = 0u32;
            while covered < s.users {
                let size = p.group_sizes[groups.len() % p.group_sizes.len()].min(s.users);
                let name = format!("{}-g{}-of{}", p.prefix, groups.len(), s.users);
                groups.push(json!({"name": name, "size": size}));
                covered += size;
            }
        }
        _ => {}
    }
    json!({
        "prefix": p.prefix,
        "count": s.users,
        "password": p.password,
        "groups": groups,
        "direct_pairs": s.chats(),
        "issue_tokens": true,
    })
}

/// Provisions the scenario's users on the gateway at `authority` and plans each one.
pub async fn provision(
    s: &Scenario,
    authority: &str,
    admin_token: &str,
) -> anyhow::Result<Vec<UserPlan>> {
    let http = Http::new(authority, Some(admin_token.to_owned()));
    let started = std::time::Instant::now();
    let answer: Provisioned = http
        .post("/api/v1/admin/provision", &request(s))
        .await
        .context("provisioning failed (is the token an admin's?)")?;
    eprintln!(
        "provisioned {} users ({} new), {} groups, {} direct conversations in {:.1} s",
        answer.users.len(),
        answer.created_users,
        answer.groups.len(),
        answer.directs.len(),
        started.elapsed().as_secs_f64()
    );
    plan(s, answer)
}

fn plan(s: &Scenario, answer: Provisioned) -> anyhow::Result<Vec<UserPlan>> {
    let index: BTreeMap<&str, usize> =
        answer.users.iter().enumerate().map(|(i, u)| (u.username.as_str(), i)).collect();
    let mut plans: Vec<UserPlan> = answer
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            Ok(UserPlan {
                index: i as u32,
                username: u.username.clone(),
                token: u.token.clone().context("the server issued no token")?,
                conversations: BTreeMap::new(),
                direct: None,
                groups: Vec::new(),
                watch: Vec::new(),
                sends: match s.kind {
                    Kind::Broadcast => i == 0,
                    Kind::ConnectStorm => false,
                    _ => s.rate > 0.0,
                },
                xmpp: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    for c in &answer.directs {
        let members: Vec<usize> =
            c.members.iter().filter_map(|m| index.get(m.as_str()).copied()).collect();
        for &m in &members {
            plans[m].conversations.insert(c.id, c.last_seq);
            plans[m].direct = Some(c.id);
            for &other in &members {
                if other != m {
                    let name = plans[other].username.clone();
                    plans[m].watch.push(name);
                }
            }
        }
    }
    for c in &answer.groups {
        let members: Vec<usize> =
            c.members.iter().filter_map(|m| index.get(m.as_str()).copied()).collect();
        for &m in &members {
            plans[m].conversations.insert(c.id, c.last_seq);
            plans[m].groups.push(c.id);
            if s.chats() {
                let want = s.office.watch;
                let mates = members.iter().filter(|&&o| o != m).take(want).copied();
                let names: Vec<String> = mates.map(|o| plans[o].username.clone()).collect();
                let plan = &mut plans[m];
                for name in names {
                    if plan.watch.len() < want && !plan.watch.contains(&name) {
                        plan.watch.push(name);
                    }
                }
            }
        }
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(kind: &str, users: u32) -> Scenario {
        toml::from_str(&format!(
            "kind = \"{kind}\"\nusers = {users}\nduration_secs = 1\nrate = 5\n"
        ))
        .unwrap()
    }

    #[test]
    fn office_groups_cover_everyone_and_broadcast_has_one_sender() {
        let r = request(&scenario("office", 30));
        let sizes: Vec<u64> =
            r["groups"].as_array().unwrap().iter().map(|g| g["size"].as_u64().unwrap()).collect();
        assert_eq!(sizes, [5, 10, 20]);
        assert_eq!(r["direct_pairs"], true);
        let b = request(&scenario("broadcast", 30));
        assert_eq!(b["groups"][0]["size"], 30);
        assert_eq!(b["direct_pairs"], false);
        let answer = Provisioned {
            users: (0..3)
                .map(|i| ProvisionedUser { username: format!("lt-{i}"), token: Some("t".into()) })
                .collect(),
            groups: Vec::new(),
            directs: Vec::new(),
            created_users: 0,
        };
        let plans = plan(&scenario("broadcast", 3), answer).unwrap();
        assert_eq!(plans.iter().filter(|p| p.sends).count(), 1);
    }
}
