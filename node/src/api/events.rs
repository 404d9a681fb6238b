//! `GET /api/v1/events`: the live view the page draws, pushed as server-sent events instead of
//! polled. The stream starts with every job this node holds and the peers, then sends:
//!
//! - `job`: a job (as `GET /jobs/{id}` gives it) whenever its record changes, at most one batch
//!   every [`BATCH`] however fast a job's tasks end;
//! - `gone`: the id (a JSON string) of a job removed, or forgotten by this node;
//! - `peers`: the peers (as `GET /peers` gives them) about once a second, when they changed.
//!
//! The stream waits on the node's record digest ([`Handle::changes`]), not on a timer, and
//! reads only the records whose version moved. It ends when the node shuts down; a browser's
//! `EventSource` then reconnects by itself, and is sent everything again.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use rendermesh_protocol::{JobId, Version};
use tokio::time::Instant;
use tracing::debug;

use crate::mesh::Handle;

/// The shortest time between two batches of job events to one client: a job whose tasks end
/// many times a second is sent a few times a second.
pub const BATCH: Duration = Duration::from_millis(250);

/// How often the peers are looked at (their loads and tasks change with every heartbeat).
const PEERS_EVERY: Duration = Duration::from_secs(1);

/// The route: an endless stream of events (a comment every 15 s keeps idle proxies open).
pub(super) async fn events(
    State(h): State<Handle>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let feed = Feed {
        changes: h.changes(),
        h,
        sent: BTreeMap::new(),
        peers: None,
        next_peers: Instant::now(),
        next_batch: Instant::now(),
        started: false,
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let batch = feed.next().await?;
        Some((futures::stream::iter(batch.into_iter().map(Ok)), feed))
    });
    Sse::new(futures::StreamExt::flatten(stream))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// One client's stream: what it was sent, and when it may be sent more.
struct Feed {
    h: Handle,
    changes: tokio::sync::watch::Receiver<rendermesh_protocol::TableDigest>,
    /// The version of each job last sent (`gone` ones included, so that a tombstone is told
    /// once).
    sent: BTreeMap<JobId, Version>,
    /// The peers as last sent, in JSON.
    peers: Option<String>,
    next_peers: Instant,
    next_batch: Instant,
    /// Whether the first batch (everything) went out.
    started: bool,
}

impl Feed {
    /// The next batch of events, once there is one; `None` once the node is gone.
    async fn next(&mut self) -> Option<Vec<Event>> {
        loop {
            // The first batch sends every job; later ones, only when a record changed.
            let mut records = !self.started;
            if self.started {
                tokio::time::sleep_until(self.next_batch).await;
                tokio::select! {
                    changed = self.changes.changed() => {
                        changed.ok()?;
                        records = true;
                    }
                    () = tokio::time::sleep_until(self.next_peers) => {}
                }
            }
            self.started = true;
            // Woken for the peers, a record may have changed all the same (both were ready,
            // or it changed since): marking the digest seen without reading the records would
            // lose that change until the next one.
            if self.changes.has_changed().unwrap_or(false) {
                records = true;
            }
            self.changes.borrow_and_update();
            let now = Instant::now();
            self.next_batch = now + BATCH;
            let mut events = Vec::new();
            if now >= self.next_peers {
                self.next_peers = now + PEERS_EVERY;
                let peers = self.h.peers().await.ok()?;
                let json = serde_json::to_string(&peers).ok()?;
                if self.peers.as_ref() != Some(&json) {
                    events.push(Event::default().event("peers").data(&json));
                    self.peers = Some(json);
                }
            }
            if records {
                self.jobs(&mut events).await?;
            }
            if !events.is_empty() {
                return Some(events);
            }
        }
    }

    /// Adds a `job` event for every record whose version moved since it was sent, and a
    /// `gone` event for every job removed or no longer held.
    async fn jobs(&mut self, events: &mut Vec<Event>) -> Option<()> {
        let versions = self.h.versions().await.ok()?;
        let held: BTreeMap<JobId, Version> =
            versions.into_iter().map(|d| (d.id, d.version)).collect();
        let forgotten: Vec<JobId> = self
            .sent
            .keys()
            .filter(|id| !held.contains_key(id))
            .copied()
            .collect();
        for id in forgotten {
            self.sent.remove(&id);
            events.push(gone(id));
        }
        for (id, version) in held {
            if self.sent.get(&id) == Some(&version) {
                continue;
            }
            let was_sent = self.sent.insert(id, version).is_some();
            match self.h.job(id).await.ok()? {
                Some(job) => match serde_json::to_string(&job) {
                    Ok(json) => events.push(Event::default().event("job").data(json)),
                    Err(e) => debug!(job = %id.short(), "job not sent: {e}"),
                },
                // A tombstone: told to a client that was sent the job.
                None if was_sent => events.push(gone(id)),
                None => {}
            }
        }
        Some(())
    }
}

/// The event saying job `id` is no longer listed.
fn gone(id: JobId) -> Event {
    Event::default().event("gone").data(format!("\"{id}\""))
}
