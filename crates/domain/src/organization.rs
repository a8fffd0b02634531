use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// A tenant. Every stored row belongs to exactly one, and no query crosses them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

pub const MAX_NAME_CHARS: usize = 200;
