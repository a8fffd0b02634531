//! AWS Organizations for organisation connections: the accounts of an organisation, page by
//! page. No SDK type leaves this module.

use aws_config::Region;
use aws_sdk_organizations::error::ProvideErrorMetadata;
use domain::connection::OrganizationAccount;

use crate::{describe, is_denied, Aws, TemporaryCredentials};

/// Why the accounts could not be listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListAccountsError {
    /// Not the management account or a delegated administrator, no permission, or no
    /// organisation at all.
    Denied(String),
    Failed(String),
}

impl std::fmt::Display for ListAccountsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListAccountsError::Denied(m) => write!(f, "organizations:ListAccounts was denied: {m}"),
            ListAccountsError::Failed(m) => write!(f, "organizations:ListAccounts failed: {m}"),
        }
    }
}

/// Organizations has one endpoint per partition, in this region.
fn organizations_region(partition: &str) -> &'static str {
    match partition {
        "aws-cn" => "cn-northwest-1",
        "aws-us-gov" => "us-gov-west-1",
        _ => "us-east-1",
    }
}

impl Aws {
    fn organizations_as(&self, credentials: &TemporaryCredentials, partition: &str) -> aws_sdk_organizations::Client {
        let config = aws_sdk_organizations::config::Builder::from(&self.sdk)
            .credentials_provider(credentials.credentials.clone())
            .region(Region::new(organizations_region(partition)))
            .build();
        aws_sdk_organizations::Client::from_conf(config)
    }

    /// One page of ListAccounts, and the token of the next.
    pub(crate) async fn list_accounts_page(
        &self,
        credentials: &TemporaryCredentials,
        partition: &str,
        token: Option<String>,
    ) -> Result<(Vec<OrganizationAccount>, Option<String>), ListAccountsError> {
        let output =
            self.organizations_as(credentials, partition).list_accounts().set_next_token(token).send().await.map_err(
                |e| {
                    let code = e.as_service_error().and_then(|s| s.code());
                    if is_denied(code) || code == Some("AWSOrganizationsNotInUseException") {
                        ListAccountsError::Denied(describe(&e))
                    } else {
                        ListAccountsError::Failed(describe(&e))
                    }
                },
            )?;
        let accounts = output
            .accounts()
            .iter()
            .filter_map(|a| {
                Some(OrganizationAccount {
                    id: a.id()?.to_owned(),
                    name: a.name().unwrap_or_default().to_owned(),
                    status: a.status().map(|s| s.as_str().to_owned()).unwrap_or_else(|| "ACTIVE".into()),
                })
            })
            .collect();
        Ok((accounts, output.next_token().map(str::to_owned)))
    }

    /// Every account of the organisation, all pages.
    pub async fn list_accounts(
        &self,
        credentials: &TemporaryCredentials,
        partition: &str,
    ) -> Result<Vec<OrganizationAccount>, ListAccountsError> {
        let mut accounts = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = self.list_accounts_page(credentials, partition, token).await?;
            accounts.extend(page);
            match next {
                Some(next) => token = Some(next),
                None => return Ok(accounts),
            }
        }
    }
}
