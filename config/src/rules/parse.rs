//! Reading a rule document: strict JSON decoding into wire types (unknown fields refused,
//! every serde error located by its JSON path), lowering to the typed language (a
//! condition object names exactly one kind), then validation of everything the types do
//! not enforce (thresholds, nesting, tiers, unique ids, repeat constraints).
//!
//! The flow is all-or-nothing: a document either becomes a [`RuleSet`] whose every rule
//! [`evaluate`](super::evaluate) can run, or the first problem found, as a [`RuleError`].

use std::collections::HashMap;

use merit_messages::{RuleId, TierId};
use serde::{Deserialize, Deserializer};

use super::{
    error::{quote, RuleError},
    facts::MAX_RECENT_PER_KIND,
    language::{ActivityKind, Condition, Repeat, Rule, RuleSet, Window},
};

/// Largest accepted rule document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most rules in one set.
pub const MAX_RULES: usize = 500;
/// Deepest nesting of conditions: the `when` condition is level 1, its children level 2.
pub const MAX_DEPTH: usize = 8;
/// Most condition nodes (leaves and `all_of`/`any_of` alike) in one rule.
pub const MAX_NODES: usize = 64;
/// Longest rule title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

impl RuleSet {
    /// Strict parse + validation of a rule document `{"rules": [rule, ...]}`.
    ///
    /// `known_tiers`: the tiers the dynamic config defines; a rule naming any other tier
    /// (as its `tier` or in a `held_while`) is refused.
    pub fn parse(json: &[u8], known_tiers: &[TierId]) -> Result<RuleSet, RuleError> {
        if json.len() > MAX_DOCUMENT_BYTES {
            return Err(RuleError::new(
                "$",
                format!(
                    "document is {} bytes: at most {MAX_DOCUMENT_BYTES} allowed",
                    json.len()
                ),
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(json);
        let doc: WireDocument =
            serde_path_to_error::deserialize(merit_messages::strict::Strict(&mut de))
                .map_err(from_serde_error)?;
        de.end().map_err(|e| {
            RuleError::new("$", format!("trailing data after the document: {e}")).with_source(e)
        })?;
        let rules = doc
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, rule)| rule.lower(&format!("rules[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let set = RuleSet { rules };
        set.validate(known_tiers)?;
        Ok(set)
    }

    /// Checks a rule set built in code as [`RuleSet::parse`] checks a document (parse calls
    /// this). Evaluation is total on any value, but only a validated set has the meaning
    /// the documentation gives.
    pub fn validate(&self, known_tiers: &[TierId]) -> Result<(), RuleError> {
        if self.rules.len() > MAX_RULES {
            return Err(RuleError::new(
                "rules",
                format!(
                    "{} rules: a set holds at most {MAX_RULES}",
                    self.rules.len()
                ),
            ));
        }
        let tiers = Tiers(known_tiers);
        let mut first_index: HashMap<&RuleId, usize> = HashMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let base = format!("rules[{i}]");
            if let Some(first) = first_index.insert(&rule.id, i) {
                return Err(RuleError::new(
                    format!("{base}.id"),
                    format!(
                        "duplicate rule id {:?}: rules[{first}] already uses it",
                        rule.id.as_str()
                    ),
                ));
            }
            tiers.check(&rule.tier, &format!("{base}.tier"))?;
            check_title(&rule.title, &format!("{base}.title"))?;
            let mut nodes = 0;
            check_condition(&rule.when, &format!("{base}.when"), 1, &mut nodes, &tiers)?;
            check_repeat(rule, &format!("{base}.repeat"))?;
        }
        Ok(())
    }
}

/// The tiers the config defines.
struct Tiers<'a>(&'a [TierId]);

impl Tiers<'_> {
    fn check(&self, tier: &TierId, path: &str) -> Result<(), RuleError> {
        if self.0.contains(tier) {
            return Ok(());
        }
        const SHOWN: usize = 20;
        let mut known: Vec<&str> = self.0.iter().take(SHOWN).map(TierId::as_str).collect();
        if self.0.len() > SHOWN {
            known.push("…");
        }
        let defined = if known.is_empty() {
            "the config defines no tiers".to_string()
        } else {
            format!("the config defines {}", known.join(", "))
        };
        Err(RuleError::new(
            path,
            format!("unknown tier {:?}: {defined}", tier.as_str()),
        ))
    }
}

fn check_title(title: &str, path: &str) -> Result<(), RuleError> {
    let chars = title.chars().count();
    if title.trim().is_empty() || chars > MAX_TITLE_CHARS {
        return Err(RuleError::new(
            path,
            format!(
                "{} has {chars} characters: expected 1-{MAX_TITLE_CHARS} characters, not all blank",
                quote(title)
            ),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(RuleError::new(
            path,
            format!("{} contains control characters", quote(title)),
        ));
    }
    Ok(())
}

fn check_at_least(at_least: u32, path: String) -> Result<(), RuleError> {
    if at_least == 0 {
        return Err(RuleError::new(
            path,
            "must be at least 1 (a threshold of 0 would hold for every user)",
        ));
    }
    Ok(())
}

fn check_condition(
    condition: &Condition,
    path: &str,
    depth: usize,
    nodes: &mut usize,
    tiers: &Tiers<'_>,
) -> Result<(), RuleError> {
    if depth > MAX_DEPTH {
        return Err(RuleError::new(
            path,
            format!(
                "conditions nest at most {MAX_DEPTH} levels deep; this one is at level {depth}"
            ),
        ));
    }
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(RuleError::new(
            path,
            format!("a rule has at most {MAX_NODES} conditions; this is condition {nodes}"),
        ));
    }
    match condition {
        Condition::Count {
            at_least, within, ..
        } => {
            let at = format!("{path}.count.at_least");
            check_at_least(*at_least, at.clone())?;
            if within.is_some() && u64::from(*at_least) > MAX_RECENT_PER_KIND as u64 {
                return Err(RuleError::new(
                    at,
                    format!(
                        "{at_least} is too many for a windowed count: merit keeps the latest \
                         {MAX_RECENT_PER_KIND} activities of each kind, so at most \
                         {MAX_RECENT_PER_KIND}"
                    ),
                ));
            }
        }
        Condition::Streak { at_least } => {
            check_at_least(*at_least, format!("{path}.streak.at_least"))?;
        }
        Condition::HeldWhile { tier, at_least, .. } => {
            tiers.check(tier, &format!("{path}.held_while.tier"))?;
            check_at_least(*at_least, format!("{path}.held_while.at_least"))?;
        }
        Condition::AllOf(children) | Condition::AnyOf(children) => {
            let key = if matches!(condition, Condition::AllOf(_)) {
                "all_of"
            } else {
                "any_of"
            };
            if children.is_empty() {
                return Err(RuleError::new(
                    format!("{path}.{key}"),
                    "must list at least one condition",
                ));
            }
            for (j, child) in children.iter().enumerate() {
                check_condition(
                    child,
                    &format!("{path}.{key}[{j}]"),
                    depth + 1,
                    nodes,
                    tiers,
                )?;
            }
        }
    }
    Ok(())
}

const WINDOWED_CANNOT_REPEAT: &str = "a windowed count rises and falls, so it cannot \
    repeat: use \"once\", or count without \"within\"";
const COMPOSITE_CANNOT_REPEAT: &str = "repeating needs one counted quantity: \"when\" must be \
    a single count, streak or held_while, not all_of/any_of";

/// `Every(n)` needs one quantity that never decreases, reached at or before `n`.
fn check_repeat(rule: &Rule, path: &str) -> Result<(), RuleError> {
    let Repeat::Every(n) = rule.repeat else {
        return Ok(());
    };
    let every = format!("{path}.every");
    if n == 0 {
        return Err(RuleError::new(every, "must be at least 1"));
    }
    let at_least = match &rule.when {
        Condition::Count {
            within: None,
            at_least,
            ..
        }
        | Condition::Streak { at_least }
        | Condition::HeldWhile { at_least, .. } => *at_least,
        Condition::Count { .. } => return Err(RuleError::new(every, WINDOWED_CANNOT_REPEAT)),
        Condition::AllOf(_) | Condition::AnyOf(_) => {
            return Err(RuleError::new(every, COMPOSITE_CANNOT_REPEAT))
        }
    };
    if at_least > n {
        return Err(RuleError::new(
            every,
            format!(
                "every {n} is below the condition's at_least ({at_least}): the first unlock \
                 would be {} at once; use every >= at_least",
                at_least / n
            ),
        ));
    }
    Ok(())
}

/// Deserialises a field that may be absent but, when present, must not be `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The document as written. The `rename`s give serde's messages the document's names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "RuleSet")]
struct WireDocument {
    rules: Vec<WireRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Rule")]
struct WireRule {
    id: RuleId,
    tier: TierId,
    title: String,
    #[serde(default, deserialize_with = "present")]
    repeat: Option<Repeat>,
    when: WireCondition,
}

impl WireRule {
    fn lower(self, path: &str) -> Result<Rule, RuleError> {
        Ok(Rule {
            id: self.id,
            tier: self.tier,
            title: self.title,
            repeat: self.repeat.unwrap_or_default(),
            when: self.when.lower(&format!("{path}.when"))?,
        })
    }
}

/// A condition object: exactly one of its fields is set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Condition")]
struct WireCondition {
    #[serde(default, deserialize_with = "present")]
    count: Option<WireCount>,
    #[serde(default, deserialize_with = "present")]
    streak: Option<WireStreak>,
    #[serde(default, deserialize_with = "present")]
    held_while: Option<WireHeldWhile>,
    #[serde(default, deserialize_with = "present")]
    all_of: Option<Vec<WireCondition>>,
    #[serde(default, deserialize_with = "present")]
    any_of: Option<Vec<WireCondition>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Count")]
struct WireCount {
    activity: ActivityKind,
    at_least: u32,
    #[serde(default, deserialize_with = "present")]
    within: Option<Window>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Streak")]
struct WireStreak {
    at_least: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "HeldWhile")]
struct WireHeldWhile {
    tier: TierId,
    activity: ActivityKind,
    #[serde(default, deserialize_with = "present")]
    at_least: Option<u32>,
}

impl WireCondition {
    fn lower(self, path: &str) -> Result<Condition, RuleError> {
        let lower_all = |children: Vec<WireCondition>, key: &str| {
            children
                .into_iter()
                .enumerate()
                .map(|(j, c)| c.lower(&format!("{path}.{key}[{j}]")))
                .collect::<Result<Vec<_>, _>>()
        };
        match (
            self.count,
            self.streak,
            self.held_while,
            self.all_of,
            self.any_of,
        ) {
            (Some(c), None, None, None, None) => Ok(Condition::Count {
                activity: c.activity,
                at_least: c.at_least,
                within: c.within,
            }),
            (None, Some(s), None, None, None) => Ok(Condition::Streak {
                at_least: s.at_least,
            }),
            (None, None, Some(h), None, None) => Ok(Condition::HeldWhile {
                tier: h.tier,
                activity: h.activity,
                at_least: h.at_least.unwrap_or(1),
            }),
            (None, None, None, Some(children), None) => {
                Ok(Condition::AllOf(lower_all(children, "all_of")?))
            }
            (None, None, None, None, Some(children)) => {
                Ok(Condition::AnyOf(lower_all(children, "any_of")?))
            }
            (count, streak, held_while, all_of, any_of) => {
                let names: Vec<&str> = [
                    ("count", count.is_some()),
                    ("streak", streak.is_some()),
                    ("held_while", held_while.is_some()),
                    ("all_of", all_of.is_some()),
                    ("any_of", any_of.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, set)| set.then_some(name))
                .collect();
                let found = if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(" and ")
                };
                Err(RuleError::new(
                    path,
                    format!(
                        "a condition has exactly one of count, streak, held_while, all_of, \
                         any_of; found {found}"
                    ),
                ))
            }
        }
    }
}

/// A serde failure as a rule error, located by the shared JSON error description.
pub(crate) fn from_serde_error(e: serde_path_to_error::Error<serde_json::Error>) -> RuleError {
    let err = merit_messages::json_error(e);
    let cause = err.cause().clone();
    if err.reason.starts_with("recursion limit exceeded") {
        return RuleError::new(
            err.field,
            format!("nested too deeply: conditions nest at most {MAX_DEPTH} levels deep"),
        )
        .with_cause(cause);
    }
    RuleError::new(err.field, err.reason).with_cause(cause)
}

#[cfg(test)]
mod tests;
