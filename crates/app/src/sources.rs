//! Webhook sources: their lifecycle, and each delivery read, verified and posted like any item.

use std::collections::BTreeMap;

use domain::secret_box::SecretKey;
use domain::source::{self, Delivery, Reading, Source, SourceKind, SourceSettings};
use domain::{EnvironmentRef, EnvironmentSlug, Invalid, Page, PageRequest};
use uuid::Uuid;

use crate::{App, AppError, AppResult, Refusal};

/// What the webhooks need from the server's configuration.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Seals the secrets that must be read back to verify signatures.
    pub secret_key: SecretKey,
    /// Where providers reach this server (`CHANGETRAIL_PUBLIC_URL`), for `ingest_url`.
    pub public_url: String,
    /// `CHANGETRAIL_ALLOW_PRIVATE_TARGETS`: rules' webhooks may go to private addresses and
    /// plain http (a private network, or tests).
    pub allow_private_targets: bool,
}

/// A source to create, as an admin gives it.
pub struct NewSource<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub environments: &'a [String],
    pub environment_map: &'a BTreeMap<String, String>,
    pub service_map: &'a BTreeMap<String, String>,
    /// GitHub: generated when absent. PagerDuty: required (PagerDuty generates it).
    pub secret: Option<&'a str>,
}

/// Changes to a source; absent fields stay.
#[derive(Default)]
pub struct SourcePatch<'a> {
    pub name: Option<&'a str>,
    pub environments: Option<&'a [String]>,
    pub environment_map: Option<&'a BTreeMap<String, String>>,
    pub service_map: Option<&'a BTreeMap<String, String>>,
    /// Replaces every secret (up to two, for a rotation).
    pub secrets: Option<&'a [String]>,
}

/// The request of one delivery, as the provider sent it.
pub struct HookDelivery<'a> {
    pub source_id: &'a str,
    /// `X-GitHub-Event`; PagerDuty names the event in the body.
    pub event: Option<&'a str>,
    /// `X-GitHub-Delivery` or `X-Webhook-Id`.
    pub delivery_id: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum HookOutcome {
    Stored { item_id: Uuid, created: bool },
    Ignored(String),
}

pub const MAX_DELIVERIES: u32 = 100;

impl App {
    pub fn ingest_url(&self, source: &Source) -> String {
        let base = self.webhooks.public_url.trim_end_matches('/');
        format!("{base}/hooks/{}/{}", source.kind.as_str(), source.id)
    }

    /// A new source, and the secret when changetrail generated it (shown this once).
    pub async fn create_source(&self, org_id: Uuid, new: NewSource<'_>) -> AppResult<(Source, Option<String>)> {
        let mut errors = Invalid::default();
        let kind = errors.check(SourceKind::parse(new.kind));
        let settings =
            errors.check(SourceSettings::parse(new.name, new.environments, new.environment_map, new.service_map));
        let (secret, generated) = match (kind, new.secret) {
            (_, Some(given)) => {
                (errors.check(source::parse_secrets(&[given.to_owned()]).map_err(rename_secret)), false)
            }
            (Some(SourceKind::Github), None) => (Some(vec![source::generate_secret()]), true),
            (Some(SourceKind::Pagerduty), None) => {
                errors.push("secret", "give the signing secret PagerDuty showed when the webhook was created");
                (None, false)
            }
            (None, None) => (None, false),
        };
        errors.into_result()?;
        let (kind, settings, secrets) = (kind.unwrap(), settings.unwrap(), secret.unwrap_or_default());
        self.require_environments(org_id, &settings.named_environments()).await?;
        let sealed = self.seal_all(&secrets);
        let created = self.store.create_source(org_id, kind, &settings, &sealed).await?;
        Ok((created, generated.then(|| secrets[0].clone())))
    }

    pub async fn source(&self, org_id: Uuid, id: Uuid) -> AppResult<Source> {
        self.store.get_source(org_id, id).await?.ok_or(AppError::NotFound("source"))
    }

    pub async fn sources(&self, org_id: Uuid, page: PageRequest) -> AppResult<Page<Source>> {
        Ok(self.store.list_sources(org_id, page).await?)
    }

    pub async fn update_source(&self, org_id: Uuid, id: Uuid, patch: SourcePatch<'_>) -> AppResult<Source> {
        let current = self.source(org_id, id).await?;
        let s = &current.settings;
        let as_strings = |m: &BTreeMap<String, EnvironmentSlug>| -> BTreeMap<String, String> {
            m.iter().map(|(k, v)| (k.clone(), v.as_str().to_owned())).collect()
        };
        let environments: Vec<String> = s.environments.iter().map(|e| e.as_str().to_owned()).collect();
        let environment_map = as_strings(&s.environment_map);
        let mut errors = Invalid::default();
        let settings = errors.check(SourceSettings::parse(
            patch.name.unwrap_or(&s.name),
            patch.environments.unwrap_or(&environments),
            patch.environment_map.unwrap_or(&environment_map),
            patch.service_map.unwrap_or(&s.service_map),
        ));
        let secrets = patch.secrets.and_then(|given| errors.check(source::parse_secrets(given)));
        errors.into_result()?;
        let settings = settings.unwrap();
        self.require_environments(org_id, &settings.named_environments()).await?;
        let sealed = secrets.map(|all| self.seal_all(&all));
        self.store.update_source(org_id, id, &settings, sealed.as_deref()).await?.ok_or(AppError::NotFound("source"))
    }

    pub async fn delete_source(&self, org_id: Uuid, id: Uuid) -> AppResult<()> {
        if self.store.delete_source(org_id, id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound("source"))
        }
    }

    pub async fn deliveries(&self, org_id: Uuid, id: Uuid, limit: u32) -> AppResult<Vec<Delivery>> {
        self.source(org_id, id).await?;
        Ok(self.store.list_deliveries(org_id, id, limit.clamp(1, MAX_DELIVERIES)).await?)
    }

    fn seal_all(&self, secrets: &[String]) -> Vec<String> {
        secrets.iter().map(|s| self.webhooks.secret_key.seal(s)).collect()
    }

    /// One delivery: the source found by the URL's id, the signature checked over the raw
    /// bytes with the source's secrets before anything is parsed, then read and posted. An
    /// unknown source and a bad signature are answered alike, and neither is recorded (an
    /// unsigned request must not be able to fill the delivery log).
    pub async fn receive_hook(&self, kind: SourceKind, delivery: HookDelivery<'_>) -> AppResult<HookOutcome> {
        let refused = || {
            AppError::refused(
                Refusal::Unauthenticated,
                "invalid_signature",
                "the signature is missing or does not match this source's secret",
            )
        };
        let id: Uuid = delivery.source_id.parse().map_err(|_| refused())?;
        let source = self.store.source_for_hook(id).await?.filter(|s| s.kind == kind).ok_or_else(refused)?;
        let secrets: Vec<String> =
            source.sealed_secrets.iter().filter_map(|sealed| self.webhooks.secret_key.open(sealed)).collect();
        if secrets.len() < source.sealed_secrets.len() {
            tracing::error!(source = %source.id, "a source's secret cannot be opened: is CHANGETRAIL_SECRET_KEY the key it was sealed with?");
        }
        let signed = match kind {
            SourceKind::Github => {
                secrets.iter().any(|s| source::github::signature_matches(s, delivery.body, delivery.signature))
            }
            SourceKind::Pagerduty => source::pagerduty::signature_matches(&secrets, delivery.body, delivery.signature),
        };
        if !signed {
            tracing::info!(source = %source.id, "refused a delivery whose signature does not match");
            return Err(refused());
        }
        let payload: serde_json::Value = serde_json::from_slice(delivery.body).map_err(|e| {
            AppError::refused(Refusal::BadInput, "malformed_json", format!("the body is not JSON: {e}"))
        })?;
        let event_type = match kind {
            SourceKind::Github => delivery.event.unwrap_or("unknown").to_owned(),
            SourceKind::Pagerduty => {
                payload.pointer("/event/event_type").and_then(|v| v.as_str()).unwrap_or("unknown").to_owned()
            }
        };
        let reading = match kind {
            SourceKind::Github => source::github::read(&event_type, &payload, &source),
            SourceKind::Pagerduty => source::pagerduty::read(&payload, &source),
        };
        let outcome = match reading {
            Ok(Reading::Ignored(why)) => Ok(HookOutcome::Ignored(why)),
            Ok(Reading::Item { posted, named_environment }) => {
                self.post_delivered(&source, *posted, named_environment.as_deref()).await
            }
            Err(invalid) => Err(AppError::Invalid(invalid)),
        };
        let (logged, item_id, detail) = match &outcome {
            Ok(HookOutcome::Stored { item_id, .. }) => ("stored", Some(*item_id), None),
            Ok(HookOutcome::Ignored(why)) => ("ignored", None, Some(why.clone())),
            Err(AppError::Invalid(invalid)) => {
                let why = invalid.0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>();
                ("refused", None, Some(truncate(&why.join("; "), 1000)))
            }
            Err(other) => ("failed", None, Some(truncate(&other.to_string(), 1000))),
        };
        tracing::debug!(source = %source.id, event = %event_type, outcome = logged, "webhook delivery");
        let record = Delivery {
            source_id: source.id,
            delivery_id: truncate(delivery.delivery_id.unwrap_or(&format!("unnamed-{}", Uuid::now_v7())), 200),
            event_type: truncate(&event_type, 100),
            outcome: logged.to_owned(),
            item_id,
            detail,
            received_at: domain::time_util::now(),
        };
        self.store.record_delivery(&record).await?;
        outcome
    }

    /// The delivery's own environment (through `environment_map`, or the same slug) when it
    /// exists in the organisation, else the source's environments.
    async fn post_delivered(
        &self,
        source: &Source,
        mut posted: domain::posted::Posted,
        named: Option<&str>,
    ) -> AppResult<HookOutcome> {
        let preferred = named.and_then(|name| {
            source
                .settings
                .environment_map
                .get(name)
                .cloned()
                .or_else(|| EnvironmentSlug::parse("environment", &name.to_lowercase()).ok())
        });
        if let Some(slug) = preferred {
            let found = self.store.find_environments(source.org_id, &[EnvironmentRef::Slug(slug.clone())]).await?;
            if !found.is_empty() {
                posted.environments = vec![slug];
            }
        }
        if posted.environments.is_empty() {
            let what = named.map_or(String::new(), |n| format!(" for {n:?}"));
            return Err(Invalid::one(
                "environments",
                format!(
                    "no environment{what}: map it in the source's environment_map, or give the source environments"
                ),
            )
            .into());
        }
        // Providers may deliver out of order (a retried `in_progress` after `success`): an older
        // state than the one stored leaves the item as it is.
        if let Some(new_at) = source::status_at(&posted.event.details) {
            let stored =
                self.store.details_by_key(source.org_id, &posted.event.source, &posted.event.source_key).await?;
            if stored.and_then(|details| source::status_at(&details)).is_some_and(|old_at| old_at > new_at) {
                return Ok(HookOutcome::Ignored("an older status than the one already recorded".into()));
            }
        }
        posted.event.via = domain::event::IngestPath::Webhook;
        let stored = self.post(source.org_id, posted).await?;
        Ok(HookOutcome::Stored { item_id: stored.item.id, created: stored.created })
    }
}

fn rename_secret(mut invalid: Invalid) -> Invalid {
    for e in &mut invalid.0 {
        e.field = "secret".into();
    }
    invalid
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
