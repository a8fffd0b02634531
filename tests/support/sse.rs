//! A Server-Sent Events client for the live timeline's tests: reads `item` events off a
//! streaming response.

use std::time::{Duration, Instant};

use serde_json::Value;

/// One Server-Sent Event as a client reads it.
#[derive(Debug)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// A stream being read: the response and what arrived but was not yet a whole event.
pub struct Stream {
    pub response: reqwest::Response,
    buffer: String,
}

impl Stream {
    pub async fn open(base: &str, path: &str, token: &str, last_event_id: Option<&str>) -> (u16, Stream) {
        let mut request = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("open the stream");
        (response.status().as_u16(), Stream { response, buffer: String::new() })
    }

    /// The next event (heartbeat comments skipped), or `None` if none comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent { id: None, event: "message".into(), data: String::new() };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        event.data.push_str(v.trim_start());
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// The next `item` event's timeline item and id.
    pub async fn item(&mut self, wait: Duration) -> Option<(Value, String)> {
        let event = self.next(wait).await?;
        assert_eq!(event.event, "item", "{event:?}");
        Some((serde_json::from_str(&event.data).expect("an item"), event.id.expect("an id")))
    }
}
