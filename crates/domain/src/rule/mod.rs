//! Rules that page: a match over newly stored items (a CIS preset or fields with `*` globs), and
//! what to do with a match (a PagerDuty alert or change event, or a signed webhook). Matching is
//! pure: the store calls [`matches_of`] in the transaction that stores the items, and writes what
//! it answers (an outbox row and an `alert` item per match) in that same transaction.

pub mod delivery;
pub mod presets;
pub mod target;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{Details, EventKind, IngestPath, Link, NewEvent};
use crate::validation::{self, Invalid};

pub use presets::{preset, Preset, PRESETS};

/// The `source` of the alert items rules make; items of this source are never matched, so a
/// rule cannot feed on its own alerts.
pub const RULES_SOURCE: &str = "changetrail.rules";
pub const SEVERITIES: &[&str] = crate::posted::SEVERITIES;
const MAX_PATTERNS: usize = 100;
const MAX_PATTERN_CHARS: usize = 256;

/// What an item must be for a rule to fire: a preset and/or fields; every field given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// `eventName`s, with `*` globs (`Delete*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<String>,
    /// The item's actor (`alice`) or the caller's ARN, with `*` globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actor_patterns: Vec<String>,
    /// `userIdentity.type`: `Root`, `IAMUser`, `AssumedRole`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// A console sign-in (`ConsoleLogin`) whose `additionalEventData.MFAUsed` is not `Yes`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub console_login_without_mfa: bool,
}

impl RuleMatch {
    /// Checks a match as given: a known preset, patterns of sane size, and at least one test
    /// (a rule that matches everything would page on every change).
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut errors = Invalid::default();
        if let Some(id) = &self.preset {
            if preset(id).is_none() {
                errors.push(
                    "match.preset",
                    format!("unknown preset {id:?}; GET /v1/rules/presets lists them (cis-aws-1 to cis-aws-15)"),
                );
            }
        }
        for (name, patterns) in [
            ("event_names", &self.event_names),
            ("event_sources", &self.event_sources),
            ("error_codes", &self.error_codes),
            ("actor_patterns", &self.actor_patterns),
            ("identity_types", &self.identity_types),
        ] {
            if patterns.len() > MAX_PATTERNS {
                errors.push(format!("match.{name}"), format!("at most {MAX_PATTERNS} patterns"));
            }
            for (i, p) in patterns.iter().enumerate() {
                if p.is_empty() || p.chars().count() > MAX_PATTERN_CHARS || p.chars().any(char::is_control) {
                    errors.push(
                        format!("match.{name}[{i}]"),
                        format!("1–{MAX_PATTERN_CHARS} characters without control characters"),
                    );
                } else if p.chars().all(|c| c == '*') {
                    errors.push(
                        format!("match.{name}[{i}]"),
                        "a pattern of only `*` matches everything; leave the field out",
                    );
                }
            }
        }
        let tests = self.preset.is_some()
            || !self.event_names.is_empty()
            || !self.event_sources.is_empty()
            || !self.error_codes.is_empty()
            || !self.actor_patterns.is_empty()
            || !self.identity_types.is_empty()
            || self.console_login_without_mfa;
        if !tests {
            errors.push(
                "match",
                "give a preset or at least one of event_names, event_sources, error_codes, actor_patterns, \
                 identity_types, console_login_without_mfa (read_only alone would match every change)",
            );
        }
        errors.into_result()
    }

    pub fn matches(&self, item: &NewEvent) -> bool {
        self.matches_facts(item, &Facts::of(item))
    }

    /// The cheap tests first (names, sources), the preset's record walk last.
    fn matches_facts(&self, item: &NewEvent, facts: &Facts<'_>) -> bool {
        let any = |patterns: &[String], value: Option<&str>| {
            patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| glob_match(p, v)))
        };
        any(&self.event_names, facts.event_name)
            && any(&self.event_sources, facts.event_source)
            && any(&self.error_codes, facts.error_code)
            && any(&self.identity_types, facts.identity_type)
            && self.read_only.is_none_or(|r| r == item.read_only)
            && (self.actor_patterns.is_empty()
                || any(&self.actor_patterns, item.actor.as_deref())
                || any(&self.actor_patterns, facts.arn))
            && (!self.console_login_without_mfa
                || (facts.event_name == Some("ConsoleLogin")
                    && facts.record.and_then(|r| presets::field(r, "additionalEventData.MFAUsed")).as_deref()
                        != Some("Yes")))
            && self.preset.as_deref().is_none_or(|id| {
                preset(id).zip(facts.record).is_some_and(|(p, record)| {
                    // The fields most clauses test are read once per item, in `facts`.
                    p.matches_with(|path| match path {
                        "eventName" => facts.event_name.map(std::borrow::Cow::Borrowed),
                        "eventSource" => facts.event_source.map(std::borrow::Cow::Borrowed),
                        "errorCode" => facts.error_code.map(std::borrow::Cow::Borrowed),
                        _ => presets::field(record, path),
                    })
                })
            })
    }
}

/// What a match test reads of an item: the CloudTrail record's fields (the stored original, or
/// the typed details when there is none).
struct Facts<'a> {
    record: Option<&'a serde_json::Value>,
    event_name: Option<&'a str>,
    event_source: Option<&'a str>,
    error_code: Option<&'a str>,
    identity_type: Option<&'a str>,
    arn: Option<&'a str>,
}

impl<'a> Facts<'a> {
    fn of(item: &'a NewEvent) -> Facts<'a> {
        let record = item.original.as_ref().filter(|r| r.is_object());
        let text = |path: &[&str]| {
            let mut at = record?;
            for p in path {
                at = at.get(*p)?;
            }
            at.as_str()
        };
        let details = item.details.cloudtrail();
        Facts {
            record,
            event_name: details.map(|d| d.event_name.as_str()).or_else(|| text(&["eventName"])),
            event_source: details.map(|d| d.event_source.as_str()).or_else(|| text(&["eventSource"])),
            error_code: details.and_then(|d| d.error_code.as_deref()).or_else(|| text(&["errorCode"])),
            identity_type: details.and_then(|d| d.identity_type.as_deref()).or_else(|| text(&["userIdentity", "type"])),
            arn: text(&["userIdentity", "arn"]),
        }
    }
}

/// `*` matches any run of characters, anywhere in the pattern; everything else is literal and
/// case-sensitive, as CloudTrail's names are.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let Some(star) = pattern.find('*') else { return pattern == text };
    let (first, rest_of_pattern) = (&pattern[..star], &pattern[star + 1..]);
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    // The part after the last `*` must end the text; the parts between match leftmost.
    let (middle, last) = match rest_of_pattern.rfind('*') {
        Some(at) => (&rest_of_pattern[..at], &rest_of_pattern[at + 1..]),
        None => ("", rest_of_pattern),
    };
    for part in middle.split('*').filter(|p| !p.is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What a rule does with a match. The secret part (a routing key, a webhook's signing secret) is
/// kept apart, sealed, and never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// A PagerDuty incident through Events API v2 (`/v2/enqueue`).
    PagerdutyAlert { severity: String },
    /// A PagerDuty change event (`/v2/change/enqueue`): shown beside incidents as a recent change.
    PagerdutyChange,
    /// A POST signed as Standard Webhooks. The URL itself may be a credential (many services
    /// put a token in its path or query), so it is sealed with the secret; this is what is
    /// shown of it (see [`target::shown_url`]).
    Webhook { url: String },
}

impl RuleAction {
    pub fn kind(&self) -> &'static str {
        match self {
            RuleAction::PagerdutyAlert { .. } => "pagerduty_alert",
            RuleAction::PagerdutyChange => "pagerduty_change",
            RuleAction::Webhook { .. } => "webhook",
        }
    }

    /// The severity of the alert item a match puts on the timeline.
    pub fn severity(&self) -> &str {
        match self {
            RuleAction::PagerdutyAlert { severity } => severity,
            RuleAction::PagerdutyChange | RuleAction::Webhook { .. } => "info",
        }
    }
}

/// What an admin chooses for a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSettings {
    pub name: String,
    pub enabled: bool,
    /// Empty: every environment, and items of none.
    pub environment_ids: Vec<Uuid>,
    #[serde(rename = "match")]
    pub matcher: RuleMatch,
    pub action: RuleAction,
}

impl RuleSettings {
    pub fn validate_name(name: &str) -> Result<String, Invalid> {
        validation::text("name", name, 200)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: Uuid,
    pub org_id: Uuid,
    pub settings: RuleSettings,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Rule {
    /// The environments a match of `item` is put on, or `None` when the rule does not fire for
    /// it: not enabled, outside the rule's environments, or not matching.
    pub fn fires_for(&self, item: &NewEvent) -> Option<Vec<Uuid>> {
        self.fires_for_facts(item, &Facts::of(item))
    }

    fn fires_for_facts(&self, item: &NewEvent, facts: &Facts<'_>) -> Option<Vec<Uuid>> {
        let within = |e: &Uuid| self.settings.environment_ids.is_empty() || self.settings.environment_ids.contains(e);
        if !self.settings.enabled
            || item.source == RULES_SOURCE
            || (!self.settings.environment_ids.is_empty() && !item.environment_ids.iter().any(within))
            || !self.settings.matcher.matches_facts(item, facts)
        {
            return None;
        }
        Some(item.environment_ids.iter().copied().filter(within).collect())
    }
}

/// One match, as the store writes it with the item: the outbox row's rule and the alert item.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    pub rule_id: Uuid,
    pub alert: NewEvent,
}

/// An organisation's enabled rules, indexed by the event names (or else sources) they can match:
/// a rule whose match allows only some literal `eventName`s (most presets do) is tried only on
/// items of those names, so an item costs the rules that could match it, not all of them.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_event_name: std::collections::HashMap<String, Vec<usize>>,
    by_event_source: std::collections::HashMap<String, Vec<usize>>,
    /// Rules tried on every item.
    everywhere: Vec<usize>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let mut set = RuleSet { rules, ..RuleSet::default() };
        for (i, rule) in set.rules.iter().enumerate() {
            let matcher = &rule.settings.matcher;
            let literal_sources = (!matcher.event_sources.is_empty()
                && matcher.event_sources.iter().all(|s| !s.contains('*')))
            .then_some(&matcher.event_sources);
            match (matcher.literal_event_names(), literal_sources) {
                (Some(names), _) => {
                    for name in names {
                        set.by_event_name.entry(name.to_owned()).or_default().push(i);
                    }
                }
                (None, Some(sources)) => {
                    for source in sources {
                        set.by_event_source.entry(source.clone()).or_default().push(i);
                    }
                }
                (None, None) => set.everywhere.push(i),
            }
        }
        set
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl RuleMatch {
    /// The only `eventName`s this match can hold for, when that is a finite list of literals: the
    /// custom names without `*`, the preset's (every alternative of which names its events), or
    /// both's common ones.
    fn literal_event_names(&self) -> Option<Vec<&str>> {
        let custom: Option<Vec<&str>> = (!self.event_names.is_empty()
            && self.event_names.iter().all(|n| !n.contains('*')))
        .then(|| self.event_names.iter().map(String::as_str).collect());
        let from_preset = self.preset.as_deref().and_then(preset).and_then(Preset::literal_event_names);
        match (custom, from_preset) {
            (Some(c), Some(p)) => Some(c.into_iter().filter(|n| p.contains(n)).collect()),
            (Some(names), None) | (None, Some(names)) => Some(names),
            (None, None) => None,
        }
    }
}

/// Every enabled rule's match of one newly stored item (`item_id` is its stored id), in the
/// rules' order.
pub fn matches_of(rules: &RuleSet, item_id: Uuid, item: &NewEvent) -> Vec<RuleHit> {
    if item.source == RULES_SOURCE || rules.is_empty() {
        return Vec::new();
    }
    let facts = Facts::of(item);
    let named: &[usize] = facts.event_name.and_then(|n| rules.by_event_name.get(n)).map_or(&[], Vec::as_slice);
    let sourced: &[usize] = facts.event_source.and_then(|s| rules.by_event_source.get(s)).map_or(&[], Vec::as_slice);
    let mut candidates: Vec<usize> = rules.everywhere.iter().chain(named).chain(sourced).copied().collect();
    candidates.sort_unstable();
    candidates.dedup();
    candidates
        .into_iter()
        .filter_map(|i| {
            let rule = &rules.rules[i];
            let environments = rule.fires_for_facts(item, &facts)?;
            Some(RuleHit { rule_id: rule.id, alert: alert_item(rule, item_id, item, environments) })
        })
        .collect()
}

/// The `alert` item a match puts on the matched item's environments, at the matched item's
/// time, so the timeline shows it beside the change and suspects rank the change first.
fn alert_item(rule: &Rule, item_id: Uuid, item: &NewEvent, environments: Vec<Uuid>) -> NewEvent {
    let severity = rule.settings.action.severity().to_owned();
    let title: String = format!("{}: {}", rule.settings.name, item.title).chars().take(1024).collect();
    let mut labels = BTreeMap::new();
    labels.insert("severity".to_owned(), severity.clone());
    labels.insert("rule".to_owned(), rule.settings.name.clone());
    NewEvent {
        kind: EventKind::Alert,
        source: RULES_SOURCE.to_owned(),
        source_key: format!("{}/{item_id}", rule.id),
        connection_id: None,
        occurred_at: item.occurred_at,
        title: title.clone(),
        actor: item.actor.clone(),
        read_only: false,
        resources: item.resources.clone(),
        labels,
        links: vec![Link { href: format!("/v1/events/{item_id}"), text: "the matched change".to_owned() }],
        details: Details::Other(json!({
            "title": title, "severity": severity, "status": "triggered", "source": RULES_SOURCE,
            "rule_id": rule.id, "rule_name": rule.settings.name, "matched_event_id": item_id,
        })),
        original: None,
        environment_ids: environments,
        via: IngestPath::Rule,
    }
}

#[cfg(test)]
mod tests;
