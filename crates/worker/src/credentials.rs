//! Assumed-role credentials per connection, reused until shortly before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws::{AssumeRoleFailure, TemporaryCredentials};
use domain::Connection;
use uuid::Uuid;

use crate::{Importer, Stop};

/// Assumed-role credentials per connection and role, reused until shortly before they expire:
/// a connection given another role gets new credentials at once. Only in memory: never logged,
/// never stored.
#[derive(Default)]
pub(crate) struct CredentialCache(Mutex<HashMap<(Uuid, String), TemporaryCredentials>>);

/// Credentials this close to their expiry are renewed before the next call.
pub(crate) const CREDENTIAL_MARGIN: Duration = Duration::from_secs(300);

impl CredentialCache {
    pub(crate) fn get(&self, connection_id: Uuid, role_arn: &str) -> Option<TemporaryCredentials> {
        let cache = self.0.lock().unwrap();
        let creds = cache.get(&(connection_id, role_arn.to_owned()))?;
        (creds.expires_at > std::time::SystemTime::now() + CREDENTIAL_MARGIN).then(|| creds.clone())
    }

    pub(crate) fn put(&self, connection_id: Uuid, role_arn: &str, creds: TemporaryCredentials) {
        let mut cache = self.0.lock().unwrap();
        // Credentials of the connection's previous roles are of no use any more.
        cache.retain(|(id, _), _| *id != connection_id);
        cache.insert((connection_id, role_arn.to_owned()), creds);
    }

    pub(crate) fn forget(&self, connection_id: Uuid) {
        self.0.lock().unwrap().retain(|(id, _), _| *id != connection_id);
    }
}

impl Importer {
    pub(crate) async fn credentials(&self, connection: &Connection) -> Result<TemporaryCredentials, Stop> {
        if connection.credentials == domain::connection::CredentialSource::Service {
            // aws-config's chain caches and refreshes these itself.
            return self.aws.own_credentials().await.map_err(Stop::Failed);
        }
        let role_arn = connection.role_arn.as_deref().unwrap_or_default();
        if let Some(creds) = self.credentials.get(connection.id, role_arn) {
            return Ok(creds);
        }
        let chain = connection
            .role_chain()
            .ok()
            .filter(|chain| !chain.is_empty())
            .ok_or_else(|| Stop::Failed("the connection has no valid role".into()))?;
        let session = aws::session_name(connection.id);
        let duration = Duration::from_secs(u64::from(connection.settings.session_duration_seconds));
        match self.aws.assume_role_for_import(&chain, connection.external_id.as_str(), &session, duration).await {
            Ok(creds) => {
                self.credentials.put(connection.id, role_arn, creds.clone());
                Ok(creds)
            }
            Err(AssumeRoleFailure::Denied(message)) => Err(Stop::Denied(message)),
            Err(AssumeRoleFailure::Failed(message)) => Err(Stop::Failed(message)),
        }
    }
}
