//! The rows of `event_environments`, the timeline's index: the one place that writes them.

use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

/// One (environment, event) link, with the event's columns the timeline filters on copied in.
pub(super) struct LinkRow {
    pub environment_id: Uuid,
    pub occurred_at: i64,
    pub event_id: Uuid,
    pub kind: &'static str,
    pub read_only: bool,
}

/// `INSERT` of these links; an already present link is left as it is.
pub(super) fn insert_links<'a, DB>(rows: &'a [LinkRow]) -> QueryBuilder<'a, DB>
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    let mut insert =
        QueryBuilder::new("INSERT INTO event_environments (environment_id, occurred_at, event_id, kind, read_only) ");
    insert.push_values(rows, |mut row, link| {
        row.push_bind(link.environment_id)
            .push_bind(link.occurred_at)
            .push_bind(link.event_id)
            .push_bind(link.kind)
            .push_bind(link.read_only);
    });
    insert.push(" ON CONFLICT DO NOTHING");
    insert
}

/// `DELETE` of every link of these events.
pub(super) fn delete_links<'a, DB>(event_ids: &'a [Uuid]) -> QueryBuilder<'a, DB>
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
{
    let mut delete = QueryBuilder::new("DELETE FROM event_environments WHERE event_id IN (");
    let mut ids = delete.separated(", ");
    for id in event_ids {
        ids.push_bind(*id);
    }
    delete.push(")");
    delete
}
