//! Admission to the face engines, decided from a request's head before its body is read.
//!
//! A few places sit right in front of the engines (two per engine: one working, one ready, so
//! an engine never idles between jobs). Requests that find none free wait in a waiting room,
//! holding only their connection and headers, and are let in round-robin by client address:
//! one client with many requests cannot keep another waiting behind all of them. A request
//! that finds the room full, or waits too long, is answered 503 with `Retry-After` at once,
//! without its upload ever being read; one whose address already fills its part of the room
//! gets the same answer a second later.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tokio::sync::oneshot;

use super::client::client_info;
use super::{AppState, WebError};
use crate::face::FaceError;

/// A waiting request is sent away after this long (well inside the request timeout).
const LONGEST_WAIT: Duration = Duration::from_secs(10);

/// An address over its share of the waiting room is answered after this long.
const OVER_SHARE_ANSWER: Duration = Duration::from_secs(1);

pub struct Admission {
    room: usize,
    per_client: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    free: usize,
    /// per address, its waiting requests in order of arrival
    waiting: HashMap<String, VecDeque<oneshot::Sender<EngineTicket>>>,
    /// the addresses with someone waiting, in the order they are next served
    turns: VecDeque<String>,
    waiters: usize,
}

impl Admission {
    /// Places for `workers` engines and a waiting room of `room` requests, of which one
    /// address may fill an eighth (at least 4).
    pub fn new(workers: usize, room: usize) -> Arc<Self> {
        Arc::new(Self {
            room,
            per_client: (room / 8).max(4),
            inner: Mutex::new(Inner {
                free: 2 * workers.max(1),
                waiting: HashMap::new(),
                turns: VecDeque::new(),
                waiters: 0,
            }),
        })
    }

    /// A place for `client`: at once, after a wait in the room, or refused.
    pub async fn admit(self: &Arc<Self>, client: &str) -> Result<EngineTicket, WebError> {
        match self.enter(client)? {
            Entry::Placed(ticket) => Ok(ticket),
            Entry::OverShare => {
                refused("share");
                // answered after the second it is told to wait: a client that retries at
                // once anyway cannot turn its refusals into a storm that starves the engines
                tokio::time::sleep(OVER_SHARE_ANSWER).await;
                Err(WebError::OverShare(self.per_client))
            }
            Entry::Full => {
                refused("full");
                Err(FaceError::Busy.into())
            }
            Entry::Waiting(wait) => match tokio::time::timeout(LONGEST_WAIT, wait).await {
                Ok(Ok(ticket)) => Ok(ticket),
                _ => {
                    // the place, if one comes later, goes to the next in line (`release`)
                    refused("waited");
                    Err(FaceError::Busy.into())
                }
            },
        }
    }

    fn enter(self: &Arc<Self>, client: &str) -> Result<Entry, WebError> {
        let mut inner = self.inner.lock().map_err(|_| WebError::AdmissionPoisoned)?;
        if inner.free > 0 && inner.waiters == 0 {
            inner.free -= 1;
            return Ok(Entry::Placed(self.ticket()));
        }
        let queue = inner.waiting.get(client).map_or(0, VecDeque::len);
        if queue >= self.per_client {
            return Ok(Entry::OverShare);
        }
        if inner.waiters >= self.room {
            return Ok(Entry::Full);
        }
        let (sender, receiver) = oneshot::channel();
        if queue == 0 {
            inner.turns.push_back(client.to_string());
        }
        inner
            .waiting
            .entry(client.to_string())
            .or_default()
            .push_back(sender);
        inner.waiters += 1;
        Ok(Entry::Waiting(receiver))
    }

    fn ticket(self: &Arc<Self>) -> EngineTicket {
        EngineTicket {
            admission: Some(Arc::clone(self)),
        }
    }

    /// A place came free: to the next address in turn, else back to the free ones.
    fn release(self: &Arc<Self>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let mut ticket = self.ticket();
        while let Some(client) = inner.turns.pop_front() {
            let Some(queue) = inner.waiting.get_mut(&client) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                inner.waiting.remove(&client);
            } else {
                inner.turns.push_back(client);
            }
            let Some(sender) = next else { continue };
            inner.waiters -= 1;
            match sender.send(ticket) {
                Ok(()) => return,
                // that request gave up waiting; the place stays in hand for the next one
                Err(back) => ticket = back,
            }
        }
        ticket.admission = None;
        inner.free += 1;
    }
}

enum Entry {
    Placed(EngineTicket),
    Waiting(oneshot::Receiver<EngineTicket>),
    OverShare,
    Full,
}

fn refused(why: &'static str) {
    metrics::counter!("facelift_admission_refused_total", "why" => why).increment(1);
}

/// A place in front of the engines, held while the handler runs. As an extractor it comes
/// before the upload's, so a refused request's body is never read.
pub struct EngineTicket {
    /// None once the place has been handed back by hand
    admission: Option<Arc<Admission>>,
}

impl Drop for EngineTicket {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            admission.release();
        }
    }
}

impl FromRequestParts<AppState> for EngineTicket {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let client = client_info(parts, &state.settings.web.trusted_proxies);
        state.admission.admit(&client.address).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_or_never<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
        futures_util::FutureExt::now_or_never(Box::pin(future))
    }

    #[tokio::test]
    async fn places_go_round_robin_by_address_and_a_full_room_refuses_at_once() {
        let admission = Admission::new(1, 16);
        // two places for one engine, taken at once
        let first = admission.admit("10.0.0.1").await.expect("a place");
        let second = admission.admit("10.0.0.1").await.expect("a place");
        // the heavy client queues four; a second client arrives after them
        let heavy: Vec<_> = (0..4)
            .map(|_| {
                let admission = Arc::clone(&admission);
                tokio::spawn(async move { admission.admit("10.0.0.1").await })
            })
            .collect();
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            matches!(
                admission.admit("10.0.0.1").await,
                Err(WebError::OverShare(4))
            ),
            "the heavy client's share of the room is full"
        );
        let light = {
            let admission = Arc::clone(&admission);
            tokio::spawn(async move { admission.admit("10.0.0.2").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(second);
        let light = light.await.expect("task").expect("let in");
        // one of the heavy client's went first (it was first in turn), the light one second,
        // not after all four
        let let_in = heavy.iter().filter(|task| task.is_finished()).count();
        assert_eq!(let_in, 1, "the light client waited for one, not four");
        drop(light);
        for task in heavy {
            drop(task.await.expect("task").expect("let in in turn"));
        }
        let inner = admission.inner.lock().expect("lock");
        assert_eq!((inner.free, inner.waiters), (2, 0), "every place came back");
    }

    #[tokio::test]
    async fn a_full_waiting_room_refuses_at_once() {
        let admission = Admission::new(1, 4);
        let _places = (
            admission.admit("a").await.expect("place"),
            admission.admit("b").await.expect("place"),
        );
        let waiting: Vec<_> = (0..4)
            .map(|i| {
                let admission = Arc::clone(&admission);
                tokio::spawn(async move { admission.admit(&format!("w{i}")).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(matches!(
            now_or_never(admission.admit("late")),
            Some(Err(WebError::Face(FaceError::Busy)))
        ));
        for task in waiting {
            task.abort();
        }
    }
}
