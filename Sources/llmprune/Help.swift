// Help texts: `llmprune --help` prints the overview, `llmprune COMMAND --help` the command's page. docs/cli.md holds
// every one of them verbatim (Tests/CLITests/HelpTests.swift checks it).
enum Help {
    static let overview = """
    usage: llmprune <command> [flags]          llmprune <command> --help for the command's flags

    commands:
      info      describe a model: architecture, per-layer widths, parameter count
      eval      perplexity under LLM-Pruner's protocol (optionally with a LoRA adapter)
      tokenize  token count and SHA-256 of a dataset's ids
      bench     forward (or gradient-pass) speed
      plan      importance pass → JSON prune plan (nothing is cut)
      apply     cut a model by a plan → Hugging Face directory
      prune     plan + apply in one process, with perplexity before/after
      cluster   the prune job across MPI ranks (`mpiexec -n N llmprune cluster prune`), its status, its memory plan
      tune      LoRA recovery (one process, or data parallel under mpiexec), peft adapter out
      merge     fold a LoRA adapter into the weights → Hugging Face directory
      report    report.html (SVG charts) and summary.json of a run or job directory
      synth     a random-weight Llama of a real shape (70B, 13B, 7B, 3B, 1.1B, 135M), streamed to a sharded directory

    PATH is a .gguf file or a Hugging Face model directory (config.json, safetensors, tokenizer.json).
    Named datasets (wikitext2, ptb, ptb-valid) are read from ../shared/data or $LLMPRUNE_DATA.
    """

    static let pruningFlags = """
      --ratio 0.25                   fraction of each scored layer's attention units and MLP channels to remove
      --criterion element1           element1|element2|param_second|vector|l1|l2|random (LLM-Pruner's)
      --reduction sum                sum|mean|max|prod|first: how a group's element scores combine
      --attention-unit kv-group      kv-group|query-head: the attention unit scored and removed
      --allocation local             local (same ratio per layer) | global (one threshold over all layers)
      --global-normalization P       parameters|layer: score normalisation for global allocation
      --target-params F              with global allocation: keep this fraction of the parameters
      --round-to N                   keep widths a multiple of N (8, 64, 128 …)
      --layers START:END             scored layers (default 4:L-2, as the reference)
      --calib ptb-valid              calibration text: a named dataset or FILE
      --calib-samples 10 --calib-len 64   calibration samples and their length in tokens
      --seed 42
    """

    static let pages: [String: String] = [
        "info": """
        usage: llmprune info --model PATH [--json]
          Architecture, per-layer widths and parameter count of a model.
        """,
        "eval": """
        usage: llmprune eval --model PATH --dataset wikitext2|ptb|ptb-valid|FILE [flags]
          --seq-len 128        window length (non-overlapping windows of the tokenized text)
          --max-windows N      only the first N windows
          --batch 8            windows per forward
          --adapter DIR        a peft LoRA adapter, folded into the weights first
          --threads T --json --quiet
        """,
        "tokenize": """
        usage: llmprune tokenize --model PATH --dataset NAME|FILE [--out ids.bin] [--json]
          Token count and SHA-256 of the ids; --out writes them as little-endian int32.
        """,
        "bench": """
        usage: llmprune bench --model PATH [flags]
          --batch 8 --seq-len 128 --iters 5 --threads T --json
          --gradients [--fisher] --layers START:END    time the gradient pass instead of the forward
        """,
        "plan": """
        usage: llmprune plan --model PATH --plan FILE [pruning flags] [--threads T] [--json] [--quiet] [--force]
          The importance pass: writes the prune plan (kept units, scores, settings, calibration provenance).
        pruning flags:
        \(pruningFlags)
        """,
        "apply": """
        usage: llmprune apply --plan FILE --model PATH --out DIR [--force] [--threads T] [--json]
          Cuts the model by the plan and writes a Hugging Face directory (written aside, then renamed).
        """,
        "prune": """
        usage: llmprune prune --model PATH --out DIR [pruning flags] [flags]
          --plan FILE          where the plan goes (default DIR.plan.json)
          --eval wikitext2,ptb --eval-windows N    perplexity before and after
          --threads T --json --quiet --force
          One process; under mpiexec use `llmprune cluster prune`.
        pruning flags:
        \(pruningFlags)
        """,
        "cluster": """
        usage: mpiexec -n N llmprune cluster prune --model PATH --out DIR [pruning flags] [flags]
               llmprune cluster status JOB_DIR
               llmprune cluster memory --model PATH|--shape NAME [--dtype bf16] --ranks N [job flags] [--json]
          --shard samples|layers      samples: every rank holds the model and takes 1/N of the calibration samples;
                                      layers: every rank holds only its block of layers (models larger than a host)
          --low-memory                with --shard layers: layers stay mapped in their file dtype (bf16/f16) and are
                                      widened to fp32 one at a time; the shards are written in that dtype
          --mem-per-rank SIZE         e.g. 6G: predict each rank's peak before loading anything and refuse a job that
                                      cannot fit (saying what would); picks --low-memory when only that fits.
                                      Enforce it with cluster/mem-budget.sh SIZE -- llmprune … (a cgroup per rank)
          --activation-cache auto     keep the internals of a stage's top layers from the forward sweep so their
                                      backward skips recomputation: auto (the budget's headroom, or 2 GiB), SIZE, 0
          --job-dir DIR               checkpoints, state, trace, report (default DIR.job)
          --resume JOB_DIR            continue a failed job from its last completed phase
          --bind tcp://HOST:PORT      coordinator address (default a free loopback port)
          --heartbeat-interval 1 --heartbeat-timeout 5   seconds; a silent rank is declared lost
          --curve                     encrypt the control plane (ZeroMQ CURVE)
          --micro-batches 1           pipeline micro-batches with --shard layers
          --threads T --json --quiet --force
        pruning flags:
        \(pruningFlags)
        """,
        "tune": """
        usage: llmprune tune --model PATH --data FILE --out DIR [flags]     (under `mpiexec -n N`: data parallel)
          --rank 8 --alpha 16 --dropout 0.05 --targets q,k,v,o,gate,up,down   the adapter (LLM-Pruner's recipe)
          --lr 1e-4 --epochs 2 | --steps N --batch 64 --micro-batch 4 --warmup 100 --weight-decay 0 --max-grad-norm 1
          --cutoff 256 --val-size N (default min(2000, records/10)) --eval-every N --train-on-inputs --seed 42
          --checkpoint-every 10 --job-dir DIR (default DIR.job) --resume JOB_DIR
          --eval wikitext2,ptb --eval-windows N    perplexity before and after tuning
          --bind --heartbeat-interval --heartbeat-timeout --curve   (as cluster prune)
          --threads T --json --quiet --force
          FILE: Alpaca JSON array or JSON Lines of {instruction, input, output}. DIR gets adapter_config.json,
          adapter_model.safetensors (peft), loss.csv and loss.svg.
        """,
        "merge": """
        usage: llmprune merge --model PATH --adapter DIR --out DIR [--force]
          W += (alpha/r)·B·A for every adapted weight; writes a Hugging Face directory.
        """,
        "synth": """
        usage: llmprune synth --shape llama2-70b|llama-13b|llama-7b|llama-3b|tinyllama-1.1b|smollm2-135m|tiny --out DIR [flags]
          --dtype bf16|f16|f32   weights on disk (default bf16)
          --seed 42              a tensor's values depend on the seed and its name only
          --vocab-size N         override the shape's vocabulary
          --shard-size 2048      MB per safetensors shard (tensor granularity)
          --tokenizer PATH|none  whose tokenizer files to copy (default: the default model, when fetched)
          --force --quiet
          Weights N(0, 0.02²), norms 1; generated and written one tensor at a time (never the whole model).
        """,
        "report": """
        usage: llmprune report RUN_DIR
          report.html (inline SVG: kept widths, score distribution per layer, perplexity original/pruned/tuned,
          LoRA loss, time per phase per rank) and summary.json, from the prune job, tune job and baseline.json
          found in RUN_DIR (or RUN_DIR itself being a job directory).
        """,
    ]
}
