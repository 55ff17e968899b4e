//! Retention: redacting fields of old entries and expiring whole entries,
//! by the `[retention]` settings or for one person's erasure request,
//! without breaking a proof.
//!
//! A redaction drops disclosures (`log::sealed`): the commitment each leaf
//! hash covers stays. An expiry drops an entry's bytes: its leaf hash
//! stays. Either way the work is first logged as a `retention` entry, then
//! done, so a crash in between leaves a record of work still to do (done
//! again on the next pass), never work without a record, which `log
//! verify` would report as tampering.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use crate::config::RetentionConfig;
use crate::digest::sha256_hex;
use crate::log::entry::{seq_ranges, GroupRedaction, RetentionCause, RetentionRecord};
use crate::log::index::{self, Field, IndexRecord};
use crate::log::sealed::{self, FieldGroup};
use crate::log::storage::Retained;
use crate::log::{EntryReceipt, LogError, LogStore, LogWriter, Record};
use crate::model::ConnectionInput;
use crate::policy::PolicyStore;
use crate::time::rfc3339;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("entry {seq} cannot be read for retention: {reason}")]
    Entry { seq: u64, reason: String },
    #[error("{0}")]
    NotFound(String),
}

/// One `[retention]` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Setting {
    /// Drop one group's disclosures.
    Redact(FieldGroup),
    /// Drop every disclosure: only the correlation fields stay.
    Body,
    /// Drop the whole entry: only its leaf hash stays.
    Expire,
}

impl Setting {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "body" => Some(Setting::Body),
            "expire" => Some(Setting::Expire),
            other => FieldGroup::parse(other).map(Setting::Redact),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Setting::Redact(group) => group.name(),
            Setting::Body => "body",
            Setting::Expire => "expire",
        }
    }

    /// What a redaction under this setting drops (none: an expiry).
    fn groups(self) -> Option<BTreeSet<FieldGroup>> {
        match self {
            Setting::Redact(group) => Some(BTreeSet::from([group])),
            Setting::Body => Some(FieldGroup::ALL.into_iter().collect()),
            Setting::Expire => None,
        }
    }
}

/// Who an erasure request is about: the subject's issuer and `sub`, as a
/// connection request named them.
#[derive(Debug, Clone)]
pub struct SubjectRef {
    pub iss: Option<String>,
    pub sub: String,
}

impl SubjectRef {
    /// `ISS/SUB`, split at the last `/` (issuers are URLs); a bare `SUB`
    /// matches whatever the issuer.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (iss, sub) = match text.rsplit_once('/') {
            Some((iss, sub)) => (Some(iss.to_string()), sub.to_string()),
            None => (None, text.to_string()),
        };
        if sub.is_empty() || iss.as_deref() == Some("") {
            return Err(format!(
                "{text:?} is not ISS/SUB (the issuer, a slash, the subject)"
            ));
        }
        Ok(Self { iss, sub })
    }

    fn text(&self) -> String {
        match &self.iss {
            Some(iss) => format!("{iss}/{}", self.sub),
            None => self.sub.clone(),
        }
    }
}

/// What one piece of retention work did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// Entries redacted or expired.
    pub entries: u64,
    /// The retention entry that records it (none when nothing changed).
    pub log_entry: Option<EntryReceipt>,
}

/// Changes computed before anything is written, and the record of them.
#[derive(Default)]
struct Plan {
    changes: Vec<Retained>,
    redacted: BTreeMap<FieldGroup, Vec<u64>>,
    expired: Vec<u64>,
}

impl Plan {
    /// Plans dropping `groups` from entry `seq` (or expiring it, without
    /// groups). Nothing happens to an entry with nothing left to drop.
    fn add(
        &mut self,
        seq: u64,
        stored: &[u8],
        groups: Option<&BTreeSet<FieldGroup>>,
    ) -> Result<(), RetentionError> {
        let unreadable = |reason: String| RetentionError::Entry { seq, reason };
        if sealed::is_expired(stored) {
            return Ok(());
        }
        let entry_before = sealed::open(stored)
            .map_err(|e| unreadable(e.to_string()))?
            .into_entry()
            .map_err(|e| unreadable(e.to_string()))?;
        let before = index::derive(&entry_before);
        // Postings an earlier build stored that nothing reads any more go
        // too: an erased scope must not stay behind in the index.
        let legacy = index::Derived {
            postings: index::legacy_postings(&entry_before),
            ..Default::default()
        };
        let bytes = match groups {
            None => Vec::new(),
            Some(groups) => {
                match sealed::redact(stored, groups).map_err(|e| unreadable(e.to_string()))? {
                    Some(bytes) => bytes,
                    None => return Ok(()),
                }
            }
        };
        // The entry as it will be left, opened once: what it withholds
        // (the record covers all of it, earlier redactions too) and what it
        // is still found by.
        let after = if groups.is_none() {
            self.expired.push(seq);
            index::Derived::default()
        } else {
            let opened = sealed::open(&bytes).map_err(|e| unreadable(e.to_string()))?;
            for group in opened.redacted() {
                self.redacted.entry(group).or_default().push(seq);
            }
            let entry = opened.into_entry().map_err(|e| unreadable(e.to_string()))?;
            index::derive(&entry)
        };
        let kept: BTreeSet<IndexRecord> = after.records(seq).into_iter().collect();
        let dropped = before
            .records(seq)
            .into_iter()
            .chain(legacy.records(seq))
            .filter(|r| !kept.contains(r))
            .collect();
        self.changes.push(Retained {
            seq,
            bytes,
            dropped,
        });
        Ok(())
    }

    fn record(&self, cause: RetentionCause) -> RetentionRecord {
        let redacted = self
            .redacted
            .iter()
            .map(|(group, seqs)| {
                let mut seqs = seqs.clone();
                seqs.sort_unstable();
                seqs.dedup();
                GroupRedaction {
                    group: *group,
                    seqs: seq_ranges(seqs),
                }
            })
            .collect();
        let mut expired = self.expired.clone();
        expired.sort_unstable();
        RetentionRecord {
            cause,
            redacted,
            expired: seq_ranges(expired),
            entries: self.changes.len() as u64,
        }
    }
}

/// Applies retention to one log: the server's background task, `trustpath
/// log redact`, and the erasure route all go through it.
pub struct Retainer {
    store: LogStore,
    log: LogWriter,
    policies: Arc<PolicyStore>,
    settings: Vec<(Setting, Duration)>,
    batch_size: usize,
    /// Per setting, the first seq not yet looked at.
    cursors: Mutex<BTreeMap<Setting, u64>>,
}

impl Retainer {
    pub fn new(
        store: LogStore,
        log: LogWriter,
        policies: Arc<PolicyStore>,
        config: &RetentionConfig,
    ) -> Self {
        let settings = config
            .settings()
            .into_iter()
            .filter_map(|(name, period)| Setting::parse(name).map(|s| (s, period.0)))
            .collect();
        Self {
            store,
            log,
            policies,
            settings,
            batch_size: config.batch_size.max(1),
            cursors: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn has_settings(&self) -> bool {
        !self.settings.is_empty()
    }

    /// Logs the plan's record, then carries it out.
    async fn carry_out(
        &self,
        plan: Plan,
        cause: RetentionCause,
    ) -> Result<Applied, RetentionError> {
        if plan.changes.is_empty() {
            return Ok(Applied::default());
        }
        let record = plan.record(cause);
        let revision = self.policies.current().revision().as_str().to_string();
        let receipt = self
            .log
            .append(rfc3339(Utc::now()), revision, Record::Retention(record))
            .await?;
        let store = self.store.clone();
        let changes = plan.changes;
        let entries = changes.len() as u64;
        for chunk in changes.chunks(self.batch_size) {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tokio::task::spawn_blocking(move || store.retain(&chunk))
                .await
                .map_err(|e| LogError::Writer(format!("retention task failed: {e}")))??;
        }
        Ok(Applied {
            entries,
            log_entry: Some(receipt),
        })
    }

    /// One batch for every setting; whether any has more due right away.
    pub async fn run_once(&self) -> Result<bool, RetentionError> {
        let mut more = false;
        for (setting, period) in self.settings.clone() {
            more |= self.run_setting(setting, period).await?;
        }
        Ok(more)
    }

    /// Looks at up to one batch of entries older than `period`, from the
    /// setting's cursor on.
    async fn run_setting(
        &self,
        setting: Setting,
        period: Duration,
    ) -> Result<bool, RetentionError> {
        let before =
            Utc::now() - chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX);
        let cutoff = before.timestamp_micros();
        let start = match self
            .cursors
            .lock()
            .ok()
            .and_then(|c| c.get(&setting).copied())
        {
            Some(seq) => seq,
            None => resume_at(&self.store, setting)?,
        };
        let (store, batch) = (self.store.clone(), self.batch_size);
        let (plan, end, more) =
            tokio::task::spawn_blocking(move || -> Result<_, RetentionError> {
                let mut plan = Plan::default();
                let next = store.next_seq()?;
                let groups = setting.groups();
                let mut seq = start;
                let mut looked = 0;
                while seq < next && looked < batch {
                    let stored = store.entry(seq)?.unwrap_or_default();
                    if !sealed::is_expired(&stored) {
                        let Some((kind, micros)) = index::kind_and_time(&stored) else {
                            return Err(RetentionError::Entry {
                                seq,
                                reason: "no kind or time in its commitment".into(),
                            });
                        };
                        // Entries come in time order (near enough, in a fleet).
                        if micros >= cutoff {
                            break;
                        }
                        if sealed::retained_kind(&kind) {
                            plan.add(seq, &stored, groups.as_ref())?;
                        }
                    }
                    seq += 1;
                    looked += 1;
                }
                Ok((plan, seq, looked == batch))
            })
            .await
            .map_err(|e| LogError::Writer(format!("retention task failed: {e}")))??;
        let cause = RetentionCause::Rule {
            setting: setting.name().to_string(),
            before: rfc3339(before),
            scanned: [start, end],
        };
        self.carry_out(plan, cause).await?;
        if let Ok(mut cursors) = self.cursors.lock() {
            cursors.insert(setting, end);
        }
        Ok(more)
    }

    /// Redacts one person's personal fields across the whole log: every
    /// connection decision made for them, and the grants and tool calls of
    /// those sessions.
    pub async fn erase(
        &self,
        subject: &SubjectRef,
        requested_by: &str,
    ) -> Result<Applied, RetentionError> {
        let store = self.store.clone();
        let who = subject.clone();
        let plan = tokio::task::spawn_blocking(move || -> Result<Plan, RetentionError> {
            let personal: BTreeSet<FieldGroup> = FieldGroup::ALL
                .into_iter()
                .filter(|g| g.personal())
                .collect();
            let mut sessions = BTreeSet::new();
            for seq in store.postings_descending(Field::Subject, &who.sub, None) {
                let seq = seq?;
                let entry = crate::log::query::entry(&store, seq)?;
                if let Record::ConnectionDecision(r) = &entry.record {
                    let matches = ConnectionInput::logged_subject(&r.input)
                        .is_some_and(|s| who.iss.is_none() || s.iss == who.iss);
                    if matches {
                        sessions.insert(r.session_id.clone());
                    }
                }
            }
            let mut seqs = BTreeSet::new();
            for session in &sessions {
                for seq in store.postings_descending(Field::Session, session, None) {
                    seqs.insert(seq?);
                }
            }
            let mut plan = Plan::default();
            for seq in seqs {
                let stored = store.entry(seq)?.unwrap_or_default();
                let retained =
                    index::kind_and_time(&stored).is_some_and(|(k, _)| sealed::retained_kind(&k));
                if retained {
                    plan.add(seq, &stored, Some(&personal))?;
                }
            }
            Ok(plan)
        })
        .await
        .map_err(|e| LogError::Writer(format!("retention task failed: {e}")))??;
        if plan.changes.is_empty() {
            return Err(RetentionError::NotFound(format!(
                "no entry holds personal fields of subject {:?}",
                subject.text()
            )));
        }
        let cause = RetentionCause::Erasure {
            requested_by: requested_by.to_string(),
            subject_sha256: sha256_hex(subject.text().as_bytes()),
        };
        self.carry_out(plan, cause).await
    }
}

/// Where a setting's pass starts after a restart: the start of the range
/// its last record looked at (done again, in case the record was logged
/// and the server stopped before the work was).
fn resume_at(store: &LogStore, setting: Setting) -> Result<u64, RetentionError> {
    for seq in store.postings_descending(Field::Kind, "retention", None) {
        let entry = crate::log::query::entry(store, seq?)?;
        if let Record::Retention(RetentionRecord {
            cause:
                RetentionCause::Rule {
                    setting: name,
                    scanned,
                    ..
                },
            ..
        }) = &entry.record
        {
            if name == setting.name() {
                return Ok(scanned[0]);
            }
        }
    }
    Ok(0)
}

/// The server's background retention: a batch per setting every so often,
/// sooner while there is a backlog. Errors are logged and tried again.
pub async fn run(retainer: Arc<Retainer>, interval: Duration) {
    if !retainer.has_settings() {
        return;
    }
    loop {
        let pause = match retainer.run_once().await {
            // A backlog: the next batch soon, leaving room for decisions.
            Ok(true) => Duration::from_millis(50),
            Ok(false) => interval,
            Err(e) => {
                tracing::warn!(error = %e, "retention pass failed; trying again later");
                interval
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// Counts and stored bytes of a set of entries.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    pub entries: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: usize) {
        self.entries += 1;
        self.bytes += bytes as u64;
    }
}

/// `trustpath log stats`: what the log holds, how fast it grows, and what
/// it would hold under the configured retention.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub total: Tally,
    pub expired_entries: u64,
    pub redacted_entries: u64,
    pub by_kind: BTreeMap<String, Tally>,
    /// By age, youngest first: `0-1d`, `1-7d`, `7-30d`, `30-90d`,
    /// `90-365d`, `365d+`.
    pub by_age: Vec<(&'static str, Tally)>,
    /// Average over the last 7 days (or the log's age, when younger).
    pub growth_per_day: Tally,
    /// Entry bytes once every setting due today has run.
    pub bytes_under_retention: u64,
    /// Entry bytes at the current growth after a year, kept as configured.
    pub bytes_after_a_year_under_retention: u64,
}

const AGES: [(&str, i64); 6] = [
    ("0-1d", 1),
    ("1-7d", 7),
    ("7-30d", 30),
    ("30-90d", 90),
    ("90-365d", 365),
    ("365d+", i64::MAX),
];

/// Reads every entry once. Entry bytes only: indexes and the engine's own
/// overhead come on top (BENCHMARKS.md gives the ratio per engine).
pub fn stats(store: &LogStore, config: &RetentionConfig) -> Result<Stats, RetentionError> {
    const DAY: i64 = 86_400_000_000;
    let now = Utc::now().timestamp_micros();
    let settings: Vec<(Setting, i64)> = config
        .settings()
        .into_iter()
        .filter_map(|(name, p)| Some((Setting::parse(name)?, i64::try_from(p.0.as_micros()).ok()?)))
        .collect();
    let mut stats = Stats {
        by_age: AGES
            .iter()
            .map(|(name, _)| (*name, Tally::default()))
            .collect(),
        ..Stats::default()
    };
    let mut oldest = now;
    let mut recent = Tally::default();
    // The ages within a year at which a setting falls due: what the
    // entries would keep at each, to project a year of growth.
    let mut breakpoints: Vec<i64> = settings
        .iter()
        .map(|(_, p)| *p)
        .filter(|p| *p < 365 * DAY)
        .collect();
    breakpoints.push(0);
    breakpoints.sort_unstable();
    breakpoints.dedup();
    let mut kept_at = vec![0u64; breakpoints.len()];
    let mut sampled = 0u64;
    for item in store.entries() {
        let (seq, stored) = item?;
        if sealed::is_expired(&stored) {
            stats.expired_entries += 1;
            stats.total.entries += 1;
            continue;
        }
        let Some((kind, micros)) = index::kind_and_time(&stored) else {
            return Err(RetentionError::Entry {
                seq,
                reason: "no kind or time in its commitment".into(),
            });
        };
        stats.total.add(stored.len());
        stats
            .by_kind
            .entry(kind.clone())
            .or_default()
            .add(stored.len());
        let age = now.saturating_sub(micros);
        oldest = oldest.min(micros);
        let bucket = AGES
            .iter()
            .position(|(_, days)| age < days.saturating_mul(DAY))
            .unwrap_or(AGES.len() - 1);
        stats.by_age[bucket].1.add(stored.len());
        if age < 7 * DAY {
            recent.add(stored.len());
        }
        if sealed::open(&stored).is_ok_and(|o| !o.withheld.is_empty()) {
            stats.redacted_entries += 1;
        }
        // What the entry keeps now, and a year on, under the settings.
        let retained = sealed::retained_kind(&kind);
        stats.bytes_under_retention += kept_bytes(&stored, &settings, age, retained);
        for (kept, at) in kept_at.iter_mut().zip(&breakpoints) {
            *kept += kept_bytes(&stored, &settings, *at, retained);
        }
        sampled += stored.len() as u64;
    }
    let days = (now.saturating_sub(oldest) / DAY).clamp(1, 7) as u64;
    stats.growth_per_day = Tally {
        entries: recent.entries / days,
        bytes: recent.bytes / days,
    };
    // A year of days' growth, each day's entries keeping what entries of
    // its age keep (the share of bytes today's entries would keep then).
    if sampled > 0 {
        let mut year = 0f64;
        for day in 0..365i64 {
            let at = breakpoints
                .iter()
                .rposition(|b| *b <= day * DAY)
                .unwrap_or(0);
            year += stats.growth_per_day.bytes as f64 * kept_at[at] as f64 / sampled as f64;
        }
        stats.bytes_after_a_year_under_retention = year as u64;
    }
    Ok(stats)
}

/// The bytes `stored` keeps at `age` under `settings`.
fn kept_bytes(stored: &[u8], settings: &[(Setting, i64)], age: i64, retained: bool) -> u64 {
    if !retained {
        return stored.len() as u64;
    }
    let due: Vec<Setting> = settings
        .iter()
        .filter(|(_, period)| age >= *period)
        .map(|(s, _)| *s)
        .collect();
    if due.contains(&Setting::Expire) {
        return 0;
    }
    let groups: BTreeSet<FieldGroup> = due.iter().filter_map(|s| s.groups()).flatten().collect();
    match sealed::redact(stored, &groups) {
        Ok(Some(bytes)) => bytes.len() as u64,
        _ => stored.len() as u64,
    }
}
