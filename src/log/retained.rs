//! What verification holds redacted and expired entries against: every
//! missing disclosure and every expired entry must be covered by a
//! retention record logged after it. Tracked in one pass, in memory
//! proportional to the number of runs of such entries, not their count.

use std::collections::BTreeMap;

use serde::Serialize;

use super::entry::{RetentionRecord, SeqRange};
use super::sealed::FieldGroup;

/// Seqs added in ascending order, kept as runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Runs(Vec<SeqRange>);

impl Runs {
    pub fn add(&mut self, seq: u64) {
        match self.0.last_mut() {
            Some(last) if last[1] == seq => last[1] = seq + 1,
            _ => self.0.push([seq, seq + 1]),
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|[from, to]| to - from).sum()
    }

    pub fn first(&self) -> Option<u64> {
        self.0.first().map(|r| r[0])
    }

    pub fn ranges(&self) -> &[SeqRange] {
        &self.0
    }

    /// Takes out every seq that lies in `covered`.
    fn remove(&mut self, covered: &[SeqRange]) {
        let mut out = Vec::with_capacity(self.0.len());
        for &[mut from, to] in &self.0 {
            // Covered ranges are few; walk the run from its start.
            let mut cuts: Vec<SeqRange> = covered
                .iter()
                .filter(|[a, b]| *a < to && *b > from)
                .copied()
                .collect();
            cuts.sort_unstable();
            for [a, b] in cuts {
                if a > from {
                    out.push([from, a.min(to)]);
                }
                from = from.max(b);
                if from >= to {
                    break;
                }
            }
            if from < to {
                out.push([from, to]);
            }
        }
        self.0 = out;
    }
}

/// Redactions and expiries seen so far, and those no record covers yet.
#[derive(Debug, Default)]
pub struct RetentionLedger {
    redacted: Runs,
    expired: Runs,
    unrecorded_redactions: BTreeMap<FieldGroup, Runs>,
    unrecorded_expiries: Runs,
}

/// What a verification found retention had done.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionSeen {
    /// Entries with at least one field redacted.
    pub redacted: Runs,
    /// Entries expired (only their leaf hash is left).
    pub expired: Runs,
}

/// The first redaction or expiry no retention record covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrecorded {
    Redaction { seq: u64, group: FieldGroup },
    Expiry { seq: u64 },
}

impl RetentionLedger {
    /// Entry `seq` lacks the disclosures of `groups`.
    pub fn redacted(&mut self, seq: u64, groups: impl IntoIterator<Item = FieldGroup>) {
        let mut any = false;
        for group in groups {
            any = true;
            self.unrecorded_redactions
                .entry(group)
                .or_default()
                .add(seq);
        }
        if any {
            self.redacted.add(seq);
        }
    }

    /// Entry `seq` is expired.
    pub fn expired(&mut self, seq: u64) {
        self.expired.add(seq);
        self.unrecorded_expiries.add(seq);
    }

    /// A retention record: what it covers is recorded.
    pub fn record(&mut self, record: &RetentionRecord) {
        for redaction in &record.redacted {
            if let Some(runs) = self.unrecorded_redactions.get_mut(&redaction.group) {
                runs.remove(&redaction.seqs);
            }
        }
        // Expiring an entry drops every disclosure it had, too.
        for runs in self.unrecorded_redactions.values_mut() {
            runs.remove(&record.expired);
        }
        self.unrecorded_expiries.remove(&record.expired);
    }

    /// The first uncovered redaction or expiry, by seq.
    pub fn first_unrecorded(&self) -> Option<Unrecorded> {
        let redaction = self
            .unrecorded_redactions
            .iter()
            .filter_map(|(group, runs)| runs.first().map(|seq| (seq, *group)))
            .min();
        let expiry = self.unrecorded_expiries.first();
        match (redaction, expiry) {
            (Some((seq, group)), e) if e.is_none_or(|e| seq < e) => {
                Some(Unrecorded::Redaction { seq, group })
            }
            (_, Some(seq)) => Some(Unrecorded::Expiry { seq }),
            _ => None,
        }
    }

    pub fn seen(self) -> RetentionSeen {
        RetentionSeen {
            redacted: self.redacted,
            expired: self.expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_lose_exactly_the_covered_seqs() {
        let mut runs = Runs::default();
        for seq in [1, 2, 3, 4, 5, 8, 9, 12] {
            runs.add(seq);
        }
        runs.remove(&[[2, 4], [9, 20]]);
        assert_eq!(runs.ranges(), &[[1, 2], [4, 6], [8, 9]]);
        runs.remove(&[[0, 100]]);
        assert_eq!(runs.count(), 0);
    }
}
