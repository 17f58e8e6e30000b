//! The `metareason` command: a thin edge over the library crates.

mod bench;
mod fit_calibration;
mod fit_harm;
mod fit_probe;
mod progress;
mod serve;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use metareason_awareness::{AwarenessSettings, Policy};
use metareason_catalog::{known_models, ModelKind, ModelStore, DEFAULT_MODEL};
use metareason_core::{
    Embedder, GenerateRequest, Generation, LanguageModel, ModelError, ModelInfo, Prompt,
    SamplingParams, ScoreRequest, Scored,
};
use metareason_embed::MiniLm;
use metareason_llama::{LlamaConfig, LlamaEmbedder, LlamaEngine, Reading, ReplyStates};
use metareason_memory::{Decision, Memory};
use metareason_monitor::{SearchPolicy, SearchSettings};
use metareason_openai::{OpenAiConfig, OpenAiModel, RewardEndpoint, RewardProtocol};
use metareason_reasoner::{
    summary, CrossCheck, EscalationConfig, Feedback, Reasoner, ReasonerConfig,
};
use metareason_solver::{policy_by_name, SolveConfig, POLICY_NAMES};
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
    /// Solve a task: self-awareness, strategy, monitored search,
    /// verification, revision, calibrated confidence; stored in memory.
    Solve(Box<SolveArgs>),
    /// Tell metareason whether an answer was right; it learns from it.
    Feedback(FeedbackArgs),
    /// Inspect, export, import or reset the memory.
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Check a policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run a configuration over a dataset (resumable) and summarise it.
    Bench(Box<bench::BenchArgs>),
    /// Generate text from a prompt, with token log-probabilities.
    Generate(GenerateArgs),
    /// List, fetch, verify and locate models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Serve the loop behind an OpenAI-compatible HTTP endpoint
    /// (POST /v1/chat/completions, streaming, feedback, trace pages).
    Serve(Box<serve::ServeArgs>),
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
    /// Upper bound on generated tokens per sequence (1-32768).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=32768))]
    max_tokens: u32,
    /// Sampling temperature; 0 is greedy (0-2).
    #[arg(long, default_value_t = 0.0, value_parser = temperature)]
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
    /// Number of sequences, sharing the prompt (1-64).
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    n: u64,
    /// Alternatives reported per token (0-20).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=20))]
    top_logprobs: u8,
}

#[derive(Args)]
struct SolveArgs {
    /// The task; `-` reads it from standard input.
    #[arg(required_unless_present = "question_file")]
    question: Option<String>,
    /// Read the task from this file instead.
    #[arg(long, value_name = "FILE", conflicts_with = "question")]
    question_file: Option<PathBuf>,
    /// Strategy: auto (self-awareness chooses among --strategies, of those
    /// that suit the answer kind), direct, chain_of_thought (cot),
    /// plan_then_solve (plan), program_aided (pal), example_guided, respond.
    #[arg(long, default_value = "auto")]
    strategy: StrategyArg,
    /// The strategies `auto` chooses among (comma-separated); only those
    /// that suit the task's answer kind are offered.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = StrategyKind::ALL)]
    strategies: Vec<StrategyKind>,
    /// Strategies to switch to when step rewards collapse (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [StrategyKind::ProgramAided])]
    fallback: Vec<StrategyKind>,
    /// Never switch strategy when step rewards collapse.
    #[arg(long, conflicts_with = "fallback")]
    no_fallback: bool,
    /// Search policy.
    #[arg(long, default_value = "greedy", value_parser = clap::builder::PossibleValuesParser::new(POLICY_NAMES))]
    search: String,
    /// Samples (bon, sc), the most samples (adaptive), or iterations (mcts), 1-64.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    samples: u64,
    /// Beam width and expansions per node (beam), 1-16.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    beam_width: u64,
    /// Most tokens generated over the whole solve (0: no limit).
    #[arg(long, default_value_t = 0)]
    budget_tokens: u64,
    /// Sampling temperature of every policy but greedy (0-2).
    #[arg(long, default_value_t = 0.7, value_parser = temperature)]
    temperature: f32,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most tokens of one reply (1-32768).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=32768))]
    max_tokens: u32,
    /// Kind of answer: auto (inferred from the task: rules, then the
    /// model when they are unsure), number, yes_no, text (a short answer),
    /// free_text (a reply in prose), or choice:ABCD.
    #[arg(long, default_value = "auto")]
    answer: String,
    /// Rounds of revision at most (0-8).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=8))]
    revisions: u64,
    /// Continuations resampled when step rewards collapse (0: switch strategy at once; at most 16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=16))]
    backtrack: u64,
    /// Ask the model to critique its solution (scored as P(Yes)).
    #[arg(long)]
    critique: bool,
    /// Ask the model whether each step is correct; P(Yes) joins the step reward.
    #[arg(long)]
    judge_steps: bool,
    /// Judge each step with a process reward model behind this server
    /// instead: the base URL up to /v1 for vLLM (`vllm serve
    /// Qwen/Qwen2.5-Math-PRM-7B --task reward`), the endpoint's URL for
    /// --reward-protocol json.
    #[arg(long, value_name = "URL")]
    reward_url: Option<String>,
    /// How to speak to the reward server: vllm (its /pooling endpoint, steps
    /// separated by <extra_0>) or json ({"question", "steps"} answered by
    /// {"reward"}).
    #[arg(long, default_value = "vllm", value_name = "PROTOCOL")]
    reward_protocol: String,
    /// The reward model's name on the server.
    #[arg(long, default_value = "Qwen/Qwen2.5-Math-PRM-7B", value_name = "NAME")]
    reward_model: String,
    /// Print the whole trace as JSON instead of the summary.
    #[arg(long)]
    json: bool,
    /// Also write the JSON trace to this file.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    #[command(flatten)]
    memory: MemoryArgs,
    /// Mission policy file (TOML); default: the shipped policy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The user's profile for the policy, e.g. --profile audience=teen (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    profile: Vec<String>,
    /// Choose the strategy by Thompson sampling (explore) instead of the best posterior mean.
    #[arg(long)]
    explore: bool,
    /// Skip the P(True) and perplexity probes.
    #[arg(long)]
    no_probes: bool,
    /// Cross-check the answer with a second strategy: auto (when unsure), always, never
    /// (used with --no-escalate; escalation draws from the second strategy itself).
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    cross_check: String,
    /// Never draw more replies after the first attempt (compute by difficulty off).
    #[arg(long)]
    no_escalate: bool,
    /// Most replies escalation may draw after the first attempt (0-64).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(0..=64))]
    escalation_samples: u64,
    /// When escalation asks its stopping rules: after every reply (fewest
    /// tokens), or after each whole cycle of its strategies (a backend with
    /// parallel slots draws a cycle at once, so fewer waits for more tokens).
    #[arg(long, default_value = "reply", value_parser = ["reply", "cycle"])]
    escalation_step: String,
    /// Always give the answer found, however unsure.
    #[arg(long)]
    no_abstain: bool,
    /// The right answer, when known: the episode is graded and learned from at once.
    #[arg(long, value_name = "ANSWER")]
    reference: Option<String>,
    /// A label of the task's family, stored with the episode.
    #[arg(long)]
    family: Option<String>,
}

#[derive(Args)]
struct MemoryArgs {
    /// The memory database (default: METAREASON_MEMORY or
    /// ~/.local/share/metareason/memory.sqlite).
    #[arg(long, value_name = "FILE")]
    memory: Option<PathBuf>,
    /// Do not read or write memory.
    #[arg(long)]
    no_memory: bool,
}

#[derive(Args)]
struct FeedbackArgs {
    /// The episode id `solve` printed.
    episode: i64,
    /// correct or wrong (or give --answer instead).
    #[arg(value_parser = ["correct", "wrong"], required_unless_present = "answer")]
    verdict: Option<String>,
    /// The right answer; the episode's answer is compared with it.
    #[arg(long, conflicts_with = "verdict")]
    answer: Option<String>,
    /// Do not distill a template or error note (no model is loaded).
    #[arg(long)]
    no_distill: bool,
    #[command(flatten)]
    memory: MemoryArgs,
}

#[derive(Subcommand)]
enum MemoryCommand {
    /// Counts of episodes, outcomes, strategies, templates, parameters.
    Stats(MemoryOnly),
    /// One episode in full (JSON).
    Show {
        /// The episode id.
        episode: i64,
        #[command(flatten)]
        memory: MemoryOnly,
    },
    /// The latest episodes, one line each.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        last: usize,
        #[command(flatten)]
        memory: MemoryOnly,
    },
    /// Write everything as JSONL.
    Export {
        /// The output file.
        file: PathBuf,
        #[command(flatten)]
        memory: MemoryOnly,
    },
    /// Add the records of an export file.
    Import {
        /// The JSONL file.
        file: PathBuf,
        #[command(flatten)]
        memory: MemoryOnly,
    },
    /// Delete episodes and the meta-buffer.
    Reset {
        /// Also forget the learned parameters.
        #[arg(long)]
        parameters: bool,
        /// Confirm.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        memory: MemoryOnly,
    },
}

#[derive(Args)]
struct MemoryOnly {
    /// The memory database (default: METAREASON_MEMORY or
    /// ~/.local/share/metareason/memory.sqlite).
    #[arg(long, value_name = "FILE")]
    memory: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse a policy file and list its rules, or say where it is wrong.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the shipped policy.
    Default,
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
    // A reader that stops early (`metareason memory list | head`) ends the
    // program quietly, as it does any Unix filter, instead of a panic in
    // println!.
    // SAFETY: restoring the default action of a signal before any thread
    // starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
    // Colours only for a terminal: a log file or a pipe gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Solve(args) => solve(&cli.global, *args),
        Command::Feedback(args) => feedback(&cli.global, args),
        Command::Memory(cmd) => memory(cmd),
        Command::Policy(cmd) => policy(cmd),
        Command::Bench(args) => bench::bench(&cli.global, *args),
        Command::Generate(args) => generate(&cli.global, args),
        Command::Models(cmd) => models(&cli.global, cmd),
        Command::Serve(args) => serve::serve(&cli.global, *args),
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

/// The process reward model behind `url`, checked before any model loads.
fn open_reward_endpoint(
    g: &GlobalArgs,
    url: &str,
    protocol: &str,
    model: &str,
) -> Result<RewardEndpoint> {
    let Some(protocol) = RewardProtocol::by_name(protocol) else {
        bail!("unknown --reward-protocol '{protocol}': use vllm or json");
    };
    let mut config = OpenAiConfig::new(url.to_string(), model.to_string());
    // The reward server has a key of its own: the generation server's key
    // (OPENAI_API_KEY, say) is not sent to another host.
    config.api_key = std::env::var("METAREASON_REWARD_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    config.timeout = Duration::from_secs(g.timeout.max(1));
    RewardEndpoint::new(config, protocol).context("cannot use the reward server")
}

/// A sampling temperature between 0 and 2.
fn temperature(s: &str) -> std::result::Result<f32, String> {
    let t: f32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=2.0).contains(&t) {
        Ok(t)
    } else {
        Err(format!("{t} is not between 0 and 2"))
    }
}

fn parse_answer_kind(s: &str) -> Result<AnswerKind> {
    Ok(s.parse::<AnswerKind>()?)
}

/// `auto` (None: inferred from the task) or a kind.
fn parse_answer_choice(s: &str) -> Result<Option<AnswerKind>> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    parse_answer_kind(s).map(Some)
}

/// `--strategy`: `auto` (self-awareness chooses) or one strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrategyArg {
    Auto,
    Fixed(StrategyKind),
}

impl std::str::FromStr for StrategyArg {
    type Err = metareason_core::UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(StrategyArg::Auto)
        } else {
            s.parse().map(StrategyArg::Fixed)
        }
    }
}

/// Stored or model-written text made safe for a terminal: control
/// characters (escape sequences, carriage returns, bells) are shown escaped
/// instead of acted on; newlines and tabs stay.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let keep = !c.is_control() || c == '\n' || c == '\t';
            let out: Vec<char> = if keep {
                vec![c]
            } else {
                c.escape_default().collect()
            };
            out
        })
        .collect()
}

/// The memory of a command that only reads it: a path that does not exist
/// is an error, not a new empty database.
fn open_existing_memory(path: Option<&PathBuf>) -> Result<Memory> {
    let path = path.cloned().unwrap_or_else(Memory::default_path);
    if !path.exists() {
        bail!(
            "no memory at {} (nothing stored yet, or a typo in --memory)",
            path.display()
        );
    }
    open_memory(Some(&path))
}

fn open_memory(path: Option<&PathBuf>) -> Result<Memory> {
    let path = path.cloned().unwrap_or_else(Memory::default_path);
    Memory::open(&path).with_context(|| format!("cannot open the memory at {}", path.display()))
}

/// all-MiniLM-L6-v2, fetched on first use (the mission policy's harm
/// classifier reads its vectors), else none: without memory no other
/// embedder is worth loading.
fn open_sentence_embedder(g: &GlobalArgs) -> Option<Box<dyn Embedder>> {
    let loaded = store(g)
        .ensure("all-minilm-l6-v2", &BarProgress::new())
        .map_err(|e| e.to_string())
        .and_then(|dir| MiniLm::load(&dir).map_err(|e| e.to_string()));
    match loaded {
        Ok(m) => Some(Box::new(m)),
        Err(e) => {
            tracing::warn!(
                "{e}; the policy's harm classifier is off (its keyword rules still apply)"
            );
            None
        }
    }
}

/// Readings of the local model's own reply state that a classifier of
/// `policy` or the answerability probe was fitted on (`bench fit-harm
/// --features model-state`, `bench fit-probe`): loaded on the same
/// memory-mapped file as the engine, every inner block in one reader that
/// reads a text once for all of them.
pub(crate) fn open_state_readers(g: &GlobalArgs, policy: &Policy) -> Vec<Box<dyn Embedder>> {
    if g.backend != Backend::Llama {
        return Vec::new();
    }
    let Ok(path) = store(g).resolve(&g.model, &metareason_catalog::NoProgress) else {
        return Vec::new();
    };
    let answerability = metareason_awareness::AnswerabilityModel::shipped();
    let names = policy
        .classifier_embedders()
        .into_iter()
        .chain(answerability.state_probe.iter().map(|p| p.embedder.clone()));
    let (mut layers, mut whole) = (Vec::new(), Vec::new());
    for reading in names.filter_map(|name| Reading::from_embedder_name(&name, &path)) {
        match reading {
            Reading::ReplyStateAt(l) => layers.push(l),
            Reading::ReplyState if !whole.contains(&reading) => whole.push(reading),
            // The mean reading serves memory search, not a probe.
            _ => {}
        }
    }
    let threads = g.threads.map(|t| t as u32);
    let mut out: Vec<Box<dyn Embedder>> = Vec::new();
    if !layers.is_empty() {
        match ReplyStates::load(&path, threads, &layers) {
            Ok(states) => out.extend(
                states
                    .views()
                    .into_iter()
                    .map(|v| Box::new(v) as Box<dyn Embedder>),
            ),
            Err(e) => tracing::warn!(
                "{e}; the probes of the model's state are off (the policy reads sentence \
                 embeddings, answerability the model's answers to its probes)"
            ),
        }
    }
    for reading in whole {
        match LlamaEmbedder::load_reading(&path, threads, reading) {
            Ok(e) => out.push(Box::new(e)),
            Err(e) => tracing::warn!(
                "{e}; the policy reads sentence embeddings instead of the model's state"
            ),
        }
    }
    out
}

/// The embedder for memory search: all-MiniLM-L6-v2 (fetched on first
/// use), else the local model's own embeddings, else none.
fn open_embedder(g: &GlobalArgs) -> Option<Box<dyn Embedder>> {
    if let Some(m) = open_sentence_embedder(g) {
        return Some(m);
    }
    let store = store(g);
    if g.backend == Backend::Llama {
        let path = store
            .resolve(&g.model, &metareason_catalog::NoProgress)
            .ok()?;
        match LlamaEmbedder::load(&path, g.threads.map(|t| t as u32)) {
            Ok(e) => return Some(Box::new(e)),
            Err(e) => tracing::warn!("no embedder ({e}); memory search is off"),
        }
    }
    None
}

/// The task of `solve`: the argument, standard input (`-`) or a file.
fn read_question(a: &SolveArgs) -> Result<String> {
    let text = match (&a.question, &a.question_file) {
        (_, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the question from {}", f.display()))?,
        (Some(q), None) if q == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("cannot read the question from standard input")?;
            s
        }
        (Some(q), None) => q.clone(),
        (None, None) => bail!("give a task to solve (or --question-file FILE, or - for stdin)"),
    };
    if text.trim().is_empty() {
        bail!("the question is empty: give a task to solve");
    }
    Ok(text.trim().to_string())
}

fn solve(g: &GlobalArgs, a: SolveArgs) -> Result<()> {
    let question = read_question(&a)?;
    let answer_kind = parse_answer_choice(&a.answer)?;
    let strategies: Vec<StrategyKind> = match a.strategy {
        StrategyArg::Auto => a.strategies.clone(),
        StrategyArg::Fixed(k) => vec![k],
    };
    let fallbacks = if a.no_fallback {
        Vec::new()
    } else {
        a.fallback.clone()
    };
    let Some(mut policy) = policy_by_name(&a.search, a.samples as usize) else {
        bail!(
            "unknown search policy '{}': use one of {}",
            a.search,
            POLICY_NAMES.join(", ")
        );
    };
    if let SearchPolicy::Beam {
        width, expansions, ..
    } = &mut policy
    {
        *width = a.beam_width as usize;
        *expansions = a.beam_width as usize;
    }
    let mut profile = std::collections::BTreeMap::new();
    for p in &a.profile {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--profile takes KEY=VALUE, e.g. --profile audience=teen (got '{p}')");
        };
        profile.insert(k.trim().to_string(), v.trim().to_string());
    }
    let solve = SolveConfig {
        // With `auto`, self-awareness replaces it by its choice.
        strategy: match a.strategy {
            StrategyArg::Auto => SolveConfig::default().strategy,
            StrategyArg::Fixed(k) => k,
        },
        fallbacks,
        policy,
        settings: SearchSettings {
            temperature: a.temperature,
            seed: a.seed,
            max_tokens: a.max_tokens,
            budget_tokens: a.budget_tokens,
            ..SearchSettings::default()
        },
        answer_kind: answer_kind.clone().unwrap_or_default(),
        max_revisions: a.revisions as usize,
        backtrack_samples: a.backtrack as usize,
        critique: a.critique,
        judge_steps: a.judge_steps,
        ..SolveConfig::default()
    };
    let config = ReasonerConfig {
        solve,
        infer_answer_kind: answer_kind.is_none(),
        strategies,
        awareness: AwarenessSettings {
            explore: a.explore,
            probes: !a.no_probes,
            allow_abstain: !a.no_abstain,
            ..AwarenessSettings::default()
        },
        cross_check: match a.cross_check.as_str() {
            "always" => CrossCheck::Always,
            "never" => CrossCheck::Never,
            _ => ReasonerConfig::default().cross_check,
        },
        escalation: EscalationConfig {
            enabled: !a.no_escalate,
            max_samples: a.escalation_samples as usize,
            check_each_reply: a.escalation_step == "reply",
            ..EscalationConfig::default()
        },
        abstain_after: !a.no_abstain,
        family: a.family.clone(),
        profile,
        seed: a.seed,
        ..ReasonerConfig::default()
    };
    let mission = match &a.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::default_policy(),
    };
    // Open memory before the model: a bad memory path should not cost a load.
    let memory = if a.memory.no_memory {
        None
    } else {
        Some(open_memory(a.memory.memory.as_ref())?)
    };
    let reward = a
        .reward_url
        .as_ref()
        .map(|url| open_reward_endpoint(g, url, &a.reward_protocol, &a.reward_model))
        .transpose()?;
    let model = open_model(g)?;
    let embedder = if memory.is_some() {
        open_embedder(g)
    } else {
        open_sentence_embedder(g)
    };
    let state_readers = open_state_readers(g, &mission);
    let mut reasoner = Reasoner::new(model.as_ref(), embedder.as_deref(), memory, mission)?;
    for r in &state_readers {
        reasoner = reasoner.with_state_reader(r.as_ref());
    }
    if let Some(r) = &reward {
        reasoner = reasoner.with_step_judge(r);
    }
    let report = reasoner.run(&question, &config)?;
    let graded = match (&a.reference, report.episode_id) {
        (Some(r), Some(id)) if report.candidate_answer.is_some() => {
            Some(reasoner.feedback(id, &Feedback::Answer(r.clone()))?)
        }
        _ => None,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &a.trace {
        write_atomically(path, json.as_bytes())
            .with_context(|| format!("cannot write the trace to {}", path.display()))?;
    }
    if a.json {
        println!("{json}");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match report.decision {
        Decision::Answer => writeln!(
            out,
            "answer: {}\nconfidence: {:.2}",
            printable(&report.reply),
            report.confidence.unwrap_or(0.0)
        )?,
        Decision::Abstain => writeln!(out, "abstained: {}", printable(&report.reply))?,
        Decision::Refuse => writeln!(out, "refused: {}", printable(&report.reply))?,
    }
    writeln!(out, "{}", printable(&summary(&report)))?;
    if let Some(fb) = graded {
        writeln!(
            out,
            "graded against the reference: {} (updated {})",
            if fb.correct { "correct" } else { "wrong" },
            fb.updated.join(", ")
        )?;
    } else if let (Some(id), Some(_)) = (report.episode_id, &report.candidate_answer) {
        writeln!(
            out,
            "episode {id} stored; tell metareason how it went: metareason feedback {id} correct|wrong"
        )?;
    }
    Ok(())
}

/// Stands in for a model where none is needed (feedback without distillation).
struct NoModel;

impl LanguageModel for NoModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "none".into(),
            backend: "none".into(),
            context_length: None,
        }
    }
    fn generate(&self, _: &GenerateRequest) -> Result<Generation, ModelError> {
        Err(ModelError::Engine("no model is loaded".into()))
    }
    fn score(&self, _: &ScoreRequest) -> Result<Scored, ModelError> {
        Err(ModelError::Engine("no model is loaded".into()))
    }
}

fn feedback(g: &GlobalArgs, a: FeedbackArgs) -> Result<()> {
    if a.memory.no_memory {
        bail!("feedback is stored in memory; drop --no-memory");
    }
    let memory = open_existing_memory(a.memory.memory.as_ref())?;
    // Fail on a wrong id before loading a model.
    memory.episode(a.episode)?;
    let fb = match (&a.verdict, &a.answer) {
        (_, Some(answer)) => Feedback::Answer(answer.clone()),
        (Some(v), None) if v == "correct" => Feedback::Correct,
        _ => Feedback::Wrong,
    };
    let model: Arc<dyn LanguageModel> = if a.no_distill {
        Arc::new(NoModel)
    } else {
        open_model(g)?
    };
    let mut reasoner = Reasoner::new(model.as_ref(), None, Some(memory), Policy::default_policy())?;
    let report = reasoner.feedback_with(a.episode, &fb, true, !a.no_distill)?;
    if let Some(note) = &report.note {
        println!("{note}");
    }
    if !report.updated.is_empty() {
        println!(
            "episode {}: {}; updated {}",
            report.episode_id,
            if report.correct { "correct" } else { "wrong" },
            report.updated.join(", ")
        );
    }
    if let Some((kind, text)) = report.distilled {
        println!("distilled {kind:?}:\n{text}");
    }
    Ok(())
}

fn memory(cmd: MemoryCommand) -> Result<()> {
    match cmd {
        MemoryCommand::Stats(m) => {
            let s = open_existing_memory(m.memory.as_ref())?.stats()?;
            println!("memory: {} (schema {})", s.path, s.schema_version);
            println!(
                "episodes: {} ({} graded, {} correct){}",
                s.episodes,
                s.with_outcome,
                s.correct,
                s.id_range
                    .map(|(a, b)| format!(", ids {a}..{b}"))
                    .unwrap_or_default()
            );
            for (d, n) in &s.by_decision {
                println!("  {d:<8} {n}");
            }
            for (st, n, k) in &s.by_strategy {
                println!(
                    "  {st:<17} {k}/{n} correct ({:.0}%)",
                    100.0 * *k as f64 / (*n).max(1) as f64
                );
            }
            println!(
                "meta-buffer: {} templates, {} error notes",
                s.templates, s.error_notes
            );
            println!("learned parameters: {}", s.parameters.join(", "));
        }
        MemoryCommand::Show { episode, memory } => {
            let e = open_existing_memory(memory.memory.as_ref())?.episode(episode)?;
            println!("{}", serde_json::to_string_pretty(&e)?);
        }
        MemoryCommand::List { last, memory } => {
            for e in open_existing_memory(memory.memory.as_ref())?.recent(last)? {
                let r = &e.record;
                let flat = printable(&r.task).replace('\n', " ");
                let mut task: String = flat.chars().take(60).collect();
                if flat.chars().count() > 60 {
                    task.push('…');
                }
                println!(
                    "{:>6}  {}  {:<8} {:<17} {:<12} {:>5} {:<7} {}",
                    e.id,
                    &e.created_at[..19.min(e.created_at.len())],
                    r.decision.name(),
                    r.strategy.map_or("none", |s| s.name()),
                    printable(r.answer.as_deref().unwrap_or("-")),
                    r.confidence.map_or("-".into(), |c| format!("{c:.2}")),
                    match r.outcome {
                        Some(true) => "correct",
                        Some(false) => "wrong",
                        None => "-",
                    },
                    task
                );
            }
        }
        MemoryCommand::Export { file, memory } => {
            let n = open_existing_memory(memory.memory.as_ref())?.export(&file)?;
            println!("wrote {n} records to {}", file.display());
        }
        MemoryCommand::Import { file, memory } => {
            let (e, p, m) = open_memory(memory.memory.as_ref())?.import(&file)?;
            println!("imported {e} episodes, {p} parameters, {m} meta-buffer entries");
        }
        MemoryCommand::Reset {
            parameters,
            yes,
            memory,
        } => {
            if !yes {
                bail!("this deletes every episode{}; add --yes to confirm (export first with `metareason memory export FILE`)",
                    if parameters { " and the learned parameters" } else { "" });
            }
            let mut m = open_memory(memory.memory.as_ref())?;
            m.reset(parameters)?;
            println!("memory at {} reset", m.path().display());
        }
    }
    Ok(())
}

fn policy(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Check { file } => {
            let p = Policy::load(&file)?;
            println!(
                "{}: {} rules; costs: right {} wrong -{} abstain -{} per 1k tokens -{} (answer when confidence >= {:.2})",
                file.display(),
                p.rules.len(),
                p.costs.value_correct,
                p.costs.cost_wrong,
                p.costs.cost_abstain,
                p.costs.cost_per_1k_tokens,
                p.costs.answer_threshold()
            );
            for r in &p.rules {
                println!("  {:<32} {:?} at P >= {:.2}", r.name, r.action, r.threshold);
            }
        }
        PolicyCommand::Default => print!("{}", metareason_awareness::policy::DEFAULT_POLICY),
    }
    Ok(())
}

/// Writes a file whole or not at all (temp file in the same directory, then rename).
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
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
            confidence_floor: None,
        },
    )
    .with_n(a.n as usize);
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
