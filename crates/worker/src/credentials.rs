//! Assumed-role credentials per connection, reused until shortly before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws::{AssumeRoleFailure, TemporaryCredentials};
use domain::Connection;
use uuid::Uuid;

use crate::{Importer, Stop};

/// Assumed-role credentials per connection, reused until shortly before they expire. Only in
/// memory: never logged, never stored.
#[derive(Default)]
pub(crate) struct CredentialCache(Mutex<HashMap<Uuid, TemporaryCredentials>>);

const CREDENTIAL_MARGIN: Duration = Duration::from_secs(300);
const SESSION: Duration = Duration::from_secs(3600);

impl CredentialCache {
    pub(crate) fn get(&self, connection_id: Uuid) -> Option<TemporaryCredentials> {
        let cache = self.0.lock().unwrap();
        let creds = cache.get(&connection_id)?;
        (creds.expires_at > std::time::SystemTime::now() + CREDENTIAL_MARGIN).then(|| creds.clone())
    }

    pub(crate) fn put(&self, connection_id: Uuid, creds: TemporaryCredentials) {
        self.0.lock().unwrap().insert(connection_id, creds);
    }

    pub(crate) fn forget(&self, connection_id: Uuid) {
        self.0.lock().unwrap().remove(&connection_id);
    }
}

impl Importer {
    pub(crate) async fn credentials(&self, connection: &Connection) -> Result<TemporaryCredentials, Stop> {
        if let Some(creds) = self.credentials.get(connection.id) {
            return Ok(creds);
        }
        let role = connection
            .role_arn
            .as_deref()
            .and_then(|arn| domain::RoleArn::parse("role_arn", arn).ok())
            .ok_or_else(|| Stop::Failed("the connection has no valid role".into()))?;
        let session = aws::session_name(connection.id);
        match self.aws.assume_role_for_import(&role, connection.external_id.as_str(), &session, SESSION).await {
            Ok(creds) => {
                self.credentials.put(connection.id, creds.clone());
                Ok(creds)
            }
            Err(AssumeRoleFailure::Denied(message)) => Err(Stop::Denied(message)),
            Err(AssumeRoleFailure::Failed(message)) => Err(Stop::Failed(message)),
        }
    }
}
