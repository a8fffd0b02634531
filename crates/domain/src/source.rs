//! Webhook sources: a GitHub or PagerDuty webhook of an organisation, what its deliveries
//! become on the timeline, and how their signatures are checked. Deliveries are read here as the
//! providers send them (see `../shared/reference/integrations.md`); storing them goes through
//! the one posting path like any item.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::environment::EnvironmentSlug;
use crate::event::{Details, EventKind, IngestPath, Link, NewEvent, Resource};
use crate::posted::{self, Posted};
use crate::validation::{self, Invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Github,
    Pagerduty,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Github => "github",
            SourceKind::Pagerduty => "pagerduty",
        }
    }

    pub fn parse(value: &str) -> Result<SourceKind, Invalid> {
        match value {
            "github" => Ok(SourceKind::Github),
            "pagerduty" => Ok(SourceKind::Pagerduty),
            other => Err(Invalid::one("kind", format!("{other:?} is not a source kind; use github or pagerduty"))),
        }
    }
}

pub const MAX_MAP_ENTRIES: usize = 100;
pub const MAX_ENVIRONMENTS: usize = 50;
/// PagerDuty signs with every active secret while one is rotated: two at once.
pub const MAX_SECRETS: usize = 2;
const MAX_SECRET_CHARS: usize = 256;
const MIN_SECRET_CHARS: usize = 16;

/// What an admin chooses for a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSettings {
    pub name: String,
    /// Where items go when nothing more specific names an environment.
    pub environments: Vec<EnvironmentSlug>,
    /// A GitHub deployment environment or a PagerDuty service (its name) → an environment.
    pub environment_map: BTreeMap<String, EnvironmentSlug>,
    /// A repository (`owner/name`) or a PagerDuty service (its name) → the `service` recorded.
    pub service_map: BTreeMap<String, String>,
}

impl SourceSettings {
    pub fn parse(
        name: &str,
        environments: &[String],
        environment_map: &BTreeMap<String, String>,
        service_map: &BTreeMap<String, String>,
    ) -> Result<SourceSettings, Invalid> {
        let mut errors = Invalid::default();
        let name = errors.check(validation::text("name", name, 200)).unwrap_or_default();
        errors.check(validation::at_most("environments", environments.len(), MAX_ENVIRONMENTS));
        let mut slugs: Vec<EnvironmentSlug> = environments
            .iter()
            .take(MAX_ENVIRONMENTS)
            .enumerate()
            .filter_map(|(i, s)| errors.check(EnvironmentSlug::parse(&format!("environments[{i}]"), s)))
            .collect();
        slugs.sort();
        slugs.dedup();
        let mut map_errors =
            |field: &str, count: usize| errors.check(validation::at_most(field, count, MAX_MAP_ENTRIES));
        map_errors("environment_map", environment_map.len());
        map_errors("service_map", service_map.len());
        let mut mapped = BTreeMap::new();
        for (key, slug) in environment_map.iter().take(MAX_MAP_ENTRIES) {
            let field = format!("environment_map.{key}");
            let key = errors.check(validation::text(&field, key, 200));
            let slug = errors.check(EnvironmentSlug::parse(&field, slug));
            if let (Some(key), Some(slug)) = (key, slug) {
                mapped.insert(key, slug);
            }
        }
        let mut services = BTreeMap::new();
        for (key, service) in service_map.iter().take(MAX_MAP_ENTRIES) {
            let field = format!("service_map.{key}");
            let key = errors.check(validation::text(&field, key, 200));
            let service = errors.check(validation::text(&field, service, 200));
            if let (Some(key), Some(service)) = (key, service) {
                services.insert(key, service);
            }
        }
        errors.into_result()?;
        Ok(SourceSettings { name, environments: slugs, environment_map: mapped, service_map: services })
    }

    /// Every environment the settings name, with the field that names it, for the check that
    /// each exists.
    pub fn named_environments(&self) -> Vec<(String, EnvironmentSlug)> {
        let listed = self.environments.iter().enumerate().map(|(i, slug)| (format!("environments[{i}]"), slug.clone()));
        let mapped = self.environment_map.iter().map(|(key, slug)| (format!("environment_map.{key}"), slug.clone()));
        listed.chain(mapped).collect()
    }
}

/// Webhook secrets an admin gives: 16–256 printable characters each, at most two.
pub fn parse_secrets(secrets: &[String]) -> Result<Vec<String>, Invalid> {
    let mut errors = Invalid::default();
    if secrets.is_empty() || secrets.len() > MAX_SECRETS {
        errors.push("secrets", format!("give 1 to {MAX_SECRETS} secrets"));
    }
    for (i, secret) in secrets.iter().enumerate().take(MAX_SECRETS) {
        let count = secret.chars().count();
        if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&count) || !secret.chars().all(|c| c.is_ascii_graphic()) {
            errors.push(
                format!("secrets[{i}]"),
                format!("must be {MIN_SECRET_CHARS}–{MAX_SECRET_CHARS} printable ASCII characters without spaces"),
            );
        }
    }
    errors.into_result()?;
    Ok(secrets.to_vec())
}

/// A webhook secret for GitHub when the admin gives none: 256 bits from the OS, as hex.
pub fn generate_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A source as stored: its secrets sealed (see `secret_box`), never in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: Uuid,
    pub org_id: Uuid,
    pub kind: SourceKind,
    pub settings: SourceSettings,
    pub sealed_secrets: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One delivery as the source's log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub source_id: Uuid,
    /// The provider's delivery id (`X-GitHub-Delivery`, `X-Webhook-Id`).
    pub delivery_id: String,
    pub event_type: String,
    /// `stored`, `ignored` or `refused`.
    pub outcome: String,
    pub item_id: Option<Uuid>,
    /// Why it was ignored or refused.
    pub detail: Option<String>,
    pub received_at: OffsetDateTime,
}

/// When the state an item records was reached at its source (`status_at` in its details): a
/// delivery of an older state than the stored one must not set the item back.
pub fn status_at(details: &Details) -> Option<OffsetDateTime> {
    details.text("status_at").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

/// What a delivery means for the timeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// Nothing to store, and why (a ping, an unmerged PR, an event of no interest).
    Ignored(String),
    /// An item, with the environment the delivery itself names (if any), to be tried before
    /// the source's own environments.
    Item { posted: Box<Posted>, named_environment: Option<String> },
}

/// `sha256=<hex>` or `v1=<hex>`: HMAC-SHA256 of the raw body with `secret`, compared in constant
/// time.
fn hmac_matches(secret: &str, body: &[u8], hex_signature: &str) -> bool {
    let Ok(expected) = hex::decode(hex_signature) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn text_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn time_at(value: &Value, pointer: &str) -> Option<OffsetDateTime> {
    text_at(value, pointer).and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

fn missing(what: &str) -> Invalid {
    Invalid::one("body", format!("the delivery has no {what}"))
}

pub mod github {
    use super::*;

    /// `X-Hub-Signature-256: sha256=<hex>` over the raw body with the source's secret.
    pub fn signature_matches(secret: &str, body: &[u8], header: Option<&str>) -> bool {
        header.and_then(|h| h.strip_prefix("sha256=")).is_some_and(|hex| hmac_matches(secret, body, hex))
    }

    /// What a delivery of `event` (the `X-GitHub-Event` header) means for the timeline.
    pub fn read(event: &str, payload: &Value, source: &Source) -> Result<Reading, Invalid> {
        let action = text_at(payload, "/action").unwrap_or_default();
        match event {
            "ping" => Ok(Reading::Ignored("ping: the webhook is set up".into())),
            "pull_request" if action == "closed" => {
                if payload.pointer("/pull_request/merged") == Some(&Value::Bool(true)) {
                    merged_pull_request(payload, source)
                } else {
                    Ok(Reading::Ignored("pull request closed without merging".into()))
                }
            }
            "deployment" | "deployment_status" => deployment(event, payload, source),
            "release" if action == "published" => release(payload, source),
            other if action.is_empty() => Ok(Reading::Ignored(format!("{other} events are not recorded"))),
            other => Ok(Reading::Ignored(format!("{other} {action} events are not recorded"))),
        }
    }

    fn repository(payload: &Value) -> Result<&str, Invalid> {
        text_at(payload, "/repository/full_name").ok_or_else(|| missing("repository.full_name"))
    }

    fn service_of(repository: &str, source: &Source) -> String {
        source
            .settings
            .service_map
            .get(repository)
            .cloned()
            .unwrap_or_else(|| repository.rsplit('/').next().unwrap_or(repository).to_owned())
    }

    fn merged_pull_request(payload: &Value, source: &Source) -> Result<Reading, Invalid> {
        let pr = payload.get("pull_request").ok_or_else(|| missing("pull_request"))?;
        let repository = repository(payload)?;
        let number = pr.get("number").and_then(Value::as_u64).ok_or_else(|| missing("pull_request.number"))?;
        let title = text_at(pr, "/title").unwrap_or("(untitled)");
        let base = text_at(pr, "/base/ref").unwrap_or("its base branch");
        let merged_at = time_at(pr, "/merged_at").ok_or_else(|| missing("pull_request.merged_at"))?;
        let person = text_at(pr, "/merged_by/login").or_else(|| text_at(pr, "/user/login"));
        let author = text_at(pr, "/user/login");
        let service = service_of(repository, source);
        let who = person.unwrap_or("someone");
        let mut labels =
            BTreeMap::from([("service".to_owned(), service.clone()), ("repository".into(), repository.into())]);
        labels.insert("base".into(), base.into());
        labels.insert("pull_request".into(), format!("#{number}"));
        let pr_labels: Vec<String> = pr
            .get("labels")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(|l| text_at(l, "/name").map(str::to_owned)).take(20).collect())
            .unwrap_or_default();
        if !pr_labels.is_empty() {
            labels.insert("labels".into(), pr_labels.join(","));
        }
        let event = NewEvent {
            kind: EventKind::PullRequest,
            source: "github".into(),
            source_key: format!("pull_request:{repository}#{number}"),
            connection_id: None,
            occurred_at: merged_at,
            title: truncate(format!("{who} merged #{number} {title} into {base} ({repository})"), 1024),
            actor: person.map(str::to_owned),
            read_only: false,
            resources: vec![Resource::named("repository", repository), Resource::named("service", service.clone())],
            labels,
            links: text_at(pr, "/html_url")
                .map(|u| Link { href: u.into(), text: format!("#{number}") })
                .into_iter()
                .collect(),
            details: Details::Other(json!({
                "repository": repository, "number": number, "title": title, "base": base, "author": author,
                "merged_by": person, "merge_commit_sha": text_at(pr, "/merge_commit_sha"), "labels": pr_labels,
                "service": service,
            })),
            original: None,
            environment_ids: Vec::new(),
            via: IngestPath::Webhook,
        };
        validation::posted_instant("pull_request.merged_at", merged_at, crate::time_util::now())?;
        let posted = Posted { event, environments: source.settings.environments.clone() };
        Ok(Reading::Item { posted: Box::new(posted), named_environment: None })
    }

    /// One deploy per GitHub deployment, updated by each of its statuses.
    fn deployment(event: &str, payload: &Value, source: &Source) -> Result<Reading, Invalid> {
        let deployment = payload.get("deployment").ok_or_else(|| missing("deployment"))?;
        let id = deployment.get("id").and_then(Value::as_u64).ok_or_else(|| missing("deployment.id"))?;
        let repository = repository(payload)?;
        let (state, at, url) = if event == "deployment_status" {
            let status = payload.get("deployment_status").ok_or_else(|| missing("deployment_status"))?;
            let state = text_at(status, "/state").ok_or_else(|| missing("deployment_status.state"))?;
            let url = text_at(status, "/target_url").or_else(|| text_at(status, "/log_url"));
            (state, time_at(status, "/created_at"), url)
        } else {
            ("queued", time_at(deployment, "/created_at"), None)
        };
        let status = match state {
            "pending" | "queued" | "in_progress" => "started",
            "success" => "succeeded",
            "failure" | "error" => "failed",
            other => return Ok(Reading::Ignored(format!("deployment status {other:?} changes nothing"))),
        };
        let started_at = time_at(deployment, "/created_at").or(at).ok_or_else(|| missing("deployment.created_at"))?;
        let finished_at = (status != "started").then_some(at).flatten().filter(|f| *f >= started_at);
        let version = text_at(deployment, "/ref").or_else(|| text_at(deployment, "/sha")).unwrap_or("unknown");
        let service = service_of(repository, source);
        let environment = text_at(deployment, "/environment").map(str::to_owned);
        let key = format!("github:{}:deployment:{id}", source.id);
        let placeholder = chosen_later();
        let mut posted = posted::deploy(posted::DeployInput {
            environment: None,
            environments: Some(&placeholder),
            service: &service,
            version,
            status,
            started_at,
            finished_at,
            url: url.filter(|u| u.starts_with("http")),
            commit_sha: text_at(deployment, "/sha"),
            actor: text_at(deployment, "/creator/login"),
            external_id: Some(&key),
        })?;
        posted.event.source = "github".into();
        if let (Details::Other(details), Some(at)) = (&mut posted.event.details, at) {
            details["status_at"] = json!(at.format(&Rfc3339).ok());
        }
        posted.event.labels.insert("repository".into(), repository.into());
        if let Some(environment) = &environment {
            posted.event.labels.insert("github_environment".into(), environment.clone());
        }
        posted.environments = source.settings.environments.clone();
        Ok(Reading::Item { posted: Box::new(posted), named_environment: environment })
    }

    fn release(payload: &Value, source: &Source) -> Result<Reading, Invalid> {
        let release = payload.get("release").ok_or_else(|| missing("release"))?;
        let repository = repository(payload)?;
        let id = release.get("id").and_then(Value::as_u64).ok_or_else(|| missing("release.id"))?;
        let tag = text_at(release, "/tag_name").ok_or_else(|| missing("release.tag_name"))?;
        let at = time_at(release, "/published_at")
            .or_else(|| time_at(release, "/created_at"))
            .ok_or_else(|| missing("release.published_at"))?;
        let service = service_of(repository, source);
        let key = format!("github:{}:release:{id}", source.id);
        let placeholder = chosen_later();
        let mut posted = posted::deploy(posted::DeployInput {
            environment: None,
            environments: Some(&placeholder),
            service: &service,
            version: tag,
            status: "succeeded",
            started_at: at,
            finished_at: None,
            url: text_at(release, "/html_url"),
            commit_sha: None,
            actor: text_at(release, "/author/login"),
            external_id: Some(&key),
        })?;
        posted.event.source = "github".into();
        posted.event.title = match text_at(release, "/author/login") {
            Some(author) => format!("{author} released {service} {tag}"),
            None => format!("{service} {tag} released"),
        };
        posted.event.labels.insert("repository".into(), repository.into());
        posted.environments = source.settings.environments.clone();
        Ok(Reading::Item { posted: Box::new(posted), named_environment: None })
    }
}

pub mod pagerduty {
    use super::*;

    /// `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`: any one matching any current secret.
    pub fn signature_matches(secrets: &[String], body: &[u8], header: Option<&str>) -> bool {
        let Some(header) = header else { return false };
        let signatures: Vec<&str> =
            header.split(',').filter_map(|s| s.trim().strip_prefix("v1=")).take(MAX_SECRETS * 2).collect();
        // Every comparison is made, whichever matches first: the time taken says nothing.
        let mut matched = false;
        for secret in secrets {
            for signature in &signatures {
                matched |= hmac_matches(secret, body, signature);
            }
        }
        matched
    }

    /// What a v3 webhook delivery means for the timeline: `incident.*` upserts the incident's
    /// alert; anything else is ignored.
    pub fn read(payload: &Value, source: &Source) -> Result<Reading, Invalid> {
        let event = payload.get("event").ok_or_else(|| missing("event"))?;
        let event_type = text_at(event, "/event_type").ok_or_else(|| missing("event.event_type"))?;
        if !event_type.starts_with("incident.") || text_at(event, "/resource_type") != Some("incident") {
            return Ok(Reading::Ignored(format!("{event_type} events are not recorded")));
        }
        let data = event.get("data").ok_or_else(|| missing("event.data"))?;
        let id = text_at(data, "/id").ok_or_else(|| missing("event.data.id"))?;
        let status = match text_at(data, "/status") {
            Some(s @ ("triggered" | "acknowledged" | "resolved")) => s,
            _ => return Ok(Reading::Ignored(format!("{event_type} carries no incident status"))),
        };
        let severity = match text_at(data, "/urgency") {
            Some("high") => "critical",
            _ => "warning",
        };
        let started_at = time_at(data, "/created_at").ok_or_else(|| missing("event.data.created_at"))?;
        let resolved_at =
            (status == "resolved").then(|| time_at(event, "/occurred_at")).flatten().filter(|r| *r >= started_at);
        let pd_service = text_at(data, "/service/summary");
        let service = pd_service.map(|s| source.settings.service_map.get(s).map_or(s, String::as_str));
        let title = text_at(data, "/title").unwrap_or("(untitled incident)");
        let placeholder = chosen_later();
        let mut posted = posted::alert(posted::AlertInput {
            environment: None,
            environments: Some(&placeholder),
            title,
            severity,
            status,
            started_at,
            resolved_at,
            source: "pagerduty",
            service,
            url: text_at(data, "/html_url"),
            external_id: Some(id),
        })?;
        if let Some(number) = data.get("number").and_then(Value::as_u64) {
            posted.event.labels.insert("incident".into(), format!("#{number}"));
        }
        posted.environments = source.settings.environments.clone();
        Ok(Reading::Item { posted: Box::new(posted), named_environment: pd_service.map(str::to_owned) })
    }
}

/// The builders of posted items require environments; a delivery's are chosen afterwards from
/// what it names and the source's own (`Reading::Item`), so the builder is given a stand-in.
fn chosen_later() -> [String; 1] {
    [String::from("chosen-later")]
}

fn truncate(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    text.chars().take(max - 1).chain(std::iter::once('…')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_test_vector_verifies() {
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(github::signature_matches("It's a Secret to Everybody", b"Hello, World!", Some(header)));
        assert!(!github::signature_matches("It's a Secret to Everybody", b"Hello, World?", Some(header)));
        assert!(!github::signature_matches("another secret", b"Hello, World!", Some(header)));
        assert!(!github::signature_matches("It's a Secret to Everybody", b"Hello, World!", None));
        assert!(!github::signature_matches("It's a Secret to Everybody", b"Hello, World!", Some("sha1=abc")));
    }

    #[test]
    fn pagerduty_accepts_any_signature_of_any_current_secret() {
        let sign = |secret: &str, body: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        };
        let body = br#"{"event":{}}"#;
        let (old, new) = ("old-secret-0123456789", "new-secret-0123456789");
        let both = format!("v1={},v1={}", sign(old, body), sign(new, body));
        assert!(pagerduty::signature_matches(&[new.into()], body, Some(&both)), "rotated: the new secret");
        assert!(pagerduty::signature_matches(&[old.into()], body, Some(&both)), "the old one still");
        let stale = format!("v1={}", sign(old, body));
        assert!(!pagerduty::signature_matches(&[new.into()], body, Some(&stale)), "a removed secret");
        assert!(!pagerduty::signature_matches(&[new.into()], body, None));
        assert!(!pagerduty::signature_matches(&[new.into()], body, Some("v1=zz")));
    }
}
