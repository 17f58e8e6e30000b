//! Integration tests of the llama.cpp engine on the real SmolLM2-135M model.
//!
//! The model (98 MB) is fetched into the model store on first use. Set
//! `METAREASON_SKIP_MODEL_TESTS=1` to skip these locally; CI never skips.

use std::path::PathBuf;
use std::sync::OnceLock;

use metareason_catalog::{ModelStore, NoProgress, TEST_MODEL};
use metareason_core::{
    FinishReason, GenerateRequest, LanguageModel, ModelError, Prompt, SamplingParams, ScoreRequest,
};
use metareason_llama::{LlamaConfig, LlamaEngine};

fn model_path() -> Option<PathBuf> {
    if std::env::var_os("METAREASON_SKIP_MODEL_TESTS").is_some_and(|v| v == "1") {
        eprintln!("skipped: METAREASON_SKIP_MODEL_TESTS=1");
        return None;
    }
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    Some(
        PATH.get_or_init(|| {
            ModelStore::from_env()
                .ensure(TEST_MODEL, &NoProgress)
                .expect("fetch the test model (needs PyPI)")
        })
        .clone(),
    )
}

fn engine_with(f: impl FnOnce(&mut LlamaConfig)) -> Option<LlamaEngine> {
    let mut config = LlamaConfig::new(model_path()?);
    // One thread per engine: tests run in parallel on few cores.
    config.threads = Some(1);
    config.context_per_sequence = 1024;
    config.sequences = 4;
    f(&mut config);
    Some(LlamaEngine::load(config).expect("load the test model"))
}

fn engine() -> Option<LlamaEngine> {
    engine_with(|_| {})
}

fn params(max_tokens: u32) -> SamplingParams {
    SamplingParams {
        max_tokens,
        top_logprobs: 5,
        ..SamplingParams::default()
    }
}

#[test]
fn logprobs_are_probabilities_and_top_k_is_sorted() {
    let Some(m) = engine() else { return };
    let (seq, usage) = m
        .generate_one(&Prompt::user("Name three colours."), &params(24))
        .unwrap();
    assert!(!seq.tokens.is_empty());
    assert_eq!(usage.generated_tokens, seq.tokens.len() as u64);
    for t in &seq.tokens {
        assert!(t.logprob <= 0.0, "{t:?}");
        assert_eq!(t.top.len(), 5);
        assert!(
            t.top.windows(2).all(|w| w[0].logprob >= w[1].logprob),
            "{t:?}"
        );
        assert!(t.top.iter().all(|a| a.logprob <= 0.0));
        // Greedy: the chosen token is the best alternative, with the same logprob.
        assert_eq!(t.top[0].text, t.text);
        assert!((t.top[0].logprob - t.logprob).abs() < 1e-6);
    }
}

#[test]
fn sampled_token_logprob_equals_its_top_k_entry() {
    let Some(m) = engine() else { return };
    let p = SamplingParams {
        temperature: 1.0,
        top_k: 20,
        top_logprobs: 20,
        seed: 11,
        max_tokens: 24,
        ..SamplingParams::default()
    };
    let (seq, _) = m.generate_one(&Prompt::user("Write a word."), &p).unwrap();
    let mut found = 0;
    for t in &seq.tokens {
        if let Some(alt) = t.top.iter().find(|a| a.text == t.text) {
            assert!((alt.logprob - t.logprob).abs() < 1e-6, "{t:?}");
            found += 1;
        }
    }
    // top_k = top_logprobs = 20: every sampled token is among the reported ones.
    assert_eq!(found, seq.tokens.len());
}

#[test]
fn greedy_decoding_is_deterministic_and_seeded_sampling_reproducible() {
    let Some(m) = engine() else { return };
    let prompt = Prompt::user("Tell me about cats.");
    let a = m.generate_one(&prompt, &params(20)).unwrap().0;
    m.clear_cache().unwrap();
    let b = m.generate_one(&prompt, &params(20)).unwrap().0;
    assert_eq!(a.text, b.text);
    // The cache must not change results: a warm run equals the cold one.
    let c = m.generate_one(&prompt, &params(20)).unwrap().0;
    assert_eq!(a.text, c.text);
    let max_diff = a
        .tokens
        .iter()
        .zip(&c.tokens)
        .map(|(x, y)| (x.logprob - y.logprob).abs())
        .fold(0.0f32, f32::max);
    eprintln!("largest logprob difference, warm against cold cache: {max_diff:e}");
    assert!(max_diff < 1e-3, "{max_diff}");

    let hot = SamplingParams {
        temperature: 0.9,
        seed: 5,
        ..params(20)
    };
    let req = GenerateRequest::new(prompt, hot).with_n(3);
    // Reproducible from the same cache state. (A warm cache may change logits
    // in the last digits, which can flip a sampled token at a near-tie.)
    m.clear_cache().unwrap();
    let s1 = m.generate(&req).unwrap();
    m.clear_cache().unwrap();
    let s2 = m.generate(&req).unwrap();
    let t1: Vec<_> = s1.sequences.iter().map(|s| s.text.clone()).collect();
    let t2: Vec<_> = s2.sequences.iter().map(|s| s.text.clone()).collect();
    assert_eq!(t1, t2);
}

#[test]
fn n_samples_share_one_evaluation_of_the_prompt() {
    let Some(m) = engine() else { return };
    let prompt = Prompt::user("Give me a random fruit name.");
    let one = m.generate_one(&prompt, &params(4)).unwrap().1;
    m.clear_cache().unwrap();
    let p = SamplingParams {
        temperature: 1.0,
        seed: 3,
        ..params(12)
    };
    let g = m
        .generate(&GenerateRequest::new(prompt, p).with_n(4))
        .unwrap();
    assert_eq!(g.sequences.len(), 4);
    // Evaluated once, not four times.
    assert_eq!(g.usage.prompt_tokens, one.prompt_tokens);
    assert_eq!(
        g.usage.generated_tokens,
        g.sequences
            .iter()
            .map(|s| s.tokens.len() as u64)
            .sum::<u64>()
    );
    let distinct: std::collections::HashSet<_> = g.sequences.iter().map(|s| &s.text).collect();
    assert!(
        distinct.len() > 1,
        "samples at temperature 1 all equal: {distinct:?}"
    );
}

#[test]
fn more_samples_than_sequences_run_in_rounds() {
    let Some(m) = engine_with(|c| c.sequences = 2) else {
        return;
    };
    let p = SamplingParams {
        temperature: 1.0,
        seed: 9,
        ..params(6)
    };
    let g = m
        .generate(&GenerateRequest::new(Prompt::user("Hi there"), p).with_n(5))
        .unwrap();
    assert_eq!(g.sequences.len(), 5);
}

#[test]
fn continuation_reuses_the_cached_prefix() {
    let Some(m) = engine() else { return };
    let prompt = Prompt::user("Count from one to ten in words.");
    let (first, u1) = m.generate_one(&prompt, &params(8)).unwrap();
    assert_eq!(u1.cached_prompt_tokens, 0);
    let cont = prompt.clone().with_assistant_prefix(first.text.clone());
    let (_, u2) = m.generate_one(&cont, &params(8)).unwrap();
    // Everything up to the generated text is in the cache already.
    assert!(
        u2.cached_prompt_tokens >= u1.prompt_tokens,
        "reused {} of a {}-token prompt",
        u2.cached_prompt_tokens,
        u1.prompt_tokens
    );
    assert!(u2.prompt_tokens <= 2, "re-evaluated {}", u2.prompt_tokens);
}

#[test]
fn scoring_matches_generation_and_yes_no_is_a_distribution() {
    let Some(m) = engine() else { return };
    let prompt = Prompt::user("Is the sky blue? Answer Yes or No.");
    let (seq, _) = m.generate_one(&prompt, &params(6)).unwrap();
    let scored = m
        .score(&ScoreRequest {
            prompt: prompt.clone(),
            continuation: seq.text.clone(),
            top_logprobs: 3,
        })
        .unwrap();
    // Forcing the greedy text gives back its own log-probabilities.
    assert_eq!(scored.tokens.len(), seq.tokens.len());
    for (s, g) in scored.tokens.iter().zip(&seq.tokens) {
        assert_eq!(s.text, g.text);
        assert!((s.logprob - g.logprob).abs() < 1e-3, "{s:?} vs {g:?}");
    }
    let yes = m
        .score(&ScoreRequest {
            prompt: prompt.clone(),
            continuation: "Yes".into(),
            top_logprobs: 0,
        })
        .unwrap()
        .total_logprob();
    let no = m
        .score(&ScoreRequest {
            prompt: prompt.clone(),
            continuation: "No".into(),
            top_logprobs: 0,
        })
        .unwrap()
        .total_logprob();
    assert!(yes < 0.0 && no < 0.0);
    assert!(yes.exp() + no.exp() <= 1.0 + 1e-6);
    let (p, _) = m.choice_probabilities(&prompt, &["Yes", "No"]).unwrap();
    assert!((p[0] + p[1] - 1.0).abs() < 1e-9);
    assert!((p[0] - yes.exp() / (yes.exp() + no.exp())).abs() < 1e-6);
}

#[test]
fn stop_strings_end_generation_and_are_not_returned() {
    let Some(m) = engine() else { return };
    let p = SamplingParams {
        stop: vec!["\n".into(), ".".into()],
        ..params(64)
    };
    let (seq, _) = m
        .generate_one(&Prompt::user("Write two sentences about dogs."), &p)
        .unwrap();
    assert_eq!(seq.finish_reason, FinishReason::Stop);
    assert!(
        !seq.text.contains('\n') && !seq.text.contains('.'),
        "{:?}",
        seq.text
    );
}

#[test]
fn token_bytes_join_to_the_text_even_for_multibyte_characters() {
    let Some(m) = engine() else { return };
    let (seq, _) = m
        .generate_one(&Prompt::user("Repeat exactly: 日本語 🙂 café"), &params(24))
        .unwrap();
    let bytes: Vec<u8> = seq.tokens.iter().flat_map(|t| t.bytes.clone()).collect();
    assert_eq!(String::from_utf8_lossy(&bytes), seq.text);
}

#[test]
fn bad_requests_and_files_give_clear_errors() {
    let Some(m) = engine_with(|c| c.context_per_sequence = 64) else {
        return;
    };
    let long = "word ".repeat(200);
    match m.generate_one(&Prompt::user(long), &params(4)) {
        Err(ModelError::ContextOverflow {
            prompt_tokens,
            context_length,
        }) => {
            assert!(prompt_tokens > context_length);
            assert_eq!(context_length, 64);
        }
        other => panic!("expected a context overflow, got {other:?}"),
    }
    assert!(matches!(
        m.generate_one(&Prompt::user(""), &params(4)),
        Err(ModelError::InvalidRequest(_))
    ));

    let dir = tempfile::tempdir().unwrap();
    let missing = LlamaEngine::load(LlamaConfig::new(dir.path().join("nope.gguf")));
    assert!(matches!(missing, Err(ModelError::Load(ref s)) if s.contains("nope.gguf")));

    let not_gguf = dir.path().join("text.gguf");
    std::fs::write(&not_gguf, b"hello, I am not a model").unwrap();
    let e = LlamaEngine::load(LlamaConfig::new(&not_gguf))
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a GGUF"), "{e}");

    // A truncated copy of a real model: right magic, missing tensors.
    let full = std::fs::read(model_path().unwrap()).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &full[..full.len() / 3]).unwrap();
    let e = LlamaEngine::load(LlamaConfig::new(&truncated))
        .err()
        .unwrap();
    assert!(matches!(e, ModelError::Load(_)), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn the_model_embeds_texts_as_unit_vectors_that_separate_topics() {
    use metareason_core::embed::dot;
    use metareason_core::Embedder;
    let Some(path) = model_path() else { return };
    let e = metareason_llama::LlamaEmbedder::load(&path, Some(1)).expect("load embedder");
    assert_eq!(e.dim(), 576, "SmolLM2-135M hidden size");
    let v = e
        .embed(&[
            "Tom has 3 apples and buys 4 more apples.",
            "Tom has 3 apples and buys 4 more apples.",
            "Tom had three apples and then bought four more.",
            "",
        ])
        .unwrap();
    assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-4);
    assert!((dot(&v[0], &v[1]) - 1.0).abs() < 1e-4, "deterministic");
    assert!(v[3].iter().all(|x| *x == 0.0) || (dot(&v[3], &v[3]) - 1.0).abs() < 1e-4);
    assert!(dot(&v[0], &v[2]) > 0.5);
}

#[test]
fn the_reply_state_reads_the_request_as_a_chat_turn() {
    use metareason_core::embed::dot;
    use metareason_core::Embedder;
    use metareason_llama::{LlamaEmbedder, Reading};
    let Some(path) = model_path() else { return };
    let state = LlamaEmbedder::load_reading(&path, Some(1), Reading::ReplyState).expect("load");
    let mean = LlamaEmbedder::load(&path, Some(1)).expect("load");
    // The name says the reading, so a classifier fitted on one is never fed the other.
    assert!(
        state.name().starts_with("llama-reply-state:"),
        "{}",
        state.name()
    );
    assert!(mean.name().starts_with("llama-mean:"), "{}", mean.name());
    assert_eq!(state.dim(), 576);
    let request = "How do I stop a cut finger from bleeding?";
    // Longer than the chat window: the end (where the request is) is kept.
    let long = format!(
        "{} {request}",
        "Once upon a time there was a story. ".repeat(200)
    );
    let v = state.embed(&[request, request, long.as_str()]).unwrap();
    assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-4);
    assert!((dot(&v[0], &v[1]) - 1.0).abs() < 1e-4, "deterministic");
    assert!(
        (dot(&v[2], &v[2]) - 1.0).abs() < 1e-4,
        "a long chat is cut, not refused"
    );
    let m = mean.embed_one(request).unwrap();
    assert!(
        dot(&v[0], &m) < 0.99,
        "a different reading of the same text"
    );
}

#[test]
fn inner_layer_states_are_read_in_one_pass_and_named_by_layer() {
    use metareason_core::Embedder;
    use metareason_llama::{LlamaEmbedder, Reading};
    let Some(path) = model_path() else { return };
    let at3 = LlamaEmbedder::load_reading(&path, Some(1), Reading::ReplyStateAt(3)).expect("load");
    assert!(
        at3.name().starts_with("llama-reply-state@3:"),
        "{}",
        at3.name()
    );
    assert_eq!(
        Reading::from_embedder_name(at3.name(), &path),
        Some(Reading::ReplyStateAt(3))
    );
    assert_eq!(
        Reading::from_embedder_name("llama-reply-state@3:another-model", &path),
        None
    );
    // SmolLM2-135M has 30 layers: 30 is past the last.
    let err = LlamaEmbedder::load_reading(&path, Some(1), Reading::ReplyStateAt(30))
        .err()
        .expect("no layer 30");
    assert!(err.to_string().contains("layer 30 does not exist"), "{err}");
    let requests = [
        "How do I stop a cut finger from bleeding?",
        "What is 2 + 2?",
    ];
    let both = at3.reply_states_at(&requests, &[3, 20]).unwrap();
    let alone = at3.embed(&requests).unwrap();
    assert_eq!(both.len(), 2);
    for (i, by_layer) in both.iter().enumerate() {
        assert_eq!(by_layer.len(), 2);
        assert_eq!(by_layer[0].len(), 576);
        // One pass over several layers reads each as a pass of its own.
        assert_eq!(
            by_layer[0], alone[i],
            "text {i}: layer 3 read alone and with 20"
        );
        assert_ne!(by_layer[0], by_layer[1], "layers 3 and 20 differ");
    }
    assert_ne!(both[0][0], both[1][0], "two requests, two states");
    assert!(at3.reply_states_at(&requests, &[31]).is_err());
}

#[test]
fn a_short_request_finishes_while_a_long_one_is_still_decoding() {
    // Continuous batching: the engine decodes the sequences of every
    // request in flight together, so a short request does not queue behind
    // a long one (with one request at a time it would end after it).
    let Some(e) = engine_with(|c| c.context_per_sequence = 2048) else {
        return;
    };
    let e = std::sync::Arc::new(e);
    let long = {
        let e = e.clone();
        std::thread::spawn(move || {
            let mut p = params(600);
            p.ignore_eos = true;
            e.generate_one(&Prompt::user("Tell me a very long story."), &p)
                .unwrap()
                .0
        })
    };
    let short = {
        let e = e.clone();
        std::thread::spawn(move || {
            e.generate(&GenerateRequest::new(Prompt::user("Say hi."), params(4)).with_n(2))
                .unwrap()
        })
    };
    let g = short.join().unwrap();
    assert!(
        !long.is_finished(),
        "the short request waited for the long one"
    );
    assert_eq!(g.sequences.len(), 2);
    assert!(g.sequences.iter().all(|s| s.tokens.len() <= 4));
    let s = long.join().unwrap();
    assert_eq!(s.tokens.len(), 600);
    // And the engine still scores and generates normally afterwards.
    let (alone, _) = e
        .generate_one(&Prompt::user("Say hi."), &params(4))
        .unwrap();
    assert_eq!(alone.text, g.sequences[0].text);
}

#[test]
fn shared_reply_states_serve_each_block_by_name_and_read_a_text_once() {
    use metareason_core::Embedder;
    use metareason_llama::{LlamaEmbedder, Reading, ReplyStates};
    let Some(path) = model_path() else { return };
    let states = ReplyStates::load(&path, Some(1), &[20, 3, 20]).expect("load");
    let views = states.views();
    // Repeats are read once: one view per block, named like a reader of it.
    assert_eq!(views.len(), 2);
    assert_eq!(views[0].layer(), 20);
    assert_eq!(
        Reading::from_embedder_name(views[1].name(), &path),
        Some(Reading::ReplyStateAt(3))
    );
    let at3 = LlamaEmbedder::load_reading(&path, Some(1), Reading::ReplyStateAt(3)).unwrap();
    assert_eq!(views[1].name(), at3.name());
    assert_eq!(views[1].dim(), 576);
    let texts = ["What is the capital of France?", "Who will win in 2040?"];
    let at_3 = views[1].embed(&texts).unwrap();
    assert_eq!(
        at_3,
        at3.embed(&texts).unwrap(),
        "the view reads as the reader"
    );
    assert_eq!(states.texts_read(), 2);
    // The other block of the same texts, and a repeat: nothing read again.
    let at_20 = views[0].embed(&[texts[1], texts[0], texts[1]]).unwrap();
    assert_eq!(states.texts_read(), 2);
    assert_eq!(at_20.len(), 3);
    assert_eq!(at_20[0], at_20[2]);
    assert_ne!(at_20[1], at_3[0], "blocks 20 and 3 differ");
    let both = at3.reply_states_at(&[texts[0]], &[20]).unwrap();
    assert_eq!(at_20[1], both[0][0]);
    // A new text is read once for both blocks.
    views[0].embed(&["What is 2 + 2?"]).unwrap();
    views[1].embed(&["What is 2 + 2?"]).unwrap();
    assert_eq!(states.texts_read(), 3);
    // A block past the last is refused when loading, with the model named.
    let err = ReplyStates::load(&path, Some(1), &[3, 30])
        .err()
        .expect("no layer 30");
    assert!(err.to_string().contains("layer 30 does not exist"), "{err}");
    assert!(ReplyStates::load(&path, Some(1), &[]).is_err());
}
