// Reference speed of llama.cpp itself, through its C API, linked against the
// very libraries llama-cpp-sys-2 built for metareason (same source, same
// flags). It does what llama-bench does: a prompt of N synthetic tokens in
// one batch, then greedy decoding by argmax, then P parallel sequences that
// share the prompt. No sampling chain, no log-softmax: the engine's own speed.
//
//   llama_ref MODEL N_PROMPT N_GEN THREADS REPEATS
// prints one JSON object.
#include "llama.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

static double now() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

static int argmax(const float * l, int n) {
    return int(std::max_element(l, l + n) - l);
}

static void silent(enum ggml_log_level, const char *, void *) {}

int main(int argc, char ** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s MODEL N_PROMPT N_GEN THREADS REPEATS\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    const int n_prompt = atoi(argv[2]), n_gen = atoi(argv[3]), threads = atoi(argv[4]), repeats = atoi(argv[5]);
    llama_log_set(silent, nullptr);
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(path, llama_model_default_params());
    if (!model) { fprintf(stderr, "cannot load %s\n", path); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    auto cp = llama_context_default_params();
    cp.n_ctx = 8 * 1024;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_seq_max = 8;
    cp.kv_unified = true;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create context\n"); return 1; }
    llama_memory_t mem = llama_get_memory(ctx);
    llama_batch batch = llama_batch_init(512, 0, 1);

    auto add = [&](llama_token t, int pos, int seq, bool logits) {
        batch.token[batch.n_tokens] = t;
        batch.pos[batch.n_tokens] = pos;
        batch.n_seq_id[batch.n_tokens] = 1;
        batch.seq_id[batch.n_tokens][0] = seq;
        batch.logits[batch.n_tokens] = logits;
        batch.n_tokens++;
    };
    auto prompt = [&]() {
        llama_memory_clear(mem, true);
        batch.n_tokens = 0;
        for (int i = 0; i < n_prompt; i++) add((i * 7919 + 11) % n_vocab, i, 0, i == n_prompt - 1);
        if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "decode failed\n"); exit(1); }
    };
    // Total tokens/s over `par` sequences decoding n_gen tokens each.
    auto generate = [&](int par) {
        prompt();
        for (int s = 1; s < par; s++) llama_memory_seq_cp(mem, 0, s, -1, -1);
        std::vector<llama_token> next(par, argmax(llama_get_logits_ith(ctx, -1), n_vocab));
        double t0 = now();
        for (int step = 0; step < n_gen; step++) {
            batch.n_tokens = 0;
            for (int s = 0; s < par; s++) add(next[s], n_prompt + step, s, true);
            if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "decode failed\n"); exit(1); }
            for (int s = 0; s < par; s++) next[s] = argmax(llama_get_logits_ith(ctx, s), n_vocab);
        }
        return double(n_gen) * par / (now() - t0);
    };

    prompt();  // warm-up
    std::vector<double> pp, tg1, tg4, tg8;
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        prompt();
        pp.push_back(n_prompt / (now() - t0));
        tg1.push_back(generate(1));
        tg4.push_back(generate(4));
        tg8.push_back(generate(8));
    }
    auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
    printf("{\"prompt_tok_s\": %.2f, \"decode_tok_s_1\": %.2f, \"decode_tok_s_4\": %.2f, \"decode_tok_s_8\": %.2f}\n",
           med(pp), med(tg1), med(tg4), med(tg8));
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
