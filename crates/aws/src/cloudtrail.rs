//! CloudTrail for the importer: one LookupEvents page of a walk, and what its failures mean.
//! No SDK type leaves this module.

use aws_config::retry::RetryConfig;
use aws_config::Region;
use aws_sdk_cloudtrail::config::http::HttpResponse;
use aws_sdk_cloudtrail::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudtrail::operation::lookup_events::LookupEventsError;
use aws_sdk_cloudtrail::primitives::DateTime;
use aws_sdk_cloudtrail::types::{Event, LookupAttribute, LookupAttributeKey};
use domain::cloudtrail::LookupEvent;
use domain::event::Resource;
use domain::import::Walk;
use time::OffsetDateTime;

use crate::{describe, is_denied, Aws, TemporaryCredentials};

/// One page of a walk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LookupPage {
    pub events: Vec<LookupEvent>,
    /// The token of the walk's next page; `None` on its last.
    pub next_token: Option<String>,
}

/// Why a LookupEvents call failed, sorted by what the caller does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// Over the account's 2 calls per second: wait and call again.
    Throttled,
    /// The NextToken outlived its walk: walk the window again from its first page.
    InvalidToken,
    /// The assumed role's session ended: assume it again.
    ExpiredCredentials,
    /// The role may not call LookupEvents (here, an SCP or a changed policy).
    Denied(String),
    /// A 5xx, a timeout or a lost connection: worth a retry.
    Transient(String),
    /// Anything else: retrying will not help.
    Failed(String),
}

/// CloudTrail in one region on a role's temporary credentials, for the importer.
pub struct CloudTrailReader {
    client: aws_sdk_cloudtrail::Client,
    region: String,
}

impl Aws {
    /// No SDK retries, because every call must first reserve a slot of the account's shared
    /// budget; the importer retries itself.
    pub fn cloudtrail_reader(&self, credentials: &TemporaryCredentials, region: &str) -> CloudTrailReader {
        let config = aws_sdk_cloudtrail::config::Builder::from(&self.sdk)
            .credentials_provider(credentials.credentials.clone())
            .region(Region::new(region.to_owned()))
            .retry_config(RetryConfig::disabled())
            .build();
        CloudTrailReader { client: aws_sdk_cloudtrail::Client::from_conf(config), region: region.to_owned() }
    }
}

impl CloudTrailReader {
    /// One LookupEvents page of `walk`'s fixed window: 50 events, newest first; changes only
    /// unless `include_read_only`.
    pub async fn lookup_page(
        &self,
        walk: &Walk,
        token: Option<String>,
        include_read_only: bool,
    ) -> Result<LookupPage, LookupError> {
        let mut request = self
            .client
            .lookup_events()
            .start_time(DateTime::from_secs(walk.start.unix_timestamp()))
            .end_time(DateTime::from_secs(walk.end.unix_timestamp()))
            .max_results(50)
            .set_next_token(token);
        if !include_read_only {
            let changes_only = LookupAttribute::builder()
                .attribute_key(LookupAttributeKey::ReadOnly)
                .attribute_value("false")
                .build()
                .map_err(|e| LookupError::Failed(e.to_string()))?;
            request = request.lookup_attributes(changes_only);
        }
        match request.send().await {
            Ok(output) => Ok(LookupPage {
                events: output.events().iter().map(to_lookup_event).collect(),
                next_token: output.next_token().map(str::to_owned),
            }),
            Err(error) => Err(self.classify(&error)),
        }
    }

    fn classify(&self, error: &SdkError<LookupEventsError, HttpResponse>) -> LookupError {
        let code = error.as_service_error().and_then(|s| s.code());
        // Worth retrying: a 5xx, a timeout, or no answer at all.
        let transient = match error {
            SdkError::ServiceError(e) => e.raw().status().is_server_error(),
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
            _ => false,
        };
        match code {
            Some("ThrottlingException" | "ThrottledException" | "TooManyRequestsException") => LookupError::Throttled,
            Some("InvalidNextTokenException") => LookupError::InvalidToken,
            Some("ExpiredTokenException") => LookupError::ExpiredCredentials,
            c if is_denied(c) => {
                LookupError::Denied(format!("LookupEvents in {} was denied: {}", self.region, describe(error)))
            }
            _ if transient => LookupError::Transient(format!("LookupEvents failed: {}", describe(error))),
            _ => LookupError::Failed(format!("LookupEvents failed: {}", describe(error))),
        }
    }
}

fn to_lookup_event(e: &Event) -> LookupEvent {
    LookupEvent {
        event_id: e.event_id().map(str::to_owned),
        event_name: e.event_name().map(str::to_owned),
        read_only: e.read_only().map(str::to_owned),
        event_time: e.event_time().and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()),
        event_source: e.event_source().map(str::to_owned),
        username: e.username().map(str::to_owned),
        resources: e
            .resources()
            .iter()
            .filter_map(|r| {
                Some(Resource {
                    resource_type: r.resource_type().map(str::to_owned),
                    name: r.resource_name()?.to_owned(),
                    arn: None,
                    primary: false,
                })
            })
            .collect(),
        cloudtrail_event: e.cloud_trail_event().map(str::to_owned),
    }
}
