//! Pull: the device (behind NAT) long-polls the server; the command waits here for it. A
//! lift controller polls for moves; a camera board polls for capture requests the same way.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::lift::protocol::MoveCommand;

/// The longest a device may long-poll for a command.
pub const MAX_POLL: Duration = Duration::from_secs(30);

pub struct PullLink<T = MoveCommand> {
    pending: Mutex<Option<T>>,
    polls: Polls,
}

impl<T> Default for PullLink<T> {
    fn default() -> Self {
        Self {
            pending: Mutex::new(None),
            polls: Polls::default(),
        }
    }
}

impl<T> PullLink<T> {
    pub fn queue(&self, command: T) {
        *self.pending() = Some(command);
        self.polls.ring();
    }

    pub fn withdraw(&self) {
        self.pending().take();
    }

    /// Waits up to `wait` (at most `MAX_POLL`) for the next command (see `Polls::wait_for`).
    pub async fn next_command(&self, wait: Duration) -> Option<T> {
        self.polls
            .wait_for(wait, || match self.pending().take() {
                Some(command) => ControlFlow::Break(Some(command)),
                None => ControlFlow::Continue(()),
            })
            .await
    }

    /// One slot, replaced whole: a panic elsewhere cannot leave it half-written.
    fn pending(&self) -> MutexGuard<'_, Option<T>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The long polls of one device: rung when something may be there for it.
#[derive(Default)]
pub struct Polls {
    rung: Notify,
    /// numbers the polls; only the newest may take a command
    count: AtomicU64,
}

impl Polls {
    /// Something may be there: the waiting poll looks.
    pub fn ring(&self) {
        self.rung.notify_waiters();
    }

    /// Waits up to `wait` (at most `MAX_POLL`) until `look` ends the poll (with something,
    /// or with nothing: the poll was superseded elsewhere), trying at once and each time the
    /// polls are rung. One poll is outstanding here at a time: a newer one (the device
    /// reconnecting) ends the older without a command, so a stale or replayed poll cannot
    /// take a command meant for the device.
    pub async fn wait_for<T>(
        &self,
        wait: Duration,
        mut look: impl FnMut() -> ControlFlow<Option<T>>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_POLL);
        let this_poll = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.rung.notify_waiters();
        loop {
            let rung = self.rung.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            if self.count.load(Ordering::SeqCst) != this_poll {
                return None;
            }
            if let ControlFlow::Break(found) = look() {
                return found;
            }
            if tokio::time::timeout_at(deadline, rung).await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_poll_ends_the_older_one_and_takes_the_command() {
        let link = std::sync::Arc::new(PullLink::<MoveCommand>::default());
        let older = {
            let link = std::sync::Arc::clone(&link);
            tokio::spawn(async move { link.next_command(Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let newer = {
            let link = std::sync::Arc::clone(&link);
            tokio::spawn(async move { link.next_command(Duration::from_secs(5)).await })
        };
        let ended = tokio::time::timeout(Duration::from_secs(1), older)
            .await
            .expect("the older poll ends at once")
            .expect("task");
        assert_eq!(ended, None);
        let command = MoveCommand {
            request_id: "r1".into(),
            floor: 2,
        };
        link.queue(command.clone());
        assert_eq!(newer.await.expect("task"), Some(command));
    }
}
