//! Rules: their lifecycle and deliveries. Matching itself happens in the store's write
//! transactions (see `domain::rule`); delivering, in the worker's outbox job.

use domain::rule::delivery::{self, RuleDelivery};
use domain::rule::target::{self, WebhookUrl};
use domain::rule::{Rule, RuleAction, RuleMatch, RuleSettings, SEVERITIES};
use domain::{EnvironmentRef, EnvironmentSlug, Invalid, Page, PageRequest};
use uuid::Uuid;

use crate::{App, AppError, AppResult};

/// An action as an admin gives it, secret included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionInput {
    PagerdutyAlert {
        routing_key: String,
        severity: String,
    },
    PagerdutyChange {
        routing_key: String,
    },
    /// Without a secret, one is made and shown once.
    Webhook {
        url: String,
        secret: Option<String>,
    },
}

/// A rule to create.
pub struct RuleInput {
    pub name: String,
    pub enabled: bool,
    pub environments: Vec<String>,
    pub matcher: RuleMatch,
    pub action: ActionInput,
}

/// What a PATCH changes; an action replaces the whole action, its secret included.
#[derive(Default)]
pub struct RulePatch {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub environments: Option<Vec<String>>,
    pub matcher: Option<RuleMatch>,
    pub action: Option<ActionInput>,
}

/// A rule as shown: its environments by slug (those since deleted drop out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView {
    pub rule: Rule,
    pub environments: Vec<EnvironmentSlug>,
}

const MAX_ENVIRONMENTS: usize = 100;

fn routing_key(field: &str, key: &str, errors: &mut Invalid) -> String {
    // PagerDuty's integration keys are 32 characters; allow some room, refuse what cannot be one.
    if key.is_empty() || key.len() > 128 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        errors.push(field, "a PagerDuty integration (routing) key: 1–128 letters, digits, - or _");
    }
    key.to_owned()
}

impl App {
    /// The action's shown part, what is sealed of it (a routing key; a webhook's URL and secret),
    /// and a webhook secret made for it. A webhook's host must resolve to public addresses only
    /// (checked again at every delivery).
    async fn action(&self, input: &ActionInput, errors: &mut Invalid) -> (RuleAction, String, Option<String>) {
        match input {
            ActionInput::PagerdutyAlert { routing_key: key, severity } => {
                if !SEVERITIES.contains(&severity.as_str()) {
                    errors.push("action.pagerduty_alert.severity", format!("one of {}", SEVERITIES.join(", ")));
                }
                let key = routing_key("action.pagerduty_alert.routing_key", key, errors);
                (RuleAction::PagerdutyAlert { severity: severity.clone() }, key, None)
            }
            ActionInput::PagerdutyChange { routing_key: key } => {
                (RuleAction::PagerdutyChange, routing_key("action.pagerduty_change.routing_key", key, errors), None)
            }
            ActionInput::Webhook { url, secret } => {
                let allow_private = self.webhooks.allow_private_targets;
                match target::parse_webhook_url("action.webhook.url", url, allow_private) {
                    Ok(parsed) => {
                        if let Err(why) = public_addresses(&parsed, allow_private).await {
                            errors.push("action.webhook.url", why.to_string());
                        }
                    }
                    Err(Invalid(e)) => errors.0.extend(e),
                }
                let (secret, generated) = match secret {
                    Some(given) => {
                        if let Err(why) = delivery::webhook_key(given) {
                            errors.push("action.webhook.secret", format!("a Standard Webhooks secret: {why}"));
                        }
                        (given.clone(), false)
                    }
                    None => (delivery::generate_webhook_secret(), true),
                };
                // The URL is sealed with the secret: it may itself be a credential.
                let sealed = serde_json::to_string(&target::WebhookTarget { url: url.clone(), secret: secret.clone() })
                    .unwrap_or_default();
                (RuleAction::Webhook { url: target::shown_url(url) }, sealed, generated.then_some(secret))
            }
        }
    }

    async fn rule_environments(&self, org_id: Uuid, given: &[String], errors: &mut Invalid) -> Vec<Uuid> {
        if given.len() > MAX_ENVIRONMENTS {
            errors.push("environments", format!("at most {MAX_ENVIRONMENTS}"));
            return Vec::new();
        }
        let mut slugs = Vec::new();
        for (i, e) in given.iter().enumerate() {
            if let Some(slug) = errors.check(EnvironmentSlug::parse(&format!("environments[{i}]"), e)) {
                if !slugs.contains(&slug) {
                    slugs.push(slug);
                }
            }
        }
        let refs: Vec<EnvironmentRef> = slugs.iter().cloned().map(EnvironmentRef::Slug).collect();
        let found = match self.store.find_environments(org_id, &refs).await {
            Ok(found) => found,
            Err(e) => {
                errors.push("environments", format!("cannot be checked now: {e}"));
                return Vec::new();
            }
        };
        for slug in slugs.iter().filter(|s| !found.iter().any(|e| &e.slug == *s)) {
            errors.push("environments", format!("no environment '{slug}' in your organisation; create it first"));
        }
        found.into_iter().map(|e| e.id).collect()
    }

    async fn view(&self, rule: Rule) -> AppResult<RuleView> {
        Ok(self.views(vec![rule]).await?.remove(0))
    }

    /// Rules as shown, their environments' slugs read in one query for all of them.
    async fn views(&self, rules: Vec<Rule>) -> AppResult<Vec<RuleView>> {
        let mut ids: Vec<Uuid> = rules.iter().flat_map(|r| r.settings.environment_ids.iter().copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        let found = match rules.first() {
            Some(rule) if !ids.is_empty() => {
                let refs: Vec<EnvironmentRef> = ids.into_iter().map(EnvironmentRef::Id).collect();
                self.store.find_environments(rule.org_id, &refs).await?
            }
            _ => Vec::new(),
        };
        Ok(rules
            .into_iter()
            .map(|rule| {
                let environments = found
                    .iter()
                    .filter(|e| rule.settings.environment_ids.contains(&e.id))
                    .map(|e| e.slug.clone())
                    .collect();
                RuleView { rule, environments }
            })
            .collect())
    }

    /// A new rule; the answer's second part is a webhook secret made for it (shown this once).
    pub async fn create_rule(&self, org_id: Uuid, input: RuleInput) -> AppResult<(RuleView, Option<String>)> {
        let mut errors = Invalid::default();
        let name = errors.check(RuleSettings::validate_name(&input.name));
        errors.check(input.matcher.validate());
        let environment_ids = self.rule_environments(org_id, &input.environments, &mut errors).await;
        let (action, sealed, generated) = self.action(&input.action, &mut errors).await;
        errors.into_result()?;
        let settings = RuleSettings {
            name: name.unwrap_or_default(),
            enabled: input.enabled,
            environment_ids,
            matcher: input.matcher,
            action,
        };
        let rule = self.store.create_rule(org_id, &settings, &self.webhooks.secret_key.seal(&sealed)).await?;
        Ok((self.view(rule).await?, generated))
    }

    pub async fn rule(&self, org_id: Uuid, id: Uuid) -> AppResult<RuleView> {
        let rule = self.store.get_rule(org_id, id).await?.ok_or(AppError::NotFound("rule"))?;
        self.view(rule).await
    }

    pub async fn rules(&self, org_id: Uuid, page: PageRequest) -> AppResult<Page<RuleView>> {
        let page = self.store.list_rules(org_id, page).await?;
        Ok(Page { items: self.views(page.items).await?, next_cursor: page.next_cursor })
    }

    pub async fn update_rule(&self, org_id: Uuid, id: Uuid, patch: RulePatch) -> AppResult<(RuleView, Option<String>)> {
        let current = self.store.get_rule(org_id, id).await?.ok_or(AppError::NotFound("rule"))?;
        let mut settings = current.settings;
        let mut errors = Invalid::default();
        if let Some(name) = &patch.name {
            if let Some(name) = errors.check(RuleSettings::validate_name(name)) {
                settings.name = name;
            }
        }
        if let Some(enabled) = patch.enabled {
            settings.enabled = enabled;
        }
        if let Some(environments) = &patch.environments {
            settings.environment_ids = self.rule_environments(org_id, environments, &mut errors).await;
        }
        if let Some(matcher) = patch.matcher {
            errors.check(matcher.validate());
            settings.matcher = matcher;
        }
        let mut sealed = None;
        let mut shown = None;
        if let Some(input) = &patch.action {
            let (action, secret, generated) = self.action(input, &mut errors).await;
            settings.action = action;
            sealed = Some(self.webhooks.secret_key.seal(&secret));
            shown = generated;
        }
        errors.into_result()?;
        let rule = self
            .store
            .update_rule(org_id, id, &settings, sealed.as_deref())
            .await?
            .ok_or(AppError::NotFound("rule"))?;
        Ok((self.view(rule).await?, shown))
    }

    pub async fn delete_rule(&self, org_id: Uuid, id: Uuid) -> AppResult<()> {
        if self.store.delete_rule(org_id, id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound("rule"))
        }
    }

    /// The newest deliveries of a rule, each with its attempts.
    pub async fn rule_deliveries(&self, org_id: Uuid, id: Uuid, limit: u32) -> AppResult<Vec<RuleDelivery>> {
        self.store.get_rule(org_id, id).await?.ok_or(AppError::NotFound("rule"))?;
        Ok(self.store.list_rule_deliveries(org_id, id, limit).await?)
    }
}

/// Why a webhook's host gives no address to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefusal {
    /// It resolves to an address that is not public: refused for good.
    #[error("{0}")]
    NotPublic(String),
    /// It does not resolve (now): worth another try.
    #[error("{0}")]
    Unresolved(String),
}

/// Resolves a webhook's host and answers the one address to connect to, or why none may be:
/// every address it resolves to must be public (one private answer is enough to refuse, as an
/// attacker's DNS may alternate).
pub async fn public_addresses(url: &WebhookUrl, allow_private: bool) -> Result<std::net::SocketAddr, TargetRefusal> {
    let unresolved = |why: String| TargetRefusal::Unresolved(why);
    let resolved: Vec<std::net::SocketAddr> = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::lookup_host((url.host.trim_start_matches('[').trim_end_matches(']'), url.port)),
    )
    .await
    .map_err(|_| unresolved(format!("{} did not resolve within 5 s", url.host)))?
    .map_err(|e| unresolved(format!("{} does not resolve: {e}", url.host)))?
    .collect();
    if let Some(bad) = resolved.iter().find(|a| !allow_private && !target::is_public(a.ip())) {
        return Err(TargetRefusal::NotPublic(format!("{} {}", url.host, target::forbidden_reason(bad.ip()))));
    }
    resolved.first().copied().ok_or_else(|| unresolved(format!("{} resolves to no address", url.host)))
}
