//! One control loop per state directory: every command that runs the loop (and so may
//! commit) holds an exclusive lock on `<state>/lock` for as long as it runs (`minion local
//! up`, `minion push`, `minion demo`). A second one on the same directory fails at once,
//! naming the directory and the holder's pid (written into the lock file).
//!
//! The lock is the operating system's (`flock` on Unix), taken on an open file: it goes away
//! with the process however it ends, so there is no stale lock to clean up. The file is
//! opened close-on-exec, so worker processes never hold it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use super::LocalError;

/// Name of the lock file in a state directory.
pub const LOCK_FILE: &str = "lock";

/// The held lock of a state directory; released when dropped.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock of `state_dir` (created if missing) without waiting.
    ///
    /// # Errors
    /// [`LocalError::Locked`] when another process holds it (naming the directory and that
    /// process's pid); I/O failures.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LocalError> {
        std::fs::create_dir_all(state_dir).map_err(|e| LocalError::io(state_dir, e))?;
        let path = state_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LocalError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let pid = holder
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u32>().ok())
                    .map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"));
                return Err(LocalError::Locked(format!(
                    "state directory {} is in use by another minion process ({pid}, lock {}): \
                     only one control loop (`minion local up`, `minion push`, `minion demo`) \
                     may run on a state directory; stop it first, or use another state directory",
                    state_dir.display(),
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(LocalError::io(&path, e)),
        }
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            file.flush()
        };
        write(&mut file).map_err(|e| LocalError::io(&path, e))?;
        Ok(StateLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Still locked here: nobody else writes the file until it is closed.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_directory_and_the_pid_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state).unwrap();
        let written = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());
        let err = StateLock::acquire(&state).unwrap_err();
        assert_eq!(err.reason(), "StateDirLocked");
        let msg = err.to_string();
        assert!(msg.contains(&state.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        let again = StateLock::acquire(&state).unwrap();
        drop(again);
    }
}
