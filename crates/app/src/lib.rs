//! changetrail's application layer: every use case once, for the HTTP API and the worker to
//! call. It validates into domain types, talks to the store and AWS, and answers in domain
//! types or an [`AppError`]; it knows no HTTP (the API maps errors to statuses) and no SQL.

use std::sync::Arc;
use std::time::Duration;

use domain::{FieldError, Invalid, Store, StoreError};
use tokio::sync::broadcast;

mod channels;
mod connections;
mod environments;
mod lookups;
mod pages;
mod posting;
mod push;
mod rules;
mod sessions;
mod sources;
mod stream;
mod timeline;
mod tokens;

pub use channels::{AuditEventsAnswer, AuditEventsCall, CallRefused, ChannelInput};
pub use connections::{RegionImport, RoleInput};
pub use pages::{PageTicket, PAGES_FRESH_FOR};
pub use posting::NewItem;
pub use push::{PushEndpoint, PushOutcome, PushStatus};
pub use rules::{public_addresses, ActionInput, RuleInput, RulePatch, RuleView, TargetRefusal};
pub use sources::{HookDelivery, HookOutcome, NewSource, SourcePatch, WebhookSettings, MAX_DELIVERIES};
pub use stream::{StreamMessage, STREAM_BUFFER};
pub use timeline::Suspects;

/// Why a use case did not happen, in terms the API turns into a problem document.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid input")]
    Invalid(Invalid),
    /// The request was understood and refused; `code` says why, for machines.
    #[error("{detail}")]
    Refused { kind: Refusal, code: &'static str, detail: String, errors: Vec<FieldError> },
    #[error(transparent)]
    Store(StoreError),
}

/// What kind of refusal: the API's status follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request itself cannot be read (a cursor from elsewhere).
    BadInput,
    /// Well-formed but not acceptable (a role that fails a check).
    Unacceptable,
    /// Not in this resource's current state (sync a connection that is not active).
    Conflict,
    /// AWS could not be reached or failed; nothing was changed.
    Upstream,
    /// A webhook delivery whose signature does not prove it came from the source's provider.
    Unauthenticated,
    /// Not allowed by how the operator configured this changetrail.
    Forbidden,
}

impl AppError {
    pub fn refused(kind: Refusal, code: &'static str, detail: impl Into<String>) -> AppError {
        AppError::Refused { kind, code, detail: detail.into(), errors: Vec::new() }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Store(e)
    }
}

impl From<Invalid> for AppError {
    fn from(invalid: Invalid) -> Self {
        AppError::Invalid(invalid)
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// The service's AWS clients and its own identity, as trust policies name it.
pub struct AwsAccess {
    pub aws: aws::Aws,
    configured_principal: Option<String>,
    discovered_principal: tokio::sync::OnceCell<String>,
    /// Where the operator published the CloudFormation template, for quick-create links.
    pub cfn_template_url: Option<String>,
    /// Whether a connection may import with changetrail's own identity
    /// (`CHANGETRAIL_ALLOW_SERVICE_CREDENTIALS`): that identity is the operator's, so off by
    /// default, and then for one organisation only.
    pub allow_service_credentials: bool,
}

impl AwsAccess {
    pub fn new(aws: aws::Aws, configured_principal: Option<String>, cfn_template_url: Option<String>) -> Self {
        AwsAccess {
            aws,
            configured_principal,
            discovered_principal: tokio::sync::OnceCell::new(),
            cfn_template_url,
            allow_service_credentials: false,
        }
    }

    /// Allows (or not) connections on changetrail's own identity.
    pub fn with_service_credentials(mut self, allowed: bool) -> Self {
        self.allow_service_credentials = allowed;
        self
    }

    /// `CHANGETRAIL_AWS_PRINCIPAL_ARN`, or else what GetCallerIdentity says of the service's own
    /// credentials (asked once, then remembered).
    pub async fn principal(&self) -> Result<String, String> {
        if let Some(principal) = &self.configured_principal {
            return Ok(principal.clone());
        }
        self.discovered_principal.get_or_try_init(|| self.aws.own_principal()).await.cloned()
    }
}

/// The application: the store, AWS, and what reacts to new items.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub aws: Arc<AwsAccess>,
    /// The importer's re-scan overlap: a region's reported checkpoint is this far behind the
    /// windows walked.
    pub import_overlap: Duration,
    pub webhooks: WebhookSettings,
    new_items: broadcast::Sender<NewItem>,
    lookups: Arc<lookups::Lookups>,
    pages: Arc<pages::RenderedPages>,
}

impl App {
    pub fn new(store: Arc<dyn Store>, aws: Arc<AwsAccess>, import_overlap: Duration, webhooks: WebhookSettings) -> App {
        // Reactions that fall this far behind miss items (and are told so by the channel).
        let (new_items, _) = broadcast::channel(1024);
        let pages = Arc::new(pages::RenderedPages::new(pages::PAGES_FRESH_FOR));
        App { store, aws, import_overlap, webhooks, new_items, lookups: Default::default(), pages }
    }

    /// The same application serving a timeline page it read to the organisation's other
    /// callers for `fresh_for` (`pages.rs`); zero reads every page.
    pub fn remembering_pages_for(mut self, fresh_for: Duration) -> App {
        self.pages = Arc::new(pages::RenderedPages::new(fresh_for));
        self
    }

    /// Every item stored from now on, whatever its source: for what reacts to new items (live
    /// timelines, rules).
    pub fn subscribe(&self) -> broadcast::Receiver<NewItem> {
        self.new_items.subscribe()
    }
}
