//! The private spill directory of one run: `<root>/minion-spill-<pid>-<random>`, removed when
//! the run ends (success, failure, or SIGTERM/SIGINT, which the binary turns into a normal
//! unwind). Directories left by killed processes (whose pid no longer runs) are removed when
//! the next run starts.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::error::Result;

const PREFIX: &str = "minion-spill-";

/// A spill directory deleted on drop.
#[derive(Debug)]
pub struct PrivateSpillDir {
    dir: TempDir,
}

impl PrivateSpillDir {
    /// Removes stale spill directories under `root`, then creates this run's.
    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)?;
        remove_stale(root);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir_in(root)?;
        Ok(PrivateSpillDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Deletes `minion-spill-<pid>-*` directories whose process is gone.
pub fn remove_stale(root: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let path = entry.path();
            if std::fs::remove_dir_all(&path).is_ok() {
                tracing::info!(dir = %path.display(), "removed a stale spill directory");
                removed.push(path);
            }
        }
    }
    removed
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_directories_of_dead_processes_are_removed_and_ours_are_kept() {
        let root = tempfile::tempdir().unwrap();
        let stale = root.path().join(format!("{PREFIX}4194999-abc"));
        std::fs::create_dir_all(stale.join("x")).unwrap();
        let ours = PrivateSpillDir::create(root.path()).unwrap();
        assert!(!stale.exists());
        assert!(ours.path().exists());
        let path = ours.path().to_path_buf();
        drop(ours);
        assert!(!path.exists());
    }
}
