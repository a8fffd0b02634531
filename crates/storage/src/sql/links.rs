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

/// `INSERT` of these links; an already present link is left as it is. Each link also gets the
/// lowered title and resources of its event (migration 0021), which the `q` and `resource`
/// filters test in the link table's key before reading the event; they are taken from the
/// stored event with the filters' own expressions, so a copy is never other than its source.
pub(super) fn insert_links<'a, DB>(rows: &'a [LinkRow]) -> QueryBuilder<'a, DB>
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    let (title, resources) = (copied::<DB>(TITLE_LOWERED), copied::<DB>(RESOURCES_LOWERED));
    let mut insert = QueryBuilder::new(format!(
        "INSERT INTO event_environments (environment_id, occurred_at, event_id, kind, read_only, title_lowered, \
         resources_lowered) SELECT v.column1, v.column2, v.column3, v.column4, v.column5, {title}, {resources} FROM ("
    ));
    insert.push_values(rows, |mut row, link| {
        row.push_bind(link.environment_id)
            .push_bind(link.occurred_at)
            .push_bind(link.event_id)
            .push_bind(link.kind)
            .push_bind(link.read_only);
    });
    insert.push(") AS v").push(if DB::NAME == "PostgreSQL" {
        // A lateral subquery, which PostgreSQL cannot turn into a join: as a join, planned on
        // the statistics of a new or small table, it read all of `events` for each page of
        // links (400 sequential scans in the importer benchmark, a quarter of its rate).
        " CROSS JOIN LATERAL (SELECT title, resources FROM events WHERE id = v.column3 OFFSET 0) AS e"
    } else {
        " JOIN events e ON e.id = v.column3"
    });
    // `WHERE true`: SQLite reads an `ON` after a join as the join's unless a WHERE comes between.
    insert.push(" WHERE true ON CONFLICT DO NOTHING");
    insert
}

/// The texts the `q` and `resource` filters test, lowered: the expressions of the timeline's
/// query (storage::sql::timeline) and of the copies on the links.
pub(super) const TITLE_LOWERED: &str = "LOWER(e.title)";
pub(super) const RESOURCES_LOWERED: &str = "LOWER(CAST(e.resources AS TEXT))";

/// A copy of `text` for a link, or NULL when it is longer than 1,000 bytes: a PostgreSQL B-tree
/// entry must stay under a third of a page, and the filters test the event itself where the
/// copy is NULL (migration 0021 sets the same bound).
fn copied<DB: Database>(text: &str) -> String {
    let bytes = if DB::NAME == "PostgreSQL" {
        format!("octet_length({text})")
    } else {
        format!("length(CAST({text} AS BLOB))")
    };
    format!("CASE WHEN {bytes} <= 1000 THEN {text} END")
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
