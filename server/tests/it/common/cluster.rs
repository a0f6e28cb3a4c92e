//! Several replicas, as ARCHITECTURE.md "Deploying more than one" has them:
//! the real `server` binary started twice on one database, with one master
//! key, behind nginx (Debian) with round robin and no sticky sessions. The
//! nginx configuration is the shipped `server/deploy/nginx.conf` with its
//! upstream listing both servers, TLS left out, and an access log that
//! names the replica that served each request.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use sqlx::PgPool;

use super::{Http, database_url, peers::free_port};

/// One server process.
pub struct Replica {
    pub addr: SocketAddr,
    /// `ENCLAVE_INSTANCE`: what `messages.runner` names.
    pub name: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

pub struct Cluster {
    /// nginx: what a browser reaches.
    pub front: Http,
    pub replicas: Vec<Replica>,
    nginx: Option<Child>,
    dir: PathBuf,
    access_log: PathBuf,
    marks: std::sync::atomic::AtomicU64,
}

async fn wait_ready(url: &str, what: &str, log: &Path) {
    for _ in 0..300 {
        if let Ok(res) = reqwest::get(url).await
            && res.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what} never became ready; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

impl Replica {
    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    async fn start(&mut self) {
        self.spawn();
        let url = format!("http://{}/ready", self.addr);
        wait_ready(&url, &self.name, &self.log).await;
    }

    /// Sends `signal` (`TERM`, `KILL`) and waits until the process is gone.
    async fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the replica runs");
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
        for _ in 0..600 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        panic!("{} did not exit within 30 s of SIG{signal}", self.name);
    }

    /// What the process wrote (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("the replica runs").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Cluster {
    /// Two replicas on `db`'s database behind nginx. `fake` is the model
    /// provider; `extra` adds settings to both.
    pub async fn start(db: &PgPool, fake: SocketAddr, extra: &[(&str, &str)]) -> Cluster {
        Self::start_on(&database_url(db).await, 2, fake, extra).await
    }

    /// `count` replicas on the database at `url` (which they migrate).
    pub async fn start_on(
        url: &str,
        count: usize,
        fake: SocketAddr,
        extra: &[(&str, &str)],
    ) -> Cluster {
        use base64::Engine as _;
        app::platform::tls::init();
        let dir = std::env::temp_dir().join(format!("enclave-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("nginx")).unwrap();
        let front_port = free_port();
        let public_url = format!("http://127.0.0.1:{front_port}");
        // The key `keyring(1, ..)` is made of: tests can open what is stored.
        let master = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let mut replicas = Vec::new();
        for index in 0..count {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let name = format!("replica-{index}");
            let mut env: Vec<(String, String)> = [
                ("ENCLAVE_DATABASE_URL", url),
                ("ENCLAVE_ADDR", &addr.to_string()),
                ("ENCLAVE_INSTANCE", &name),
                ("ENCLAVE_PUBLIC_URL", &public_url),
                ("ENCLAVE_PROXY_HOPS", "1"),
                ("ENCLAVE_MASTER_KEY", &master),
                ("ENCLAVE_LOG", "info"),
                (
                    "ENCLAVE_OPENAI_BASE_URL",
                    &format!("http://{fake}/openai/v1"),
                ),
                ("ENCLAVE_OPENAI_API_KEY", "platform-key"),
                ("ENCLAVE_EGRESS_ALLOW", &fake.to_string()),
                ("ENCLAVE_MAIL_CATCHER", "true"),
                ("ENCLAVE_SIGN_UP_LIMIT_PER_IP", "1000"),
                ("ENCLAVE_SIGN_IN_LIMIT_PER_IP", "1000"),
                ("ENCLAVE_CHAT_LIMIT_PER_USER", "1000"),
                ("LEPTOS_SITE_ROOT", "target/site"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            // Later entries win: `extra` overrides the defaults above.
            for (k, v) in extra {
                env.retain(|(key, _)| key != k);
                env.push((k.to_string(), v.to_string()));
            }
            replicas.push(Replica {
                addr,
                name,
                env,
                child: None,
                log: dir.join(format!("replica-{index}.log")),
            });
        }
        let access_log = dir.join("access.log");
        // Made first, so that whatever has started is stopped if a start fails.
        let mut cluster = Cluster {
            front: Http::new(&public_url),
            replicas,
            nginx: None,
            dir,
            access_log,
            marks: Default::default(),
        };
        for replica in &mut cluster.replicas {
            replica.start().await;
        }
        cluster.start_nginx(front_port).await;
        cluster
    }

    /// The shipped nginx.conf, with its upstream listing every replica and
    /// plain http on `port` instead of TLS.
    async fn start_nginx(&mut self, port: u16) {
        let shipped = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"),
        )
        .unwrap();
        let upstream: String = self
            .replicas
            .iter()
            .map(|r| format!("    server {};\n", r.addr))
            .collect();
        let mut site = String::new();
        for line in shipped.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("# Plain http only") {
                break; // the http-to-https server: no TLS here
            }
            if trimmed == "server 127.0.0.1:3000;" {
                site.push_str(&upstream);
            } else if trimmed == "listen 443 ssl;" {
                site.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            } else if !trimmed.starts_with("ssl_") {
                site.push_str(line);
                site.push('\n');
            }
        }
        for wanted in [
            &upstream[..],
            &format!("listen 127.0.0.1:{port};"),
            "proxy_buffering off;",
            "proxy_read_timeout 1h;",
        ] {
            assert!(
                site.contains(wanted),
                "nginx.conf no longer has what the cluster replaces ({wanted})"
            );
        }
        assert!(
            !site.contains("ip_hash") && !site.contains("sticky") && !site.contains("hash "),
            "the upstream must balance without sticky sessions"
        );
        let dir = self.dir.join("nginx");
        let user = if is_root() { "user root;" } else { "" };
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\n\
             error_log {dir}/error.log warn;\n{user}\n\
             events {{ worker_connections 512; }}\n\
             http {{\n\
             log_format replicas '$request_uri $upstream_addr $status';\n\
             access_log {log} replicas;\n\
             client_body_temp_path {dir}/body;\n\
             proxy_temp_path {dir}/proxy;\n\
             fastcgi_temp_path {dir}/fastcgi;\n\
             uwsgi_temp_path {dir}/uwsgi;\n\
             scgi_temp_path {dir}/scgi;\n\
             {site}\n}}\n",
            dir = dir.display(),
            log = self.access_log.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let out = std::fs::File::create(dir.join("out.log")).unwrap();
        let nginx = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("nginx (Debian's, installed by .ci/tools.sh test)");
        self.nginx = Some(nginx);
        wait_ready(&self.front.url("/ready"), "nginx", &dir.join("error.log")).await;
    }

    /// The replica at `addr` (as nginx names it).
    fn index_of(&self, upstream: &str) -> Option<usize> {
        // After a failed try nginx lists each server it tried: the last served.
        let last = upstream.rsplit(", ").next()?;
        self.replicas
            .iter()
            .position(|r| r.addr.to_string() == last)
    }

    /// Which replica served each finished request whose path starts with
    /// `path`, in the order nginx finished them (a stream is logged when
    /// it ends), once there are `at_least` (nginx writes its log line just
    /// after the response; within 2 s).
    pub async fn served(&self, path: &str, at_least: usize) -> Vec<usize> {
        let mut served = self.served_now(path);
        for _ in 0..200 {
            if served.len() >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            served = self.served_now(path);
        }
        served
    }

    fn served_now(&self, path: &str) -> Vec<usize> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut words = line.split(' ');
                let uri = words.next()?;
                if !uri.starts_with(path) {
                    return None;
                }
                let rest: Vec<&str> = words.collect();
                let upstream = rest[..rest.len().saturating_sub(1)].join(" ");
                self.index_of(&upstream)
            })
            .collect()
    }

    /// Makes the next request through nginx go to replica `index`: nginx's
    /// round robin (one worker, equal weights) takes the replicas in turn,
    /// so this asks `/health` until a replica other than `index` answered.
    /// The access log says who did; tests check where their request went.
    pub async fn aim_at(&self, index: usize) {
        for _ in 0..4 {
            let mark = self
                .marks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = format!("/health?mark={mark:06}");
            let res = reqwest::get(self.front.url(&path)).await.unwrap();
            assert_eq!(res.status(), 200);
            let served = self.served(&path, 1).await;
            if served.first().is_some_and(|&i| i != index) {
                return;
            }
        }
        panic!("nginx never sent a request to another replica than {index}");
    }

    /// The replica whose name `messages.runner` holds for `message`.
    pub async fn writer_of(&self, db: &PgPool, message: &str) -> usize {
        let runner: Option<String> =
            sqlx::query_scalar("SELECT runner FROM messages WHERE id = $1::uuid")
                .bind(message)
                .fetch_one(db)
                .await
                .unwrap();
        let runner = runner.expect("the reply has a writer");
        self.replicas.iter().position(|r| r.name == runner).unwrap()
    }

    /// Fails if any replica's log holds one of `secrets`, or the master key
    /// (each log must be non-empty, or the check would prove nothing).
    pub fn assert_logs_hold_none(&self, secrets: &[&str]) {
        for replica in &self.replicas {
            let log = replica.log();
            assert!(!log.is_empty(), "{} wrote no log", replica.name);
            let master = replica
                .env
                .iter()
                .find(|(k, _)| k == "ENCLAVE_MASTER_KEY")
                .map(|(_, v)| v.as_str());
            for secret in secrets.iter().copied().chain(master) {
                assert!(
                    !log.contains(secret),
                    "{}'s log holds a secret",
                    replica.name
                );
            }
        }
    }

    /// SIGTERM to replica `index`; waits until it has exited.
    pub async fn terminate(&mut self, index: usize) -> std::process::ExitStatus {
        self.replicas[index].signal("TERM").await
    }

    /// SIGKILL to replica `index`: no goodbye.
    pub async fn kill(&mut self, index: usize) {
        self.replicas[index].signal("KILL").await;
    }

    /// Starts replica `index` again, with the same settings and port.
    pub async fn restart(&mut self, index: usize) {
        self.replicas[index].start().await;
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for replica in &self.replicas {
                let log = replica.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- {} (last lines, newest first)", replica.name);
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
        if let Some(mut nginx) = self.nginx.take() {
            // Not SIGKILL: that ends the master and leaves its worker
            // running (and listening) after the test. TERM makes the master
            // stop its worker first.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(nginx.id().to_string())
                .status();
            for _ in 0..100 {
                if matches!(nginx.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = nginx.kill();
            let _ = nginx.wait();
        }
        for mut child in self.replicas.iter_mut().filter_map(|r| r.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL cluster of the test's own (`.ci/pg.sh`), for a test that
/// stops and starts the database under a running server. It comes back on
/// the same port, as a restarted database does.
pub struct PrivateDatabase {
    dir: PathBuf,
    port: u16,
}

/// `.ci/pg.sh command dir` with the cluster's port, off the async runtime.
async fn pg_sh(dir: &Path, port: u16, command: &'static str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/pg.sh");
    let dir = dir.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .arg(command)
            .arg(dir)
            .env("PG_PORT", port.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "pg.sh {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivateDatabase {
    pub async fn start() -> PrivateDatabase {
        let db = PrivateDatabase {
            dir: std::env::temp_dir().join(format!("enclave-pg-{}", uuid::Uuid::new_v4())),
            port: free_port(),
        };
        pg_sh(&db.dir, db.port, "start").await;
        db
    }

    /// The `postgres` database on it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it (fast shutdown: every connection is cut, as in a restart).
    pub async fn stop(&self) {
        pg_sh(&self.dir, self.port, "stop").await;
    }

    /// Starts it again on the same port.
    pub async fn resume(&self) {
        pg_sh(&self.dir, self.port, "start").await;
    }
}

impl Drop for PrivateDatabase {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/pg.sh");
        let _ = Command::new(script).arg("remove").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
