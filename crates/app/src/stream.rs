//! Live timelines: each item newly stored in some environments that passes a timeline's
//! filters, whichever process stored it, in the order it was stored.
//!
//! The stream reads the store, not only this process's broadcast of new items: an item stored by
//! a worker or another `api` process is found by the next poll (every 250 ms; the broadcast
//! wakes it at once for this process's own). Each poll looks `SETTLE` behind the newest item
//! sent, because an item is stamped before its transaction commits and a slower transaction
//! can commit an earlier stamp after a later one; ids already sent in that span are skipped.

use std::time::Duration;

use domain::timeline::{StreamPosition, TimelineItem, TimelineRequest};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{App, AppError, AppResult, Refusal};

/// Messages a stream holds for a slow client before it is closed (it resumes with
/// `Last-Event-ID`): a slow client never holds up the store or other streams.
pub const STREAM_BUFFER: usize = 256;
const POLL: Duration = Duration::from_millis(250);
/// How far behind the newest item sent each poll looks for late commits, in microseconds.
const SETTLE_MICROS: i64 = 2_000_000;
const BATCH: u32 = 200;

#[derive(Debug, Clone)]
pub enum StreamMessage {
    /// A new item; `position` is the stream's position after it (its event id).
    Item { item: Box<TimelineItem>, position: StreamPosition },
    /// The client fell behind by `STREAM_BUFFER` messages; the stream ends after this.
    Overflow,
}

impl App {
    /// A live stream of the environments' new items that pass `request`'s filters: from now, or
    /// right after `resume` (a `Last-Event-ID` this server sent). Ends when the receiver is
    /// dropped.
    pub fn open_stream(
        &self,
        org_id: Uuid,
        environment_ids: Vec<Uuid>,
        request: TimelineRequest,
        resume: Option<&str>,
    ) -> AppResult<mpsc::Receiver<StreamMessage>> {
        let floor = match resume {
            Some(text) => StreamPosition::decode(text).ok_or_else(|| {
                AppError::refused(
                    Refusal::BadInput,
                    "invalid_last_event_id",
                    "Last-Event-ID is not an event id this server sent (its ids look like 1764640000000000.0192…)",
                )
            })?,
            None => StreamPosition::at(domain::time_util::now()),
        };
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let store = self.store.clone();
        let mut wake = self.subscribe();
        tokio::spawn(async move {
            // Nothing at or before `floor` is sent (it was, before a resume); `newest` is the
            // newest item sent, and `recent` what was sent within SETTLE of it.
            let mut newest = floor;
            let mut recent: Vec<StreamPosition> = Vec::new();
            let mut after = StreamPosition { stored_at: floor.stored_at - SETTLE_MICROS, id: Uuid::nil() };
            loop {
                let query = request.stream(environment_ids.clone(), after, BATCH);
                let items = match store.stream_items(org_id, &query).await {
                    Ok(items) => items,
                    Err(e) => {
                        tracing::warn!(error = %e, "a live timeline cannot read the store; trying again");
                        Vec::new()
                    }
                };
                let full = items.len() == BATCH as usize;
                let last = items.last().map(StreamPosition::of);
                for item in items {
                    let position = StreamPosition::of(&item);
                    if position <= floor || recent.contains(&position) {
                        continue;
                    }
                    newest = newest.max(position);
                    recent.push(position);
                    // The last free slot carries the overflow notice.
                    let message = if sender.capacity() > 1 {
                        StreamMessage::Item { item: Box::new(item), position: newest }
                    } else {
                        StreamMessage::Overflow
                    };
                    let overflow = matches!(message, StreamMessage::Overflow);
                    if sender.try_send(message).is_err() || overflow {
                        return;
                    }
                }
                recent.retain(|p| p.stored_at > newest.stored_at - SETTLE_MICROS);
                if let (true, Some(last)) = (full, last) {
                    after = last;
                    continue;
                }
                after = StreamPosition { stored_at: newest.stored_at - SETTLE_MICROS, id: Uuid::nil() };
                tokio::select! {
                    _ = sender.closed() => return,
                    _ = tokio::time::sleep(POLL) => {}
                    _ = wake.recv() => {}
                }
            }
        });
        Ok(receiver)
    }
}
