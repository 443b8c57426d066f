//! Pull: the device (behind NAT) long-polls the server; the command waits here for it.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::lift::protocol::MoveCommand;

/// The longest a device may long-poll for a command.
pub const MAX_POLL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct PullLink {
    pending: Mutex<Option<MoveCommand>>,
    queued: Notify,
}

impl PullLink {
    pub fn queue(&self, command: MoveCommand) {
        *self.pending() = Some(command);
        self.queued.notify_waiters();
    }

    pub fn withdraw(&self) {
        self.pending().take();
    }

    /// Waits up to `wait` (at most `MAX_POLL`) for the next command.
    pub async fn next_command(&self, wait: Duration) -> Option<MoveCommand> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_POLL);
        loop {
            let queued = self.queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            if let Some(command) = self.pending().take() {
                return Some(command);
            }
            if tokio::time::timeout_at(deadline, queued).await.is_err() {
                return None;
            }
        }
    }

    /// One slot, replaced whole: a panic elsewhere cannot leave it half-written.
    fn pending(&self) -> MutexGuard<'_, Option<MoveCommand>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
