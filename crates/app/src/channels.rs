//! CloudTrail Lake-compatible channels: their lifecycle, and `PutAuditEvents` answered as the
//! cloudtrail-data service does, each accepted audit event stored as a timeline item.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws::sigv4::{self, ArrivedRequest};
use domain::channel::{self, Channel, ChannelOutcome, ChannelSettings, RequestFailure, SIGNING_SERVICE};
use domain::{EnvironmentRef, Page, PageRequest};
use uuid::Uuid;

use crate::{App, AppError, AppResult};

/// A channel to create, or the whole of a channel's new settings.
pub struct ChannelInput<'a> {
    pub name: &'a str,
    pub source: &'a str,
    pub environments: &'a [String],
    pub external_id: Option<&'a str>,
}

/// A `PutAuditEvents` call as it arrived.
pub struct AuditEventsCall<'a> {
    pub request: ArrivedRequest<'a>,
    pub channel_arn: Option<&'a str>,
    pub external_id: Option<&'a str>,
}

/// The answer to a `PutAuditEvents` call that was read: per event, its item or why not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEventsAnswer {
    /// (the caller's id, the item's id as `eventID`)
    pub successful: Vec<(String, Uuid)>,
    /// (the caller's id, code, message)
    pub failed: Vec<(String, &'static str, String)>,
}

/// A request-level refusal, named as AWS names it.
pub type CallRefused = RequestFailure;

fn refused(code: &'static str, message: impl Into<String>) -> CallRefused {
    RequestFailure { code, message: message.into() }
}

impl App {
    /// Where SDKs send `PutAuditEvents` (`endpoint_url`).
    pub fn channel_endpoint(&self) -> String {
        self.webhooks.public_url.trim_end_matches('/').to_owned()
    }

    async fn channel_settings(&self, org_id: Uuid, input: &ChannelInput<'_>) -> AppResult<ChannelSettings> {
        let settings = ChannelSettings::parse(input.name, input.source, input.environments, input.external_id)?;
        let named: Vec<_> =
            settings.environments.iter().enumerate().map(|(i, e)| (format!("environments[{i}]"), e.clone())).collect();
        self.require_environments(org_id, &named).await?;
        Ok(settings)
    }

    /// A new channel and its secret access key (shown this once; kept sealed).
    pub async fn create_channel(&self, org_id: Uuid, input: ChannelInput<'_>) -> AppResult<(Channel, String)> {
        let settings = self.channel_settings(org_id, &input).await?;
        let (access_key_id, secret) = channel::generate_access_key();
        let sealed = self.webhooks.secret_key.seal(&secret);
        let created = self.store.create_channel(org_id, &settings, &access_key_id, &sealed).await?;
        Ok((created, secret))
    }

    pub async fn channel(&self, org_id: Uuid, id: Uuid) -> AppResult<Channel> {
        self.store.get_channel(org_id, id).await?.ok_or(AppError::NotFound("channel"))
    }

    pub async fn channels(&self, org_id: Uuid, page: PageRequest) -> AppResult<Page<Channel>> {
        Ok(self.store.list_channels(org_id, page).await?)
    }

    pub async fn update_channel(&self, org_id: Uuid, id: Uuid, input: ChannelInput<'_>) -> AppResult<Channel> {
        self.channel(org_id, id).await?;
        let settings = self.channel_settings(org_id, &input).await?;
        self.store.update_channel(org_id, id, &settings).await?.ok_or(AppError::NotFound("channel"))
    }

    pub async fn delete_channel(&self, org_id: Uuid, id: Uuid) -> AppResult<()> {
        match self.store.delete_channel(org_id, id).await? {
            true => Ok(()),
            false => Err(AppError::NotFound("channel")),
        }
    }

    /// The tallies of each of these channels (one of them, or a page), in one query.
    pub async fn channel_outcomes(&self, channels: &[Channel]) -> AppResult<Vec<Vec<ChannelOutcome>>> {
        let (Some(first), Some(last)) = (channels.iter().map(|c| c.id).min(), channels.iter().map(|c| c.id).max())
        else {
            return Ok(Vec::new());
        };
        let org_id = channels[0].org_id;
        let all = self.store.channel_outcomes(org_id, first, last).await?;
        Ok(channels
            .iter()
            .map(|c| all.iter().filter(|(id, _)| *id == c.id).map(|(_, o)| o.clone()).collect())
            .collect())
    }

    /// `PutAuditEvents`: the signature proves the channel's key before anything else is read;
    /// then the channel and external ID, the request's limits, and each event on its own. One
    /// bad event never fails the others.
    pub async fn put_audit_events(&self, call: AuditEventsCall<'_>) -> Result<AuditEventsAnswer, CallRefused> {
        let request = &call.request;
        let unknown_key =
            || refused("UnrecognizedClientException", "The security token included in the request is invalid.");
        let key = sigv4::claimed_access_key(request).map_err(aws_refusal)?;
        let channel = self.store.channel_for_key(&key).await.map_err(internal)?.ok_or_else(unknown_key)?;
        let secret = self.webhooks.secret_key.open(&channel.sealed_secret).ok_or_else(|| {
            tracing::error!(channel = %channel.id, "a channel's secret cannot be opened: is CHANGETRAIL_SECRET_KEY the key it was sealed with?");
            refused("InternalFailure", "the channel's key cannot be read on this server")
        })?;
        sigv4::verify(request, SIGNING_SERVICE, &secret, SystemTime::now()).map_err(aws_refusal)?;
        let named = call.channel_arn.ok_or_else(|| refused("ValidationException", "channelArn is required"))?;
        let id = channel::channel_id_of(named)
            .ok_or_else(|| refused("InvalidChannelARN", format!("{named} is not a channel ARN of this service")))?;
        // A key opens only its own channel: another channel, of this organisation or another,
        // is answered as one that does not exist.
        if id != channel.id {
            return Err(refused("ChannelNotFound", format!("no channel {named} for this access key")));
        }
        if let Some(required) = &channel.settings.external_id {
            let given = call.external_id.unwrap_or_default();
            if !bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), required.as_bytes())) {
                return Err(refused(
                    "ChannelInsufficientPermission",
                    "this channel requires its external ID (externalId) and it is missing or wrong",
                ));
            }
        }
        let events = channel::read_request(request.body)?;
        let refs: Vec<_> = channel.settings.environments.iter().cloned().map(EnvironmentRef::Slug).collect();
        let environment_ids: Vec<Uuid> = self
            .store
            .find_environments(channel.org_id, &refs)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|e| e.id)
            .collect();
        let mut answer = AuditEventsAnswer::default();
        let mut readable = Vec::new();
        for event in &events {
            match channel::read_event(event, &channel, &environment_ids) {
                Ok(item) => readable.push((event.id.clone(), item)),
                Err(f) => answer.failed.push((event.id.clone(), f.code, f.message)),
            }
        }
        let items: Vec<_> = readable.iter().map(|(_, item)| item.clone()).collect();
        match self.store.insert_events(channel.org_id, &items).await {
            Ok(stored) => {
                for ((id, _), (item_id, _)) in readable.iter().zip(stored) {
                    answer.successful.push((id.clone(), item_id));
                }
            }
            Err(e) => {
                tracing::warn!(channel = %channel.id, error = %e, "a channel's audit events could not be stored");
                for (id, _) in &readable {
                    answer.failed.push((
                        id.clone(),
                        "InternalFailure",
                        "the event could not be stored; send it again".into(),
                    ));
                }
            }
        }
        self.count_outcomes(&channel, &answer).await;
        Ok(answer)
    }

    async fn count_outcomes(&self, channel: &Channel, answer: &AuditEventsAnswer) {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        if !answer.successful.is_empty() {
            counts.insert("accepted".into(), answer.successful.len() as u64);
        }
        for (_, code, _) in &answer.failed {
            *counts.entry((*code).to_owned()).or_default() += 1;
        }
        for (outcome, n) in &counts {
            metrics::counter!("changetrail_channel_events_total", "channel" => channel.id.to_string(), "outcome" => outcome.clone())
                .increment(*n);
        }
        let counts: Vec<(String, u64)> = counts.into_iter().collect();
        if let Err(e) = self.store.count_channel_outcomes(channel.id, &counts, domain::time_util::now()).await {
            tracing::warn!(channel = %channel.id, error = %e, "a channel's tallies could not be updated");
        }
    }
}

fn aws_refusal(r: sigv4::SignatureRefusal) -> CallRefused {
    refused(r.code, r.message)
}

fn internal(e: domain::StoreError) -> CallRefused {
    tracing::warn!(error = %e, "PutAuditEvents failed in the store");
    refused("InternalFailure", "the request could not be processed; try again")
}
