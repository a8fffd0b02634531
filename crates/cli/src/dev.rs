//! `changetrail dev …`: trying changetrail on a machine without an AWS account.

use std::net::SocketAddr;

use aws_standin::{Identity, Standin};

pub const DEV_ACCESS_KEY_ID: &str = "AKIACHANGETRAILDEV01";
pub const DEV_SECRET_ACCESS_KEY: &str = "changetrail-dev-secret-not-for-aws";
pub const DEV_PRINCIPAL: &str = "arn:aws:iam::111111111111:user/changetrail";

/// A stand-in whose one identity is changetrail's own, as the dev credentials below name it.
pub fn dev_standin() -> Standin {
    let standin = Standin::new();
    standin.add_identity(Identity {
        access_key_id: DEV_ACCESS_KEY_ID.into(),
        secret_access_key: DEV_SECRET_ACCESS_KEY.into(),
        arn: DEV_PRINCIPAL.into(),
        principal: DEV_PRINCIPAL.into(),
    });
    standin
}

pub async fn run_standin(listen: SocketAddr) -> anyhow::Result<()> {
    let running = dev_standin().start(listen).await?;
    let url = running.url();
    println!(
        "AWS stand-in (STS and CloudTrail LookupEvents) on {url}. Run changetrail against it with:\n\n    \
         AWS_ENDPOINT_URL={url} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID={DEV_ACCESS_KEY_ID} \\\n    \
         AWS_SECRET_ACCESS_KEY={DEV_SECRET_ACCESS_KEY} cargo run --release -- serve\n\n\
         Declare the role an admin would create (with the connection's external ID) with:\n\n    \
         curl -X POST {url}/_standin/roles -H 'Content-Type: application/json' -d '{{\"arn\": \
         \"arn:aws:iam::222222222222:role/changetrail-cloudtrail-reader\", \"trusted_principal\": \"{DEV_PRINCIPAL}\", \
         \"required_external_id\": \"ct-…\", \"allow_lookup_events\": true}}'\n"
    );
    crate::shutdown_signal().await;
    Ok(())
}
