//! `RUN --mount=type=ssh`: the step gets a socket of its own that rbuild forwards to the SSH
//! agent `--ssh` named, as BuildKit forwards its client's agent. The agent's own socket (and
//! the directory it lives in) is never put in the step, so the step sees one socket that speaks
//! to that agent, for as long as the RUN runs, and nothing of it reaches a layer or a key.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::io_at;
use super::{Error, Result};

/// A forwarding socket, stopped (and its connections left to end) when dropped.
pub(crate) struct AgentProxy {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AgentProxy {
    /// Listens on `listen` (a new socket) and forwards each connection to the agent at
    /// `agent`.
    ///
    /// # Errors
    /// The agent's socket cannot be reached, or `listen` cannot be made.
    pub(crate) fn start(listen: &Path, agent: PathBuf, id: &str) -> Result<Self> {
        // Fail now, at the step, rather than inside it.
        UnixStream::connect(&agent).map_err(|e| Error::Ssh {
            id: id.to_owned(),
            reason: format!("cannot reach the agent at `{}`: {e}", agent.display()),
        })?;
        let listener = UnixListener::bind(listen).map_err(io_at(listen))?;
        listener.set_nonblocking(true).map_err(io_at(listen))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let agent = agent.clone();
                        std::thread::spawn(move || forward(client, &agent));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways between a step's connection and the agent until either side closes.
fn forward(client: UnixStream, agent: &Path) {
    let Ok(upstream) = UnixStream::connect(agent) else {
        return;
    };
    let _ = client.set_nonblocking(false);
    let (Ok(mut c_read), Ok(mut u_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let to_agent = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = std::io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(std::net::Shutdown::Write);
    let _ = to_agent.join();
}
