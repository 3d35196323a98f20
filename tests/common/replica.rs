//! One replica of a cluster under test: a real proxy in a cache directory of its own that
//! outlives it, so it can be stopped and started again on what it stored.

use std::path::{Path, PathBuf};

use super::{TestProxy, cache_dir};

/// A replica; `yaml` is its configuration, written for its directory.
pub struct Replica {
    proxy: Option<TestProxy>,
    pub yaml: String,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Replica {
    /// Starts one with the configuration `yaml` writes for its cache directory.
    pub fn start(yaml: impl FnOnce(&Path) -> String) -> Replica {
        let (tmp, dir) = cache_dir();
        let yaml = yaml(&dir);
        Replica {
            proxy: Some(TestProxy::start_yaml(&yaml, &dir)),
            yaml,
            dir,
            _tmp: tmp,
        }
    }

    /// The running proxy.
    pub fn proxy(&self) -> &TestProxy {
        self.proxy.as_ref().expect("running")
    }

    /// Stops it (gracefully: its cache is closed as any stop does).
    pub fn stop(&mut self) {
        if let Some(p) = self.proxy.take() {
            p.stop(true);
        }
    }

    /// Stops it and starts it again on the same directory.
    pub fn restart(&mut self) {
        self.stop();
        self.proxy = Some(TestProxy::start_yaml(&self.yaml, &self.dir));
    }
}
