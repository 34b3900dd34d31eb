//! One writer per repository and branch: an advisory lock file in the git directory,
//! held from the plan to the audit commit, so two `apply` or `run` processes on one
//! machine never apply at once (docs/audit.md, "One writer").
//!
//! The lock is `flock(2)` on `<git dir>/latchkey/locks/<branch>.lock`: the kernel drops
//! it when the process dies (even on `kill -9`), so a crashed holder never blocks the
//! next run. The file's content names the holder for the message a waiting process
//! prints; it is informative only.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{SourceError, SourceRepo};

/// Held while this process writes to a branch; released on drop.
#[derive(Debug)]
pub struct WriterLock {
    file: File,
    path: PathBuf,
}

impl WriterLock {
    /// Where the lock lives.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Clear the holder line first so a reader never names a process that is gone.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The holder line: who, where, since when, doing what.
fn holder_line(what: &str) -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!(
        "pid {} on {host} since {} ({what})",
        std::process::id(),
        jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_default()
    )
}

impl SourceRepo {
    /// Takes the writer lock of `branch`, waiting up to `wait` for another holder to
    /// finish. `what` names this process's work in the holder line (`latchkey apply`).
    pub fn lock_writer(
        &self,
        branch: &str,
        what: &str,
        wait: Duration,
    ) -> Result<WriterLock, SourceError> {
        let dir = self.repo.path().join("latchkey").join("locks");
        let path = dir.join(format!("{}.lock", branch.replace('/', "%2F")));
        let io = |source| SourceError::Lock {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let started = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if started.elapsed() >= wait {
                        let mut holder = String::new();
                        let _ = file.rewind();
                        let _ = file.read_to_string(&mut holder);
                        let holder = holder.trim();
                        return Err(SourceError::Locked {
                            branch: branch.to_string(),
                            holder: if holder.is_empty() {
                                "another latchkey process".to_string()
                            } else {
                                holder.to_string()
                            },
                            waited: wait,
                            path,
                        });
                    }
                    std::thread::sleep(delay.min(wait.saturating_sub(started.elapsed())));
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(holder_line(what).as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(WriterLock { file, path })
    }
}
