//! What changed between two dynamic config documents: tiers, limits and rules by id, and
//! whether the rules' order changed (unlocks are reported in rule order).

use std::{collections::BTreeMap, fmt};

use merit_config::DynamicConfig;
use merit_messages::{RuleId, TierId};
use serde::Serialize;
use serde_json::Value;

use super::{ConfigCenter, Result};

/// What differs in one keyed section (tiers by id, rules by id) between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionDiff<K> {
    /// Present only in the newer version, with their canonical JSON.
    pub added: Vec<Entry<K>>,
    /// Present only in the older version, with their canonical JSON.
    pub removed: Vec<Entry<K>>,
    /// Present in both with a different canonical JSON.
    pub changed: Vec<Change<K>>,
}

impl<K> Default for SectionDiff<K> {
    fn default() -> Self {
        Self {
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        }
    }
}

impl<K> SectionDiff<K> {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// An entry added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry<K> {
    /// Its id.
    pub id: K,
    /// Its canonical JSON.
    pub value: Value,
}

/// An entry present in both versions with different contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change<K> {
    /// Its id.
    pub id: K,
    /// Canonical JSON in the older version.
    pub before: Value,
    /// Canonical JSON in the newer version.
    pub after: Value,
}

/// One limit whose value differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitChange {
    /// The field under `limits`.
    pub field: &'static str,
    /// Value in the older version.
    pub before: u32,
    /// Value in the newer version.
    pub after: u32,
}

/// The differences between two versions `from` → `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    /// The version compared from.
    pub from: u64,
    /// The version compared to.
    pub to: u64,
    /// Tiers by id.
    pub tiers: SectionDiff<TierId>,
    /// Limits that changed.
    pub limits: Vec<LimitChange>,
    /// Rules by id.
    pub rules: SectionDiff<RuleId>,
    /// Whether the rules both versions share are listed in a different order (the order
    /// in which unlocks are reported).
    pub rules_reordered: bool,
}

impl ConfigDiff {
    /// Compares two configurations (`from` → `to`).
    pub fn between(from: &DynamicConfig, to: &DynamicConfig) -> Self {
        let tiers = section(
            from.tiers.iter().map(|(id, t)| (id.clone(), json(t))),
            to.tiers.iter().map(|(id, t)| (id.clone(), json(t))),
        );
        let mut limits = Vec::new();
        let (a, b) = (from.limits, to.limits);
        for (field, before, after) in [
            (
                "max_multiplier_bps",
                a.max_multiplier_bps,
                b.max_multiplier_bps,
            ),
            (
                "max_boosting_nfts",
                a.max_boosting_nfts,
                b.max_boosting_nfts,
            ),
        ] {
            if before != after {
                limits.push(LimitChange {
                    field,
                    before,
                    after,
                });
            }
        }
        let rules = section(
            from.rules.rules.iter().map(|r| (r.id.clone(), json(r))),
            to.rules.rules.iter().map(|r| (r.id.clone(), json(r))),
        );
        let shared = |of: &DynamicConfig, other: &DynamicConfig| -> Vec<RuleId> {
            of.rules
                .rules
                .iter()
                .filter(|r| other.rules.get(&r.id).is_some())
                .map(|r| r.id.clone())
                .collect()
        };
        let rules_reordered = shared(from, to) != shared(to, from);
        Self {
            from: from.version,
            to: to.version,
            tiers,
            limits,
            rules,
            rules_reordered,
        }
    }

    /// Whether the two versions are equal.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
            && self.limits.is_empty()
            && self.rules.is_empty()
            && !self.rules_reordered
    }
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("config values are plain data and always serialise")
}

fn section<K: Ord + Clone>(
    before: impl Iterator<Item = (K, Value)>,
    after: impl Iterator<Item = (K, Value)>,
) -> SectionDiff<K> {
    let before: BTreeMap<K, Value> = before.collect();
    let after: BTreeMap<K, Value> = after.collect();
    let mut diff = SectionDiff::default();
    for (id, old) in &before {
        match after.get(id) {
            None => diff.removed.push(Entry {
                id: id.clone(),
                value: old.clone(),
            }),
            Some(new) if new != old => diff.changed.push(Change {
                id: id.clone(),
                before: old.clone(),
                after: new.clone(),
            }),
            Some(_) => {}
        }
    }
    for (id, new) in after {
        if !before.contains_key(&id) {
            diff.added.push(Entry { id, value: new });
        }
    }
    diff
}

impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "diff of config version {} -> {}", self.from, self.to)?;
        if self.is_empty() {
            return writeln!(f, "  (identical)");
        }
        write_section(f, "tier", &self.tiers)?;
        for l in &self.limits {
            writeln!(f, "~ limits.{}: {} -> {}", l.field, l.before, l.after)?;
        }
        write_section(f, "rule", &self.rules)?;
        if self.rules_reordered {
            writeln!(
                f,
                "~ rule order changed (unlocks are reported in rule order)"
            )?;
        }
        Ok(())
    }
}

fn write_section<K: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    diff: &SectionDiff<K>,
) -> fmt::Result {
    for e in &diff.added {
        writeln!(f, "+ {what} {}: {}", e.id, e.value)?;
    }
    for e in &diff.removed {
        writeln!(f, "- {what} {}: {}", e.id, e.value)?;
    }
    for c in &diff.changed {
        writeln!(f, "~ {what} {}", c.id)?;
        writeln!(f, "    before: {}", c.before)?;
        writeln!(f, "    after:  {}", c.after)?;
    }
    Ok(())
}

impl ConfigCenter {
    /// The differences from version `a` to version `b` (0: the built-in document).
    pub async fn diff(&self, a: u64, b: u64) -> Result<ConfigDiff> {
        let from = self.config_at(a).await?;
        let to = self.config_at(b).await?;
        Ok(ConfigDiff::between(&from, &to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merit_config::DynamicConfig;

    const DOC: &str = r#"{
        "tiers": { "bronze": { "title": "Bronze", "bonus_bps": 1000 },
                   "gold": { "title": "Gold", "bonus_bps": 5000 } },
        "limits": { "max_multiplier_bps": 15000, "max_boosting_nfts": 2 },
        "rules": [
          { "id": "a", "tier": "bronze", "title": "A",
            "when": { "count": { "activity": "proposal_created", "at_least": 1 } } },
          { "id": "b", "tier": "gold", "title": "B",
            "when": { "count": { "activity": "vote_cast", "at_least": 3 } } } ]
    }"#;

    fn parse(doc: &str, version: u64) -> DynamicConfig {
        DynamicConfig::parse(doc.as_bytes(), version).expect("valid")
    }

    #[test]
    fn identical_documents_have_an_empty_diff() {
        let d = ConfigDiff::between(&parse(DOC, 1), &parse(DOC, 2));
        assert!(d.is_empty(), "{d}");
        assert!(d.to_string().contains("identical"));
    }

    #[test]
    fn diff_names_each_added_removed_and_changed_entry() {
        let next = DOC
            .replace(r#""at_least": 3"#, r#""at_least": 5"#)
            .replace(r#""bonus_bps": 5000"#, r#""bonus_bps": 6000"#)
            .replace(r#""max_boosting_nfts": 2"#, r#""max_boosting_nfts": 3"#)
            .replace(r#""id": "a""#, r#""id": "c""#);
        let d = ConfigDiff::between(&parse(DOC, 1), &parse(&next, 2));
        let ids = |v: &[Entry<RuleId>]| v.iter().map(|e| e.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&d.rules.added), ["c"]);
        assert_eq!(ids(&d.rules.removed), ["a"]);
        assert_eq!(d.rules.changed.len(), 1);
        assert_eq!(d.rules.changed[0].id.to_string(), "b");
        assert_eq!(d.tiers.changed.len(), 1);
        assert_eq!(d.tiers.changed[0].id.to_string(), "gold");
        assert_eq!(d.limits.len(), 1);
        assert_eq!(d.limits[0].field, "max_boosting_nfts");
        let text = d.to_string();
        for needle in [
            "+ rule c",
            "- rule a",
            "~ rule b",
            "~ tier gold",
            "~ limits.max_boosting_nfts: 2 -> 3",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }

    #[test]
    fn reordering_rules_is_reported() {
        let swapped = r#"{
        "tiers": { "bronze": { "title": "Bronze", "bonus_bps": 1000 },
                   "gold": { "title": "Gold", "bonus_bps": 5000 } },
        "limits": { "max_multiplier_bps": 15000, "max_boosting_nfts": 2 },
        "rules": [
          { "id": "b", "tier": "gold", "title": "B",
            "when": { "count": { "activity": "vote_cast", "at_least": 3 } } },
          { "id": "a", "tier": "bronze", "title": "A",
            "when": { "count": { "activity": "proposal_created", "at_least": 1 } } } ]
        }"#;
        let d = ConfigDiff::between(&parse(DOC, 1), &parse(swapped, 2));
        assert!(d.rules.is_empty());
        assert!(d.rules_reordered);
        assert!(!d.is_empty());
    }
}
