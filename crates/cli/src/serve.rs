//! `metareason serve`: the loop behind an OpenAI-compatible endpoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use metareason_awareness::Policy;
use metareason_memory::Memory;
use metareason_server::{AppState, Engine, ServerConfig};

use crate::{
    open_embedder, open_model, open_sentence_embedder, open_state_readers, GlobalArgs, MemoryArgs,
};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (0.0.0.0 for every interface: then set keys).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// An accepted API key (repeatable); clients send `Authorization:
    /// Bearer KEY`. Without keys, anyone who reaches the port may use it.
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "METAREASON_SERVER_API_KEY"
    )]
    api_keys: Vec<String>,
    /// A file of accepted API keys, one per line (# comments).
    #[arg(long, value_name = "FILE")]
    api_keys_file: Option<PathBuf>,
    /// Loops running at once; more requests wait in the queue.
    #[arg(long, default_value_t = 4)]
    max_concurrent: usize,
    /// Requests waiting at most; beyond, 429 with Retry-After.
    #[arg(long, default_value_t = 16)]
    max_queue: usize,
    /// Seconds one request's loop may run (checked before each model call;
    /// 0: no limit).
    #[arg(long, default_value_t = 600)]
    request_timeout: u64,
    /// Tokens one request's loop may generate (0: no limit).
    #[arg(long, default_value_t = 16_384)]
    request_tokens: u64,
    #[command(flatten)]
    memory: MemoryArgs,
    /// Mission policy file (TOML); default: the shipped policy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

fn read_keys(path: &PathBuf) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the API keys file {}", path.display()))?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if keys.is_empty() {
        bail!(
            "the API keys file {} holds no key (one per line)",
            path.display()
        );
    }
    Ok(keys)
}

pub fn serve(g: &GlobalArgs, a: ServeArgs) -> Result<()> {
    let mut api_keys: Vec<String> = a
        .api_keys
        .iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(p) = &a.api_keys_file {
        api_keys.extend(read_keys(p)?);
    }
    if a.max_concurrent == 0 {
        bail!("--max-concurrent must be at least 1");
    }
    let policy = match &a.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::default_policy(),
    };
    let memory_path = if a.memory.no_memory {
        None
    } else {
        let path = a.memory.memory.clone().unwrap_or_else(Memory::default_path);
        // Open it once now: a bad path fails before the model loads.
        Memory::open(&path)
            .with_context(|| format!("cannot open the memory at {}", path.display()))?;
        Some(path)
    };
    let addr = format!("{}:{}", a.host, a.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Bind before loading the model: a taken port fails at once.
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&addr))
        .with_context(|| {
            format!("cannot listen on {addr} (is another server on that port? use --port)")
        })?;
    let model = open_model(g)?;
    let embedder = if memory_path.is_some() {
        open_embedder(g).map(Arc::from)
    } else {
        open_sentence_embedder(g).map(Arc::from)
    };
    if api_keys.is_empty() && a.host != "127.0.0.1" && a.host != "localhost" && a.host != "::1" {
        tracing::warn!("listening on {addr} without API keys: anyone who reaches it may use it");
    }
    let info = model.info();
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(addr.clone());
    let state_readers = open_state_readers(g, &policy)
        .into_iter()
        .map(Arc::from)
        .collect();
    let engine = Engine {
        model,
        embedder,
        state_readers,
        memory_path,
        policy,
    };
    let config = ServerConfig {
        api_keys,
        max_concurrent: a.max_concurrent,
        max_queue: a.max_queue,
        request_timeout: (a.request_timeout > 0).then(|| Duration::from_secs(a.request_timeout)),
        request_tokens: (a.request_tokens > 0).then_some(a.request_tokens),
        ..ServerConfig::default()
    };
    let state = AppState::new(engine, config);
    eprintln!(
        "metareason serve: {} ({}) on http://{bound}/v1 — model names: metareason, metareason-greedy, metareason:<preset>; GET /v1/models lists them",
        info.name, info.backend
    );
    runtime
        .block_on(metareason_server::serve(
            listener,
            state,
            metareason_server::shutdown_signal(),
        ))
        .context("the server stopped")?;
    eprintln!("metareason serve: stopped");
    Ok(())
}
