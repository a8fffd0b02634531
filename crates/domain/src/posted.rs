//! Deploys, alerts and other changes posted by integrators, validated into timeline items.
//! Each is idempotent through its `external_id`: posting it again updates the same item.

use std::collections::BTreeMap;

use serde_json::json;
use time::OffsetDateTime;

use crate::environment::EnvironmentSlug;
use crate::event::{Details, EventKind, IngestPath, Link, NewEvent, Resource};
use crate::validation::{self, Invalid};

/// An item to store, with the environments (by slug) it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub event: NewEvent,
    pub environments: Vec<EnvironmentSlug>,
}

pub const DEPLOY_STATUSES: &[&str] = &["started", "succeeded", "failed", "rolled_back"];
pub const ALERT_STATUSES: &[&str] = &["triggered", "acknowledged", "resolved"];
pub const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];
pub const MAX_ENVIRONMENTS: usize = 50;
/// The most services or links one change may name.
pub const MAX_LIST: usize = 20;

/// `environment` or `environments[]`: at least one, each a valid slug.
pub fn parse_environments(one: Option<&str>, many: Option<&[String]>, errors: &mut Invalid) -> Vec<EnvironmentSlug> {
    let mut slugs = Vec::new();
    if let Some(one) = one {
        slugs.extend(errors.check(EnvironmentSlug::parse("environment", one)));
    }
    if let Err(e) = validation::at_most("environments", many.map_or(0, <[String]>::len), MAX_ENVIRONMENTS) {
        errors.0.extend(e.0);
        return Vec::new();
    }
    for (i, s) in many.unwrap_or_default().iter().enumerate() {
        slugs.extend(errors.check(EnvironmentSlug::parse(&format!("environments[{i}]"), s)));
    }
    if many.is_some_and(<[String]>::is_empty) {
        errors.push("environments", "must name at least one environment (or leave it out and give `environment`)");
    } else if one.is_none() && many.is_none() {
        errors.push("environments", "give `environment` or `environments`");
    }
    if slugs.len() > MAX_ENVIRONMENTS {
        errors.push("environments", format!("at most {MAX_ENVIRONMENTS}"));
    }
    slugs.sort();
    slugs.dedup();
    slugs
}

fn one_of(field: &str, value: &str, allowed: &[&str], errors: &mut Invalid) {
    if !allowed.contains(&value) {
        errors.push(field, format!("{value:?} is not one of {}", allowed.join(", ")));
    }
}

fn url(field: &str, value: Option<&str>, errors: &mut Invalid) -> Option<String> {
    let value = value?.trim();
    if value.is_empty() {
        return None;
    }
    if !(value.starts_with("https://") || value.starts_with("http://"))
        || value.len() > 2048
        || value.chars().any(char::is_whitespace)
    {
        errors.push(field, "must be an http(s) URL of at most 2048 characters");
        return None;
    }
    Some(value.to_owned())
}

fn external_id(value: Option<&str>, errors: &mut Invalid) -> Option<String> {
    let value = value?;
    errors.check(validation::text("external_id", value, 256))
}

fn key_or_new(external_id: Option<String>) -> String {
    external_id.unwrap_or_else(|| format!("changetrail:{}", uuid::Uuid::now_v7()))
}

pub struct DeployInput<'a> {
    pub environment: Option<&'a str>,
    pub environments: Option<&'a [String]>,
    pub service: &'a str,
    pub version: &'a str,
    pub status: &'a str,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    pub url: Option<&'a str>,
    pub commit_sha: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub external_id: Option<&'a str>,
}

pub fn deploy(input: DeployInput<'_>) -> Result<Posted, Invalid> {
    let mut errors = Invalid::default();
    let environments = parse_environments(input.environment, input.environments, &mut errors);
    let service = errors.check(validation::text("service", input.service, 200)).unwrap_or_default();
    let version = errors.check(validation::text("version", input.version, 200)).unwrap_or_default();
    one_of("status", input.status, DEPLOY_STATUSES, &mut errors);
    let now = crate::time_util::now();
    errors.check(validation::posted_instant("started_at", input.started_at, now));
    if let Some(finished) = input.finished_at {
        errors.check(validation::posted_instant("finished_at", finished, now));
    }
    if input.finished_at.is_some_and(|f| f < input.started_at) {
        errors.push("finished_at", "must not be before started_at");
    }
    let url = url("url", input.url, &mut errors);
    let commit = errors.check(validation::optional_text("commit_sha", input.commit_sha, 64)).flatten();
    let actor = errors.check(validation::optional_text("actor", input.actor, 200)).flatten();
    let external = external_id(input.external_id, &mut errors);
    errors.into_result()?;
    let verb = match input.status {
        "started" => "deploying",
        "succeeded" => "deployed",
        "failed" => "failed to deploy",
        _ => "rolled back",
    };
    let title = match &actor {
        Some(a) => format!("{a} {verb} {service} {version}"),
        None => format!("{service} {version}: {}", input.status.replace('_', " ")),
    };
    let mut labels = BTreeMap::new();
    labels.insert("service".to_owned(), service.clone());
    let links = url.iter().map(|u| Link { href: u.clone(), text: "deploy".into() }).collect();
    Ok(Posted {
        event: NewEvent {
            kind: EventKind::Deploy,
            source: "deploy".into(),
            source_key: key_or_new(external),
            connection_id: None,
            occurred_at: input.started_at,
            title,
            actor,
            read_only: false,
            resources: vec![Resource::named("service", service.clone())],
            labels,
            links,
            details: Details::Other(json!({
                "service": service, "version": version, "status": input.status, "commit_sha": commit,
                "finished_at": input.finished_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            })),
            original: None,
            environment_ids: Vec::new(),
            via: IngestPath::Api,
        },
        environments,
    })
}

pub struct AlertInput<'a> {
    pub environment: Option<&'a str>,
    pub environments: Option<&'a [String]>,
    pub title: &'a str,
    pub severity: &'a str,
    pub status: &'a str,
    pub started_at: OffsetDateTime,
    pub resolved_at: Option<OffsetDateTime>,
    pub source: &'a str,
    pub service: Option<&'a str>,
    pub url: Option<&'a str>,
    pub external_id: Option<&'a str>,
}

pub fn alert(input: AlertInput<'_>) -> Result<Posted, Invalid> {
    let mut errors = Invalid::default();
    let environments = parse_environments(input.environment, input.environments, &mut errors);
    let title = errors.check(validation::text("title", input.title, 1024)).unwrap_or_default();
    one_of("severity", input.severity, SEVERITIES, &mut errors);
    one_of("status", input.status, ALERT_STATUSES, &mut errors);
    let source = errors.check(validation::text("source", input.source, 100)).unwrap_or_default();
    let service = errors.check(validation::optional_text("service", input.service, 200)).flatten();
    let now = crate::time_util::now();
    errors.check(validation::posted_instant("started_at", input.started_at, now));
    if let Some(resolved) = input.resolved_at {
        errors.check(validation::posted_instant("resolved_at", resolved, now));
    }
    if input.resolved_at.is_some_and(|r| r < input.started_at) {
        errors.push("resolved_at", "must not be before started_at");
    }
    let url = url("url", input.url, &mut errors);
    let external = external_id(input.external_id, &mut errors);
    errors.into_result()?;
    let mut labels = BTreeMap::new();
    labels.insert("severity".to_owned(), input.severity.to_owned());
    if let Some(service) = &service {
        labels.insert("service".to_owned(), service.clone());
    }
    Ok(Posted {
        event: NewEvent {
            kind: EventKind::Alert,
            // Alerts are unique per (source, external_id): two tools may reuse one ID.
            source: format!("alert:{source}"),
            source_key: key_or_new(external),
            connection_id: None,
            occurred_at: input.started_at,
            title: format!("{} alert ({}): {title}", input.severity, input.status),
            actor: None,
            read_only: false,
            resources: service.iter().map(|s| Resource::named("service", s.clone())).collect(),
            labels,
            links: url.iter().map(|u| Link { href: u.clone(), text: source.clone() }).collect(),
            details: Details::Other(json!({
                "title": title, "severity": input.severity, "status": input.status, "source": source, "service": service,
                "resolved_at": input.resolved_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            })),
            original: None,
            environment_ids: Vec::new(),
            via: IngestPath::Api,
        },
        environments,
    })
}

pub struct ChangeInput<'a> {
    pub environments: &'a [String],
    pub summary: &'a str,
    pub occurred_at: OffsetDateTime,
    pub services: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
    pub links: &'a [(String, String)],
    pub actor: Option<&'a str>,
    pub external_id: Option<&'a str>,
}

pub fn change(input: ChangeInput<'_>) -> Result<Posted, Invalid> {
    let mut errors = Invalid::default();
    let environments = parse_environments(None, Some(input.environments), &mut errors);
    let summary = errors.check(validation::text("summary", input.summary, 1024)).unwrap_or_default();
    errors.check(validation::posted_instant("occurred_at", input.occurred_at, crate::time_util::now()));
    errors.check(validation::at_most("services", input.services.len(), MAX_LIST));
    errors.check(validation::at_most("links", input.links.len(), MAX_LIST));
    let actor = errors.check(validation::optional_text("actor", input.actor, 200)).flatten();
    let mut labels = BTreeMap::new();
    if input.labels.len() > 50 {
        errors.push("labels", "at most 50");
    }
    for (k, v) in input.labels {
        let key = errors.check(validation::text(&format!("labels.{k}"), k, 100));
        let value = errors.check(validation::text(&format!("labels.{k}"), v, 500));
        if let (Some(k), Some(v)) = (key, value) {
            labels.insert(k, v);
        }
    }
    let mut services = Vec::new();
    for (i, s) in input.services.iter().enumerate() {
        services.extend(errors.check(validation::text(&format!("services[{i}]"), s, 200)));
    }
    let mut links = Vec::new();
    for (i, (href, text)) in input.links.iter().enumerate() {
        if let Some(href) = url(&format!("links[{i}].href"), Some(href), &mut errors) {
            let text = errors.check(validation::optional_text(&format!("links[{i}].text"), Some(text), 200));
            links.push(Link { href, text: text.flatten().unwrap_or_default() });
        }
    }
    let external = external_id(input.external_id, &mut errors);
    errors.into_result()?;
    if let Some(service) = services.first() {
        labels.entry("service".to_owned()).or_insert_with(|| service.clone());
    }
    Ok(Posted {
        event: NewEvent {
            kind: EventKind::Custom,
            source: "custom".into(),
            source_key: key_or_new(external),
            connection_id: None,
            occurred_at: input.occurred_at,
            title: summary.clone(),
            actor,
            read_only: false,
            resources: services.iter().map(|s| Resource::named("service", s.clone())).collect(),
            labels,
            links,
            details: Details::Other(json!({ "summary": summary, "services": services })),
            original: None,
            environment_ids: Vec::new(),
            via: IngestPath::Api,
        },
        environments,
    })
}
