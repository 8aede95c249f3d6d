//! Redis for the cache tests (tests/cache.rs, tests/cache_nodes/).

/// The shared Redis of the cache tests: `MERIT_TEST_REDIS_URL`, by default
/// `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("MERIT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Test logs to the test writer, filtered by `RUST_LOG` or else by `default_filter`.
pub fn init_test_logs(default_filter: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_test_writer()
        .try_init();
}

/// A `redis-server` of a test's own on `port` (no persistence), so a test can stop, hang
/// or kill it without touching the shared one; SIGKILLed when dropped.
pub struct OwnRedis {
    child: std::process::Child,
}

impl OwnRedis {
    /// Starts it and waits (up to 10 s) until it accepts connections.
    pub fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (redis-server must be installed)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child }
    }

    /// Sends `signal` (`-STOP`, `-CONT`): SIGSTOP hangs the server (connections stay
    /// open, nothing answers), SIGCONT resumes it.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }

    /// SIGKILL: the server vanishes mid-conversation, with everything it held.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
