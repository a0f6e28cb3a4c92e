//! The official MCP peers from npm (`.ci/peers`, installed by
//! `.ci/tools.sh test`): the reference server `server-everything` in its
//! streamable HTTP mode, and the inspector CLI. Started on 127.0.0.1 as
//! child processes, stopped when dropped.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The workspace's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `node_modules` of the peers, or a panic that says how to get it.
pub fn modules() -> PathBuf {
    let dir = std::env::var_os("ENCLAVE_MCP_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".ci/peers/node_modules"));
    assert!(
        dir.join("@modelcontextprotocol/server-everything").is_dir(),
        "the MCP peers are not installed in {}: run .ci/tools.sh test",
        dir.display()
    );
    dir
}

/// A `node` of version 20 or newer (`.ci/node.sh` finds or installs it).
pub fn node() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join(".ci/node.sh"))
        .output()
        .expect("run .ci/node.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("node")
}

/// A free port on 127.0.0.1 (the listener is closed again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) when dropped.
pub struct Peer {
    child: Option<Child>,
    pub port: u16,
}

impl Peer {
    /// No process: what is left on `port` once a peer has stopped.
    pub fn none(port: u16) -> Peer {
        Peer { child: None, port }
    }

    /// The peer's address, for the egress allowlist.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The reference server, answering MCP at `http://127.0.0.1:{port}/mcp`.
pub async fn everything() -> Peer {
    let port = free_port();
    let script = modules().join("@modelcontextprotocol/server-everything/dist/index.js");
    let child = Command::new(node())
        .arg(script)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server-everything");
    let peer = Peer {
        child: Some(child),
        port,
    };
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return peer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server-everything did not start listening on port {port}");
}

/// Runs the inspector CLI with `args`; returns (succeeded, stdout, stderr).
pub async fn inspector(args: &[&str]) -> (bool, String, String) {
    let cli = modules().join("@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    let mut command = tokio_command(node());
    command.arg(cli).arg("--cli").args(args);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run the MCP inspector");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tokio_command(program: PathBuf) -> Command {
    let mut command = Command::new(program);
    command
        .stdin(Stdio::null())
        // Its own settings in a throwaway home, not the user's.
        .env("HOME", std::env::temp_dir().join("enclave-inspector-home"))
        .env("NO_COLOR", "1");
    command
}

/// The Python of `.ci/peers/python`, where the openai SDK is installed.
pub fn python() -> PathBuf {
    let python = std::env::var_os("ENCLAVE_PYTHON_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".ci/peers/python"))
        .join("bin/python");
    assert!(
        python.exists(),
        "the Python peers are not installed at {}: run .ci/tools.sh test",
        python.display()
    );
    python
}

/// Runs `program` with `args` and `env` to its end; returns (succeeded,
/// stdout, stderr).
pub async fn run(
    program: PathBuf,
    args: &[std::ffi::OsString],
    env: &[(&str, String)],
) -> (bool, String, String) {
    let mut command = tokio_command(program);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run a peer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
