//! changetrail's access to AWS, only through the SDK's clients configured by `aws-config`: the
//! standard credential chain, `AWS_REGION`, `AWS_ENDPOINT_URL` (per service too), retries and
//! timeouts. Nothing here knows whether it talks to AWS or to a stand-in. `sigv4` verifies the
//! signatures AWS SDKs put on requests made to changetrail.

pub mod sigv4;

use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use domain::RoleArn;

mod cloudtrail;
mod organizations;
pub use cloudtrail::{CloudTrailReader, LookupError, LookupPage};
pub use organizations::ListAccountsError;

/// What a validated role is for, which decides the last check of its validation.
#[derive(Debug, Clone, Copy)]
pub enum RoleUse<'a> {
    /// Importing: one LookupEvents call in this region must be allowed.
    Import { lookup_region: &'a str },
    /// Listing an organisation's accounts: DescribeOrganization and ListAccounts must be allowed.
    ListAccounts,
}

/// Every AWS call answers or fails within this, so no request hangs on AWS.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The service's own AWS identity and the clients built on it.
#[derive(Clone)]
pub struct Aws {
    sdk: SdkConfig,
    sts: aws_sdk_sts::Client,
}

/// Credentials of an assumed role. Never logged (the SDK's `Debug` redacts the secrets), never
/// stored, never returned by the API.
#[derive(Clone)]
pub struct TemporaryCredentials {
    pub credentials: Credentials,
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryCredentials").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// Why a role did not pass validation; each has the `code` of the API contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCheckFailure {
    AssumeRoleDenied(String),
    /// A role of a chain before the last could not be assumed (1-based `hop` of `of`).
    HopDenied {
        hop: usize,
        of: usize,
        role: String,
        message: String,
    },
    IdentityMismatch {
        actual: String,
    },
    /// AssumeRole succeeded without the external ID, or (`accepts_other_ids`) with one that is
    /// not this connection's.
    ExternalIdNotEnforced {
        accepts_other_ids: bool,
    },
    LookupDenied {
        region: String,
        message: String,
    },
    /// An organisation connection's role may not list the organisation's accounts.
    ListAccountsDenied {
        message: String,
    },
    /// AssumeRole refused the connection's `session_duration`: the role's MaxSessionDuration is
    /// shorter.
    SessionTooLong {
        seconds: u64,
        message: String,
    },
    Unavailable(String),
}

impl RoleCheckFailure {
    pub fn code(&self) -> &'static str {
        match self {
            RoleCheckFailure::AssumeRoleDenied(_) | RoleCheckFailure::HopDenied { .. } => "assume_role_denied",
            RoleCheckFailure::IdentityMismatch { .. } => "identity_mismatch",
            RoleCheckFailure::ExternalIdNotEnforced { .. } => "external_id_not_enforced",
            RoleCheckFailure::LookupDenied { .. } => "lookup_denied",
            RoleCheckFailure::ListAccountsDenied { .. } => "list_accounts_denied",
            RoleCheckFailure::SessionTooLong { .. } => "session_duration_too_long",
            RoleCheckFailure::Unavailable(_) => "aws_unavailable",
        }
    }

    /// What an admin should do about it.
    pub fn detail(&self, role: &RoleArn, principal: &str) -> String {
        match self {
            RoleCheckFailure::AssumeRoleDenied(aws) => format!(
                "AWS denied sts:AssumeRole on {role} with this connection's external ID ({aws}). Check that the role exists, \
                 that its trust policy allows the principal {principal}, and that its condition requires sts:ExternalId \
                 to equal this connection's external_id (GET /v1/connections/{{id}}/setup has the policy filled in)."
            ),
            RoleCheckFailure::HopDenied { hop, of, role: hop_role, message } => format!(
                "AWS denied sts:AssumeRole on hop {hop} of {of} of the role chain, {hop_role} ({message}). {} Nothing \
                 was registered.",
                if *hop == 1 {
                    format!("Its trust policy must allow the principal {principal}, with this connection's external_id.")
                } else {
                    "Its trust policy must allow the role of the hop before it.".to_owned()
                }
            ),
            RoleCheckFailure::IdentityMismatch { actual } => format!(
                "AssumeRole succeeded, but GetCallerIdentity says the session is {actual}, which is not a session of {role}. \
                 Register the ARN of the role you created."
            ),
            RoleCheckFailure::ExternalIdNotEnforced { accepts_other_ids } => format!(
                "{role} can be assumed {}: its trust policy needs the condition StringEquals sts:ExternalId with this \
                 connection's external_id. Anyone who learns the role's ARN could then read this account's events \
                 from another changetrail organisation (the confused-deputy problem). Use the setup's trust_policy \
                 and register the role again; it was not registered.",
                if *accepts_other_ids {
                    "with an external ID that is not this connection's (a StringLike, wildcard or Null condition)"
                } else {
                    "without the external ID"
                }
            ),
            RoleCheckFailure::LookupDenied { region, message } => format!(
                "The role can be assumed, but cloudtrail:LookupEvents was denied in {region} ({message}). Attach the \
                 setup's permissions_policy to {role} and register it again."
            ),
            RoleCheckFailure::ListAccountsDenied { message } => format!(
                "The role can be assumed, but it may not list the organisation's accounts ({message}). An organisation \
                 connection's role must be in the management account or a delegated administrator's, with \
                 organizations:DescribeOrganization and organizations:ListAccounts (the setup's permissions_policy)."
            ),
            RoleCheckFailure::SessionTooLong { seconds, message } => format!(
                "The role can be assumed, but not for the connection's session_duration of {seconds} s ({message}). \
                 Raise the role's MaxSessionDuration to at least {seconds} (the setup documents set it), or lower \
                 session_duration, and register it again."
            ),
            RoleCheckFailure::Unavailable(message) => {
                format!("AWS could not be reached or failed ({message}); nothing was registered. Try again shortly.")
            }
        }
    }
}

/// Why the importer could not assume a connection's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssumeRoleFailure {
    Denied(String),
    Failed(String),
}

/// A role that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRole {
    pub assumed_role_arn: String,
}

fn is_denied(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("AccessDenied") || c == "UnauthorizedOperation" || c == "NotAuthorized")
}

/// A short description of an SDK error for an admin: AWS's code and message, or what failed.
fn describe<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(error: &SdkError<E, R>) -> String {
    match error {
        SdkError::ServiceError(e) => {
            let err = e.err();
            format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or("no message"))
        }
        SdkError::TimeoutError(_) => "the call timed out".to_owned(),
        SdkError::DispatchFailure(e) => {
            if e.is_timeout() {
                "the call timed out".to_owned()
            } else {
                "the endpoint could not be reached".to_owned()
            }
        }
        SdkError::ResponseError(_) => "the answer could not be read".to_owned(),
        other => format!("{other:?}").chars().take(200).collect(),
    }
}

impl Aws {
    /// From aws-config's loader (the binary's reads the environment; tests name their endpoint
    /// and credentials explicitly instead of through process-wide variables), with
    /// changetrail's timeouts and retries.
    pub async fn from_loader(loader: aws_config::ConfigLoader) -> Aws {
        let mut sdk = loader
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(OPERATION_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .load()
            .await;
        if sdk.region().is_none() {
            // STS is global; a default keeps a machine without AWS_REGION working.
            sdk = sdk.into_builder().region(Region::from_static("us-east-1")).build();
        }
        let sts = aws_sdk_sts::Client::new(&sdk);
        Aws { sdk, sts }
    }

    /// The service's own identity as a trust policy names it (GetCallerIdentity; an assumed-role
    /// session becomes its role).
    pub async fn own_principal(&self) -> Result<String, String> {
        let identity = self.sts.get_caller_identity().send().await.map_err(|e| describe(&e))?;
        let arn = identity.arn().ok_or("GetCallerIdentity returned no ARN")?;
        Ok(domain::aws::principal_from_caller_arn(arn))
    }

    /// The roles of a chain assumed in turn, each with the previous one's credentials and the
    /// external ID (a trust policy without the condition ignores it); the first on the
    /// service's own. AWS ends a chained role's session within an hour, so the hops after the
    /// first ask for at most 3,600 s. The error names the hop (0-based) that failed.
    async fn assume_chain(
        &self,
        chain: &[RoleArn],
        external_id: Option<&str>,
        session_name: &str,
        duration: Duration,
    ) -> Result<(TemporaryCredentials, String), (usize, SdkError<AssumeRoleError>)> {
        let mut client = self.sts.clone();
        let mut last = None;
        for (hop, role) in chain.iter().enumerate() {
            let duration = if hop == 0 { duration } else { duration.min(CHAINED_SESSION) };
            let assumed =
                assume_role_with(&client, role, external_id, session_name, duration).await.map_err(|e| (hop, e))?;
            client = self.sts_as(&assumed.0);
            last = Some(assumed);
        }
        last.ok_or((0, SdkError::construction_failure("a role chain needs at least one role")))
    }

    /// AssumeRole for the importer, its failure sorted: `Err(Denied)` when AWS refuses (the
    /// connection is then marked), `Err(Failed)` for anything else.
    pub async fn assume_role_for_import(
        &self,
        chain: &[RoleArn],
        external_id: &str,
        session_name: &str,
        duration: Duration,
    ) -> Result<TemporaryCredentials, AssumeRoleFailure> {
        match self.assume_chain(chain, Some(external_id), session_name, duration).await {
            Ok((credentials, _)) => Ok(credentials),
            Err((hop, e)) => {
                let role = &chain[hop.min(chain.len().saturating_sub(1))];
                let at = if chain.len() > 1 { format!(" (hop {} of {})", hop + 1, chain.len()) } else { String::new() };
                if is_denied(e.as_service_error().and_then(|s| s.code())) {
                    Err(AssumeRoleFailure::Denied(format!("AssumeRole on {role}{at} was denied: {}", describe(&e))))
                } else {
                    Err(AssumeRoleFailure::Failed(format!("AssumeRole on {role}{at} failed: {}", describe(&e))))
                }
            }
        }
    }

    /// STS on a role's temporary credentials.
    fn sts_as(&self, credentials: &TemporaryCredentials) -> aws_sdk_sts::Client {
        let config =
            aws_sdk_sts::config::Builder::from(&self.sdk).credentials_provider(credentials.credentials.clone()).build();
        aws_sdk_sts::Client::from_conf(config)
    }

    /// The checks of `PUT /v1/connections/{id}/role`, in the contract's order: AssumeRole with
    /// the external ID (each role of a chain in turn, `role` last); GetCallerIdentity names that
    /// role; AssumeRole of `role` without the external ID, or with another, is denied; one
    /// LookupEvents call is allowed.
    pub async fn validate_role(
        &self,
        via: &[RoleArn],
        role: &RoleArn,
        external_id: &str,
        session_name: &str,
        purpose: RoleUse<'_>,
        session_duration: Duration,
    ) -> Result<ValidatedRole, RoleCheckFailure> {
        let validation_session = Duration::from_secs(900);
        let hops = via.len() + 1;
        // The roles before the last, assumed in turn; their credentials assume `role`.
        let before = if via.is_empty() {
            None
        } else {
            let assumed = self.assume_chain(via, Some(external_id), session_name, session_duration).await;
            Some(assumed.map_err(|(hop, e)| {
                let code = e.as_service_error().and_then(|s| s.code());
                if is_denied(code) {
                    RoleCheckFailure::HopDenied {
                        hop: hop + 1,
                        of: hops,
                        role: via[hop].to_string(),
                        message: describe(&e),
                    }
                } else if hop == 0 && code == Some("ValidationError") && session_duration > validation_session {
                    RoleCheckFailure::SessionTooLong { seconds: session_duration.as_secs(), message: describe(&e) }
                } else {
                    RoleCheckFailure::Unavailable(describe(&e))
                }
            })?)
        };
        let sts = before.as_ref().map_or_else(|| self.sts.clone(), |(creds, _)| self.sts_as(creds));
        // Assumed as the importer will assume it: for the connection's session length, which
        // the role's MaxSessionDuration must allow (a chained hop's session is at most an hour).
        let duration = if via.is_empty() { session_duration } else { session_duration.min(CHAINED_SESSION) };
        let (credentials, _) =
            assume_role_with(&sts, role, Some(external_id), session_name, duration).await.map_err(|e| {
                let code = e.as_service_error().and_then(|s| s.code());
                if is_denied(code) {
                    RoleCheckFailure::AssumeRoleDenied(describe(&e))
                } else if code == Some("ValidationError") && duration > validation_session {
                    RoleCheckFailure::SessionTooLong { seconds: duration.as_secs(), message: describe(&e) }
                } else {
                    RoleCheckFailure::Unavailable(describe(&e))
                }
            })?;

        let identity = self
            .sts_as(&credentials)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| RoleCheckFailure::Unavailable(describe(&e)))?;
        let actual = identity.arn().unwrap_or_default().to_owned();
        if !role.is_session_of_this_role(&actual) {
            return Err(RoleCheckFailure::IdentityMismatch { actual });
        }

        // The trust policy must admit this connection's external ID and no other: without one,
        // or with one nobody was given (a `StringLike "*"`, `ct-*` or `Null: false` condition
        // admits it), another organisation could have changetrail assume this role.
        let unknown_id = domain::ExternalId::generate();
        for (probe, loose) in [(None, false), (Some(unknown_id.as_str()), true)] {
            match assume_role_with(&sts, role, probe, session_name, validation_session).await {
                Ok(_) => return Err(RoleCheckFailure::ExternalIdNotEnforced { accepts_other_ids: loose }),
                Err(e) if is_denied(e.as_service_error().and_then(|s| s.code())) => {}
                Err(e) => return Err(RoleCheckFailure::Unavailable(describe(&e))),
            }
        }

        let lookup_region = match purpose {
            RoleUse::Import { lookup_region } => lookup_region,
            RoleUse::ListAccounts => {
                let partition = role.partition.as_str();
                self.list_accounts_page(&credentials, partition, None).await.map_err(|e| match e {
                    organizations::ListAccountsError::Denied(message) => {
                        RoleCheckFailure::ListAccountsDenied { message }
                    }
                    organizations::ListAccountsError::Failed(message) => RoleCheckFailure::Unavailable(message),
                })?;
                return Ok(ValidatedRole { assumed_role_arn: actual });
            }
        };
        self.lookup_allowed(&credentials, lookup_region).await?;
        Ok(ValidatedRole { assumed_role_arn: actual })
    }

    /// changetrail's own identity, for `credentials: service`: GetCallerIdentity names the
    /// account, and one LookupEvents call in `lookup_region` is allowed. Returns the
    /// identity's ARN and account.
    pub async fn validate_own_identity(&self, lookup_region: &str) -> Result<(String, String), RoleCheckFailure> {
        let identity =
            self.sts.get_caller_identity().send().await.map_err(|e| RoleCheckFailure::Unavailable(describe(&e)))?;
        let arn = identity.arn().unwrap_or_default().to_owned();
        let account = identity.account().unwrap_or_default().to_owned();
        let credentials = self.own_credentials().await.map_err(RoleCheckFailure::Unavailable)?;
        self.lookup_allowed(&credentials, lookup_region).await?;
        Ok((arn, account))
    }

    /// The service's own credentials from aws-config's chain (refreshed by the chain itself).
    pub async fn own_credentials(&self) -> Result<TemporaryCredentials, String> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = self.sdk.credentials_provider().ok_or("no AWS credentials are configured")?;
        let credentials = provider.provide_credentials().await.map_err(|e| format!("no AWS credentials: {e}"))?;
        // Long-lived keys never expire; ask the chain again within the hour all the same.
        let expires_at = credentials.expiry().unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
        Ok(TemporaryCredentials { credentials, expires_at })
    }

    /// One LookupEvents call is allowed on `credentials` in `lookup_region`.
    async fn lookup_allowed(
        &self,
        credentials: &TemporaryCredentials,
        lookup_region: &str,
    ) -> Result<(), RoleCheckFailure> {
        // LookupEvents allows 2 calls per second per account and region, which an import may be
        // using right now: this one call rides out throttling rather than fail the validation.
        // Its retries draw on a quota of their own: the SDK's retry quota is process-wide per
        // partition, and the importer's throttled calls would otherwise use it up, leaving a
        // validation that meets throttling with no retry at all (a 502 for the admin).
        let config = aws_sdk_cloudtrail::config::Builder::from(&self.sdk)
            .credentials_provider(credentials.credentials.clone())
            .region(Region::new(lookup_region.to_owned()))
            .retry_config(RetryConfig::standard().with_max_attempts(6).with_initial_backoff(Duration::from_millis(400)))
            .retry_partition(aws_sdk_cloudtrail::config::retry::RetryPartition::new("changetrail-role-validation"))
            .build();
        let lookup = aws_sdk_cloudtrail::Client::from_conf(config).lookup_events().max_results(1).send().await;
        if let Err(e) = lookup {
            let code = e.as_service_error().and_then(|s| s.code());
            return Err(if is_denied(code) {
                RoleCheckFailure::LookupDenied { region: lookup_region.to_owned(), message: describe(&e) }
            } else {
                RoleCheckFailure::Unavailable(describe(&e))
            });
        }
        Ok(())
    }
}

/// AWS's limit on a chained role session.
const CHAINED_SESSION: Duration = Duration::from_secs(3600);

/// AssumeRole on `sts`'s credentials.
async fn assume_role_with(
    sts: &aws_sdk_sts::Client,
    role: &RoleArn,
    external_id: Option<&str>,
    session_name: &str,
    duration: Duration,
) -> Result<(TemporaryCredentials, String), SdkError<AssumeRoleError>> {
    let output = sts
        .assume_role()
        .role_arn(role.to_string())
        .role_session_name(session_name)
        .set_external_id(external_id.map(str::to_owned))
        .duration_seconds(duration.as_secs().clamp(900, 43_200) as i32)
        .send()
        .await?;
    let assumed_arn = output.assumed_role_user().map(|u| u.arn().to_owned()).unwrap_or_default();
    let Some(c) = output.credentials() else {
        return Err(SdkError::construction_failure("AssumeRole returned no credentials"));
    };
    let expires_at =
        SystemTime::try_from(*c.expiration()).unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
    let credentials = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        Some(expires_at),
        "changetrail-assume-role",
    );
    Ok((TemporaryCredentials { credentials, expires_at }, assumed_arn))
}

/// The session name changetrail uses for a connection: recognisable in the customer's own
/// CloudTrail, and within STS's 64 characters.
pub fn session_name(connection_id: uuid::Uuid) -> String {
    format!("changetrail-{}", connection_id.simple())
}
