//! The `metareason` command: a thin edge over the library crates.

mod progress;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use metareason_catalog::{known_models, ModelKind, ModelStore, DEFAULT_MODEL};
use metareason_core::{GenerateRequest, LanguageModel, Prompt, SamplingParams};
use metareason_llama::{LlamaConfig, LlamaEngine};
use metareason_monitor::{SearchPolicy, SearchSettings};
use metareason_openai::{OpenAiConfig, OpenAiModel};
use metareason_solver::{policy_by_name, SolveConfig, Solver};
use metareason_strategy::answer::AnswerKind;
use metareason_strategy::StrategyKind;

use crate::progress::BarProgress;

/// Bayesian meta-reasoning around a language model.
#[derive(Parser)]
#[command(name = "metareason", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    /// Model: a known name (see `models list`), a path to a .gguf file,
    /// hf:OWNER/REPO/FILE.gguf, or with --backend openai the server's model name.
    #[arg(long, global = true, env = "METAREASON_MODEL", default_value = DEFAULT_MODEL)]
    model: String,
    /// Which engine runs the model.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Llama)]
    backend: Backend,
    /// Base URL of an OpenAI-compatible server, e.g. http://localhost:8000/v1.
    #[arg(long, global = true, env = "METAREASON_BASE_URL")]
    base_url: Option<String>,
    /// CPU threads for the local engine (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Context window per sequence, in tokens, for the local engine.
    #[arg(long, global = true, default_value_t = 4096)]
    ctx_size: u32,
    /// Where fetched models are stored.
    #[arg(long, global = true, env = metareason_catalog::MODELS_DIR_ENV)]
    models_dir: Option<PathBuf>,
    /// Seconds to wait for one answer from a model server.
    #[arg(long, global = true, default_value_t = 300)]
    timeout: u64,
    /// More log output (-v: info, -vv: debug, including llama.cpp's own logs).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Backend {
    /// llama.cpp in process (GGUF files).
    Llama,
    /// An OpenAI-compatible HTTP server (vLLM, SGLang, llama.cpp server, Ollama).
    Openai,
}

#[derive(Subcommand)]
enum Command {
    /// Solve a task: strategy, monitored search, verification, revision.
    Solve(SolveArgs),
    /// Generate text from a prompt, with token log-probabilities.
    Generate(GenerateArgs),
    /// List, fetch, verify and locate models.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Args)]
struct GenerateArgs {
    /// The user message.
    prompt: String,
    /// A system message in front of it.
    #[arg(long)]
    system: Option<String>,
    /// Text the assistant reply already starts with; generation continues it.
    #[arg(long = "continue", value_name = "TEXT")]
    continue_from: Option<String>,
    /// Print JSON with every token, its log-probability and the top alternatives.
    #[arg(long)]
    json: bool,
    /// Upper bound on generated tokens per sequence.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep only the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: u32,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when this string appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Number of sequences, sharing the prompt.
    #[arg(short, long, default_value_t = 1)]
    n: usize,
    /// Alternatives reported per token (0-20).
    #[arg(long, default_value_t = 5)]
    top_logprobs: u8,
}

#[derive(Args)]
struct SolveArgs {
    /// The task.
    question: String,
    /// Strategy: direct, chain_of_thought (cot), plan_then_solve (plan),
    /// program_aided (pal), example_guided.
    #[arg(long, default_value = "chain_of_thought")]
    strategy: String,
    /// Strategies to switch to when step rewards collapse (comma-separated;
    /// "none" for no switching).
    #[arg(long, default_value = "program_aided")]
    fallback: String,
    /// Search policy.
    #[arg(long, default_value = "greedy", value_parser = ["greedy", "bon", "sc", "beam", "mcts", "adaptive", "adaptive_dirichlet"])]
    search: String,
    /// Samples (bon, sc), the most samples (adaptive), or iterations (mcts).
    #[arg(long, default_value_t = 8)]
    samples: usize,
    /// Beam width and expansions per node (beam).
    #[arg(long, default_value_t = 2)]
    beam_width: usize,
    /// Most tokens generated over the whole solve (0: no limit).
    #[arg(long, default_value_t = 0)]
    budget_tokens: u64,
    /// Sampling temperature of every policy but greedy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most tokens of one reply.
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Kind of answer: number, yesno, text, or choice:ABCD.
    #[arg(long, default_value = "number")]
    answer: String,
    /// Rounds of revision at most.
    #[arg(long, default_value_t = 1)]
    revisions: usize,
    /// Continuations resampled when step rewards collapse (0: switch strategy at once).
    #[arg(long, default_value_t = 3)]
    backtrack: usize,
    /// Ask the model to critique its solution (scored as P(Yes)).
    #[arg(long)]
    critique: bool,
    /// Ask the model whether each step is correct; P(Yes) joins the step reward.
    #[arg(long)]
    judge_steps: bool,
    /// Print the whole trace as JSON instead of the summary.
    #[arg(long)]
    json: bool,
    /// Also write the JSON trace to this file.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// The known models and whether they are fetched.
    List,
    /// Download a known model, join its parts and check its sha256.
    Fetch {
        /// A known model name.
        name: String,
    },
    /// Re-check the sha256 of a fetched model.
    Verify {
        /// A known model name.
        name: String,
    },
    /// Print where a fetched model is stored.
    Path {
        /// A known model name.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("metareason: error: {e}");
            for cause in e.chain().skip(1) {
                msg.push_str(&format!("\n  caused by: {cause}"));
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("METAREASON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Solve(args) => solve(&cli.global, args),
        Command::Generate(args) => generate(&cli.global, args),
        Command::Models(cmd) => models(&cli.global, cmd),
    }
}

fn store(g: &GlobalArgs) -> ModelStore {
    g.models_dir
        .clone()
        .map_or_else(ModelStore::from_env, ModelStore::new)
}

/// Builds the language model the global flags describe.
fn open_model(g: &GlobalArgs) -> Result<Arc<dyn LanguageModel>> {
    match g.backend {
        Backend::Llama => {
            let path = store(g)
                .resolve(&g.model, &BarProgress::new())
                .context("cannot find the model")?;
            let mut config = LlamaConfig::new(path);
            config.threads = g.threads;
            config.context_per_sequence = g.ctx_size;
            config.engine_logs = g.verbose >= 2;
            config.name = Some(g.model.clone());
            Ok(Arc::new(LlamaEngine::load(config)?))
        }
        Backend::Openai => {
            let Some(base) = &g.base_url else {
                bail!("--backend openai needs --base-url (or METAREASON_BASE_URL), e.g. http://localhost:8000/v1");
            };
            let mut config = OpenAiConfig::new(base.clone(), g.model.clone());
            config.timeout = Duration::from_secs(g.timeout.max(1));
            Ok(Arc::new(OpenAiModel::new(config)?))
        }
    }
}

fn parse_answer_kind(s: &str) -> Result<AnswerKind> {
    Ok(match s {
        "number" => AnswerKind::Number,
        "yesno" | "yes_no" => AnswerKind::YesNo,
        "text" => AnswerKind::Text,
        _ => match s.strip_prefix("choice:") {
            Some(labels) if !labels.is_empty() => AnswerKind::Choice {
                labels: labels
                    .chars()
                    .map(|c| c.to_ascii_uppercase().to_string())
                    .collect(),
            },
            _ => bail!("unknown answer kind '{s}': use number, yesno, text or choice:ABCD"),
        },
    })
}

fn parse_strategy(s: &str) -> Result<StrategyKind> {
    StrategyKind::parse(s).with_context(|| {
        format!(
            "unknown strategy '{s}': use one of {}",
            StrategyKind::ALL.map(|k| k.name()).join(", ")
        )
    })
}

fn solve(g: &GlobalArgs, a: SolveArgs) -> Result<()> {
    if a.question.trim().is_empty() {
        bail!("the question is empty: give a task to solve");
    }
    let strategy = parse_strategy(&a.strategy)?;
    let fallbacks = if a.fallback == "none" || a.fallback.is_empty() {
        Vec::new()
    } else {
        a.fallback
            .split(',')
            .map(parse_strategy)
            .collect::<Result<Vec<_>>>()?
    };
    let mut policy = policy_by_name(&a.search, a.samples).expect("clap checked the name");
    if let SearchPolicy::Beam {
        width, expansions, ..
    } = &mut policy
    {
        *width = a.beam_width.max(1);
        *expansions = a.beam_width.max(1);
    }
    let config = SolveConfig {
        strategy,
        fallbacks,
        policy,
        settings: SearchSettings {
            temperature: a.temperature,
            seed: a.seed,
            max_tokens: a.max_tokens,
            budget_tokens: a.budget_tokens,
            ..SearchSettings::default()
        },
        answer_kind: parse_answer_kind(&a.answer)?,
        max_revisions: a.revisions,
        backtrack_samples: a.backtrack,
        critique: a.critique,
        judge_steps: a.judge_steps,
        ..SolveConfig::default()
    };
    let model = open_model(g)?;
    let trace = Solver::new(model.as_ref()).solve(&a.question, &config)?;
    let json = serde_json::to_string_pretty(&trace)?;
    if let Some(path) = &a.trace {
        write_atomically(path, json.as_bytes())
            .with_context(|| format!("cannot write the trace to {}", path.display()))?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", trace.summary());
    }
    Ok(())
}

/// Writes a file whole or not at all (temp file in the same directory, then rename).
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("trace"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn generate(g: &GlobalArgs, a: GenerateArgs) -> Result<()> {
    let mut prompt = Prompt::user(a.prompt);
    if let Some(s) = a.system {
        prompt = prompt.with_system(s);
    }
    if let Some(c) = a.continue_from {
        prompt = prompt.with_assistant_prefix(c);
    }
    let request = GenerateRequest::new(
        prompt,
        SamplingParams {
            temperature: a.temperature,
            top_p: a.top_p,
            top_k: a.top_k,
            seed: a.seed,
            max_tokens: a.max_tokens,
            stop: a.stop,
            top_logprobs: a.top_logprobs,
            ignore_eos: false,
        },
    )
    .with_n(a.n);
    // Validate before loading a model: bad flags should not cost a model load.
    request.validate()?;
    let model = open_model(g)?;
    let out = model.generate(&request)?;
    let mut stdout = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "model": model.info(),
            "sequences": out.sequences,
            "usage": out.usage,
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for (i, s) in out.sequences.iter().enumerate() {
            if out.sequences.len() > 1 {
                writeln!(
                    stdout,
                    "--- sample {i} (mean logprob {:.3})",
                    s.mean_logprob()
                )?;
            }
            writeln!(stdout, "{}", s.text)?;
        }
        let u = out.usage;
        eprintln!(
            "[{} | prompt {} evaluated + {} cached | {} generated | {:.2}s]",
            model.info().name,
            u.prompt_tokens,
            u.cached_prompt_tokens,
            u.generated_tokens,
            u.wall_time.as_secs_f64()
        );
    }
    Ok(())
}

fn models(g: &GlobalArgs, cmd: ModelsCommand) -> Result<()> {
    let store = store(g);
    let progress = BarProgress::new();
    match cmd {
        ModelsCommand::List => {
            println!("models directory: {}", store.root().display());
            for m in known_models() {
                let state = if store.is_fetched(m) { "fetched" } else { "-" };
                let kind = match m.kind {
                    ModelKind::Gguf => "gguf",
                    ModelKind::Embedder => "embedder",
                };
                let default = if m.name == DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                println!(
                    "{:<30} {:<8} {:>8.1} MB  {:<8} {}{}",
                    m.name,
                    kind,
                    m.size() as f64 / 1e6,
                    state,
                    m.description,
                    default
                );
            }
        }
        ModelsCommand::Fetch { name } => {
            let p = store.fetch(&name, &progress)?;
            println!("{}", p.display());
        }
        ModelsCommand::Verify { name } => {
            let p = store.verify(&name, &progress)?;
            println!("ok: {} matches its sha256", p.display());
        }
        ModelsCommand::Path { name } => {
            println!("{}", store.path(&name)?.display());
        }
    }
    Ok(())
}
