//! Side by side with a real peer (issue 19): Open WebUI, from PyPI, run
//! offline against the same fake provider through its OpenAI-compatible
//! connection, measured the way Enclave is in the same run. Only when
//! `BENCH_OPEN_WEBUI` names its `open-webui` executable (`BENCH_PEERS=1
//! make bench` installs it), since the peer is large (7 GB with its
//! dependencies).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use reqwest::Client;
use serde_json::{Value, json};

use super::{
    Observed, PROVIDER_KEY, Proc, Table, closed_loop, direct_phase, free_port, kb, memory_kib, mib,
    model, ms, ramp_for, read_openai_stream,
};

/// The levels the issue asks for: (streams, tokens, ms between tokens,
/// seconds measured), with the scripted replies of Enclave's own rows.
const LEVELS: [(usize, usize, u64, u64); 2] = [(1, 5, 10, 10), (20, 20, 50, 10)];

/// A running Open WebUI with one signed-up user (its first, so its admin).
pub struct OpenWebUi {
    process: Proc,
    base: String,
    token: String,
}

impl OpenWebUi {
    /// Starts `exe` on a free port with a fresh data folder under `logs`,
    /// its only connection the fake provider, offline (no model downloads,
    /// no update checks, no telemetry).
    pub async fn start(exe: &Path, fake_base: &str, logs: &Path) -> anyhow::Result<Self> {
        let data = logs.join("open-webui-data");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let log = logs.join("open-webui.log");
        let out = std::fs::File::create(&log)?;
        // The fake's models are named by their script: Open WebUI offers
        // exactly these on its connection.
        let models: Vec<String> = LEVELS.iter().map(|l| model(l.1, l.2)).collect();
        let configs = json!({"0": {"enable": true, "model_ids": models}});
        let child = Command::new(exe)
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .env("DATA_DIR", &data)
            .env("WEBUI_SECRET_KEY", "bench-secret-key")
            .env("OPENAI_API_BASE_URL", format!("{fake_base}/openai/v1"))
            .env("OPENAI_API_KEY", PROVIDER_KEY)
            .env("OPENAI_API_CONFIGS", configs.to_string())
            .env("ENABLE_OLLAMA_API", "false")
            .env("BYPASS_MODEL_ACCESS_CONTROL", "true")
            .env("RAG_EMBEDDING_ENGINE", "openai")
            .env("OFFLINE_MODE", "true")
            .env("HF_HUB_OFFLINE", "1")
            .env("ENABLE_VERSION_UPDATE_CHECK", "false")
            .env("SCARF_NO_ANALYTICS", "true")
            .env("DO_NOT_TRACK", "true")
            .env("ANONYMIZED_TELEMETRY", "false")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut process = Proc { child };
        let http = Client::new();
        let up = Instant::now();
        loop {
            if http
                .get(format!("{base}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                bail!("Open WebUI exited with {status}; see {}", log.display());
            }
            if up.elapsed() > Duration::from_secs(300) {
                bail!(
                    "Open WebUI did not come up in 5 minutes; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let res = http
            .post(format!("{base}/api/v1/auths/signup"))
            .json(&json!({
                "name": "Bench User",
                "email": "bench@example.com",
                "password": super::PASSWORD,
            }))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("Open WebUI sign-up: {} {}", res.status(), res.text().await?);
        }
        let signed: Value = res.json().await?;
        let token = signed["token"]
            .as_str()
            .ok_or_else(|| anyhow!("Open WebUI sign-up gave no token"))?
            .to_owned();
        Ok(OpenWebUi {
            process,
            base,
            token,
        })
    }

    /// One reply through Open WebUI's chat endpoint (`/api/chat/completions`,
    /// what its own API clients use; its page streams the same call over a
    /// websocket), read to the end like a direct one.
    async fn through(&self, http: &Client, model: &str, tokens: usize) -> anyhow::Result<Observed> {
        let start = Instant::now();
        let res = http
            .post(format!("{}/api/chat/completions", self.base))
            .bearer_auth(&self.token)
            .json(&super::chat_body(model))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("Open WebUI: {} {}", res.status(), res.text().await?);
        }
        read_openai_stream(res, start, tokens).await
    }
}

/// Open WebUI's rows: added time to first token at 1 and 20 streams (each
/// against the direct path measured just before it), idle memory and
/// first-load weight.
pub async fn rows(
    exe: &Path,
    bench: &Arc<super::Bench>,
    fake_base: &str,
    logs: &Path,
    table: &mut Table,
) -> anyhow::Result<()> {
    println!("- Open WebUI ({})", exe.display());
    let peer = Arc::new(OpenWebUi::start(exe, fake_base, logs).await?);
    // Memory once it has settled after start (and one sign-up), as for
    // Enclave's idle figure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = memory_kib(peer.process.pid()).0;
    for (concurrency, tokens, delay_ms, seconds) in LEVELS {
        let name = model(tokens, delay_ms);
        let ramp = ramp_for(tokens, delay_ms);
        let measure = Duration::from_secs(seconds);
        println!("  - {concurrency} concurrent streams ({name}): direct, then through Open WebUI");
        let direct = direct_phase(bench, concurrency, ramp, measure, &name, tokens).await;
        let through = {
            let peer = peer.clone();
            let http = bench.h1.clone();
            closed_loop(concurrency, ramp, measure, move |_| {
                let peer = peer.clone();
                let http = http.clone();
                let name = name.clone();
                async move { peer.through(&http, &name, tokens).await }
            })
            .await
        };
        if through.streams.is_empty() {
            table.note(format!(
                "Open WebUI at {concurrency} stream(s): no stream completed ({} errors; first: {}).",
                through.errors,
                through.first_error.as_deref().unwrap_or("none")
            ));
            continue;
        }
        let (d, t) = (direct.ttft(), through.ttft());
        table.row(
            format!("Open WebUI: time to first token, {concurrency} stream(s), p50 / p99"),
            format!("{} / {}", ms(d.p50), ms(d.p99)),
            format!("{} / {} ({} streams)", ms(t.p50), ms(t.p99), t.samples),
            format!(
                "{} / {}",
                super::added(t.p50, d.p50),
                super::added(t.p99, d.p99)
            ),
            "",
            None,
        );
        if through.broken() > 0 {
            table.note(format!(
                "Open WebUI at {concurrency} stream(s): {} of {} streams lost or garbled tokens.",
                through.broken(),
                through.streams.len() + through.errors
            ));
        }
    }
    table.row(
        "Open WebUI: memory (RSS), idle after start",
        "",
        mib(idle),
        "",
        "",
        None,
    );
    first_load_row(
        table,
        "Open WebUI: first load (JS + CSS, as Chromium loads its sign-in page)",
        &format!("{}/", peer.base),
    );
    table.note(
        "Open WebUI rows: PyPI open-webui (version in .ci/peers/open-webui.txt), one process, \
         SQLite in a fresh data folder, offline, its OpenAI connection on the same fake provider. \
         Its replies go through `/api/chat/completions` without a chat id, so it stores nothing; \
         Enclave's go through `send_message` and the reply's stream, and store both messages, \
         sealed.",
    );
    Ok(())
}

/// A row `label; raw / brotli` with what Chromium downloads for a first
/// visit to `url`, or a note saying why it could not be weighed.
pub fn first_load_row(table: &mut Table, label: &str, url: &str) {
    match first_load(url) {
        Ok((count, raw, brotli)) => table.row(
            format!("{label}; raw / brotli"),
            "",
            format!("{} / {} ({count} files)", kb(raw), kb(brotli)),
            "",
            "",
            None,
        ),
        Err(err) => table.note(format!("{label}: not weighed: {err:#}")),
    }
}

/// What Chromium downloads for a first visit to `url` (scripts, style
/// sheets, WebAssembly): (files, raw bytes, brotli bytes), by
/// `end2end/first-load.mjs`.
fn first_load(url: &str) -> anyhow::Result<(usize, u64, u64)> {
    let script = end2end().join("first-load.mjs");
    let node = std::env::var("BENCH_NODE").unwrap_or_else(|_| "node".into());
    let out = Command::new(&node)
        .arg(&script)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {node} {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {}: {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout)?;
    let resources = report["resources"]
        .as_array()
        .ok_or_else(|| anyhow!("first-load.mjs: no resources"))?;
    let sum = |field: &str| -> u64 { resources.iter().filter_map(|r| r[field].as_u64()).sum() };
    Ok((resources.len(), sum("raw"), sum("brotli")))
}

fn end2end() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../end2end")
}
