//! Scenario files: what a run does (`kind`), with how many users, for how long, at what
//! rate, and the thresholds that make it fail. Parsed once from TOML, then overridden by
//! the command line; every field is documented in `loadtest/README.md`.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The behaviours the client simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Connect and authenticate every user (spread over `ramp_secs`), set presence, hold.
    ConnectStorm,
    /// 1:1 and group chat with think times, presence changes and typing.
    Office,
    /// One sender to one group of every user.
    Broadcast,
    /// Office traffic; at `reconnect.at_secs` every client drops and comes back with
    /// jittered backoff, resuming with `auth.since`.
    ReconnectStorm,
    /// Office traffic held steady for a long time.
    Soak,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectStorm => "connect-storm",
            Self::Office => "office",
            Self::Broadcast => "broadcast",
            Self::ReconnectStorm => "reconnect-storm",
            Self::Soak => "soak",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in reports; defaults to the file name.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: Kind,
    /// Users provisioned (accounts, 1:1 pairs, groups over all of them).
    pub users: u32,
    /// Share of the users that connect (1: all); the others stay offline, so groups and
    /// 1:1 partners include offline people as in a real organisation. Spread evenly over
    /// the users (see [`Scenario::online`]); user 0 is always online.
    #[serde(default = "default_online_share")]
    pub online_share: f64,
    /// Seconds of traffic after the ramp; the run then drains and stops.
    pub duration_secs: u64,
    /// Seconds over which connections start (evenly spread).
    #[serde(default = "default_ramp")]
    pub ramp_secs: f64,
    /// Messages per second over all senders (0: no chat traffic).
    #[serde(default)]
    pub rate: f64,
    /// Bytes of filler added to each message body.
    #[serde(default)]
    pub body_bytes: usize,
    /// Whether a sender's own session gets its messages back (`auth.echo`, the web
    /// client's way). False: only the `ack`, in the message's place, as bots, bridges
    /// and XMPP clients (no echo without carbons) do; one frame less per message.
    #[serde(default = "default_echo")]
    pub echo: bool,
    /// Seconds the run waits after traffic stops for the last deliveries and acks.
    #[serde(default = "default_drain")]
    pub drain_secs: u64,
    #[serde(default)]
    pub provision: Provision,
    #[serde(default)]
    pub office: Office,
    #[serde(default)]
    pub reconnect: Reconnect,
    #[serde(default)]
    pub thresholds: Thresholds,
}

fn default_ramp() -> f64 {
    5.0
}

fn default_echo() -> bool {
    true
}

fn default_drain() -> u64 {
    5
}

fn default_online_share() -> f64 {
    1.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provision {
    /// Accounts are `{prefix}-0` .. `{prefix}-{users-1}`.
    pub prefix: String,
    pub password: String,
    /// Office kinds: sizes of the groups laid over consecutive users, cycled until every
    /// user is in one group.
    pub group_sizes: Vec<u32>,
}

impl Default for Provision {
    fn default() -> Self {
        Self {
            prefix: "lt".into(),
            password: "loadtest-password".into(),
            group_sizes: vec![5, 10, 20, 50],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Office {
    /// Share of messages sent to a group (the rest go to the user's 1:1 partner).
    pub group_share: f64,
    /// Mean seconds between a user's presence changes (0: never).
    pub presence_every_secs: f64,
    /// Share of messages preceded by a `typing` frame.
    pub typing_share: f64,
    /// Contacts each user watches (its partner and group mates).
    pub watch: usize,
}

impl Default for Office {
    fn default() -> Self {
        Self { group_share: 0.3, presence_every_secs: 30.0, typing_share: 0.5, watch: 10 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reconnect {
    /// Seconds after the ramp at which every client drops its connection.
    pub at_secs: f64,
    /// Longest first wait before reconnecting (full jitter: uniform 0..this).
    pub jitter_ms: u64,
    /// Cap of the exponential backoff after a failed reconnect.
    pub backoff_max_ms: u64,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self { at_secs: 5.0, jitter_ms: 2000, backoff_max_ms: 10_000 }
    }
}

/// Limits that fail the run (exit status 1) when exceeded. Absent: not checked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub lost: Option<u64>,
    pub duplicated: Option<u64>,
    pub out_of_order: Option<u64>,
    pub connect_failures: Option<u64>,
    pub errors: Option<u64>,
    /// At least this many deliveries.
    pub min_delivered: Option<u64>,
    /// Time until every client of a reconnect storm is back and synced.
    pub reconnect_all_back_ms: Option<f64>,
}

/// Command-line overrides of a scenario's numbers.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub users: Option<u32>,
    pub duration_secs: Option<u64>,
    pub rate: Option<f64>,
    pub echo: Option<bool>,
}

impl Scenario {
    pub fn load(path: &Path, overrides: &Overrides) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        let mut scenario: Scenario = toml::from_str(&text)
            .with_context(|| format!("invalid scenario {}", path.display()))?;
        if scenario.name.is_empty() {
            scenario.name =
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        }
        scenario.apply(overrides);
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn apply(&mut self, overrides: &Overrides) {
        if let Some(users) = overrides.users {
            self.users = users;
        }
        if let Some(secs) = overrides.duration_secs {
            self.duration_secs = secs;
        }
        if let Some(rate) = overrides.rate {
            self.rate = rate;
        }
        if let Some(echo) = overrides.echo {
            self.echo = echo;
        }
    }

    /// The run is bounded: these limits keep a typo from starting an endless or absurd run.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.users < 2 || self.users > 1_000_000 {
            bail!("users must be 2 to 1,000,000 (got {})", self.users);
        }
        if self.duration_secs == 0 || self.duration_secs > 7 * 24 * 3600 {
            bail!("duration_secs must be 1 to 604,800 (got {})", self.duration_secs);
        }
        if !(0.0..=3600.0).contains(&self.ramp_secs) {
            bail!("ramp_secs must be 0 to 3600");
        }
        if !(0.0..=10_000_000.0).contains(&self.rate) {
            bail!("rate must be 0 to 10,000,000 messages per second");
        }
        if self.body_bytes > 60_000 {
            bail!("body_bytes must be at most 60,000");
        }
        if self.drain_secs > 600 {
            bail!("drain_secs must be at most 600");
        }
        if !(self.online_share > 0.0 && self.online_share <= 1.0) {
            bail!("online_share must be above 0 and at most 1 (got {})", self.online_share);
        }
        if self.provision.group_sizes.iter().any(|&s| s < 2) {
            bail!("group sizes must be at least 2");
        }
        Ok(())
    }

    /// Whether the user at `index` connects: user 0 (a broadcast's sender) always; any
    /// other independently with probability `online_share`, from a fixed draw per index,
    /// so a 1:1 partner or a group mate of an online user is online with that probability
    /// (as in an organisation), and the same users are online in every run.
    pub fn online(&self, index: u32) -> bool {
        index == 0
            || self.online_share >= 1.0
            || crate::rng::Rng::new(u64::from(index)).uniform(0.0, 1.0) < self.online_share
    }

    /// Whether users chat with each other (office-like traffic).
    pub fn chats(&self) -> bool {
        matches!(self.kind, Kind::Office | Kind::ReconnectStorm | Kind::Soak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_scenario_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            Scenario::load(&path, &Overrides::default()).unwrap();
            seen += 1;
        }
        assert!(seen >= 5);
    }

    #[test]
    fn overrides_win_and_limits_hold() {
        let mut s: Scenario =
            toml::from_str("kind = \"office\"\nusers = 10\nduration_secs = 5\n").unwrap();
        s.apply(&Overrides { users: Some(20), duration_secs: None, rate: Some(3.0), echo: None });
        assert_eq!((s.users, s.duration_secs, s.rate), (20, 5, 3.0));
        s.users = 1;
        assert!(s.validate().is_err());
        assert!(
            toml::from_str::<Scenario>(
                "kind = \"office\"\nusers = 2\nduration_secs = 1\nbogus = 1\n"
            )
            .is_err()
        );
    }

    #[test]
    fn online_share_connects_that_share_independently() {
        let mut s: Scenario =
            toml::from_str("kind = \"office\"\nusers = 10000\nduration_secs = 5\n").unwrap();
        assert_eq!(s.online_share, 1.0);
        assert!((0..10_000).all(|i| s.online(i)));
        s.online_share = 0.3;
        s.validate().unwrap();
        let online: Vec<bool> = (0..10_000).map(|i| s.online(i)).collect();
        let count = online.iter().filter(|&&o| o).count();
        assert!((2850..=3150).contains(&count), "{count} of 10,000 online");
        assert!(online[0], "user 0 (the broadcast sender) is always online");
        // Independent: the partner (2j, 2j+1) of an online user is online about 30% of
        // the time, not never or always as with a regular pattern.
        let pairs = (1..5000).filter(|j| online[2 * j]).count();
        let both = (1..5000).filter(|j| online[2 * j] && online[2 * j + 1]).count();
        let share = both as f64 / pairs as f64;
        assert!((0.25..0.35).contains(&share), "partner online {share}");
        // The same users every time.
        assert_eq!(online, (0..10_000).map(|i| s.online(i)).collect::<Vec<_>>());
        s.online_share = 0.0;
        assert!(s.validate().is_err());
        s.online_share = 1.5;
        assert!(s.validate().is_err());
    }
}
