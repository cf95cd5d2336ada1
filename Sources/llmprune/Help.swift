// Help texts: `llmprune --help` prints the overview, `llmprune COMMAND --help` the command's page. The pages of
// commands with flag tables (Flags.swift) print those tables, values shown being the defaults. docs/cli.md holds
// every page verbatim (Tests/CLITests/HelpTests.swift checks it).
import ModelExport

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
      generate  text from a prompt or a chat message (KV cache; greedy or sampled; optional LoRA adapter)
      report    report.html (SVG charts) and summary.json of a run or job directory
      synth     a random-weight model of a real shape and config (Llama-2/3.x, Mistral, TinyLlama, SmolLM2), streamed
      export    one GGUF file for llama.cpp (llama, or deci for per-layer widths; qwen2; smollm3), streamed

    PATH is a .gguf file or a Hugging Face model directory (config.json, safetensors, tokenizer.json).
    Named datasets (wikitext2, ptb, ptb-valid) are read from ../shared/data or $LLMPRUNE_DATA.
    """

    static let pages: [String: String] = [
        "info": """
        usage: llmprune info --model PATH [--json]
          Architecture, per-layer widths and parameter count of a model.
        """,
        "eval": EvalCommand.flags.help(
            usage: "usage: llmprune eval --model PATH --dataset wikitext2|ptb|ptb-valid|FILE [flags]",
            about: "  Perplexity under LLM-Pruner's protocol."),
        "tokenize": """
        usage: llmprune tokenize --model PATH --dataset NAME|FILE [--out ids.bin] [--json]
          Token count and SHA-256 of the ids; --out writes them as little-endian int32.
        """,
        "bench": BenchCommand.flags.help(
            usage: "usage: llmprune bench --model PATH [flags]",
            about: "  Forward (or gradient-pass) speed at a fixed batch geometry."),
        "plan": PruneCommand.planFlags.help(
            usage: "usage: llmprune plan --model PATH --plan FILE [pruning flags] [calibration flags] [flags]",
            about: "  The importance pass: writes the prune plan (kept units, scores, settings, calibration provenance)."),
        "apply": PruneCommand.applyFlags.help(
            usage: "usage: llmprune apply --plan FILE --model PATH --out DIR [flags]",
            about: "  Cuts the model by the plan and writes a Hugging Face directory (written aside, then renamed)."),
        "prune": PruneCommand.pruneFlags.help(
            usage: "usage: llmprune prune --model PATH --out DIR [pruning flags] [calibration flags] [flags]",
            about: "  Plan and apply in one process; under mpiexec use `llmprune cluster prune`."),
        "cluster": ClusterCommand.pruneFlags.help(
            usage: """
            usage: mpiexec -n N llmprune cluster prune --model PATH --out DIR [flags]
                   llmprune cluster status JOB_DIR
                   llmprune cluster memory --model PATH|--shape NAME --ranks N [flags]
            """,
            about: """
              prune: the prune job across MPI ranks, resumable from its job directory.
              memory: the memory plan of such a job, from headers only: each rank's predicted peak, and whether
              --mem-per-rank fits. It takes the pruning, calibration and job flags of prune, with the same defaults.
            """, ownTitle: "cluster prune flags")
            + "\n" + FlagGroup(title: "cluster memory flags", flags: MemoryCommand.flags.own).help,
        "tune": TuneCommand.tuneFlags.help(
            usage: "usage: llmprune tune --model PATH --data FILE --out DIR [flags]     (under `mpiexec -n N`: data parallel)",
            about: "  LoRA recovery (LLM-Pruner's recipe); writes a peft adapter directory, loss.csv and loss.svg."),
        "merge": TuneCommand.mergeFlags.help(
            usage: "usage: llmprune merge --model PATH --adapter DIR --out DIR [flags]",
            about: "  W += (alpha/r)·B·A for every adapted weight; writes a Hugging Face directory."),
        "generate": GenerateCommand.flags.help(
            usage: "usage: llmprune generate --model PATH (--prompt TEXT | --chat TEXT) [flags]",
            about: """
              Greedy (--temperature 0) or sampled text after the prompt, until an EOS id of the model
              (generation_config.json / config.json eos_token_id) or --max-new-tokens; the text on stdout, prefill
              and decode tokens/s on stderr (or all of it with --json).
            """),
        "synth": """
        usage: llmprune synth --shape \(SyntheticShape.allCases.map(\.rawValue).joined(separator: "|")) --out DIR [flags]
          --dtype bf16|f16|f32   weights on disk (default bf16)
          --seed 42              a tensor's values depend on the seed and its name only
          --vocab-size N         override the shape's vocabulary
          --shard-size 2048      MB per safetensors shard (tensor granularity)
          --tokenizer PATH|none  whose tokenizer files to copy (default: the default model, when fetched)
          --force --quiet
          Weights N(0, 0.02²), norms 1; generated and written one tensor at a time (never the whole model).
        """,
        "export": ExportCommand.flags.help(
            usage: "usage: llmprune export --model PATH --out FILE.gguf [flags]",
            about: """
              The model (a GGUF or a Hugging Face directory, pruned or not) as one GGUF file llama.cpp runs: arch llama
              (deci when layers differ in width; qwen2; smollm3), q/k permuted as llama.cpp's converter does, RoPE
              scaling keys or rope_freqs, the tokenizer and chat template. Written one tensor at a time. What llama.cpp
              cannot compute (sliding windows, dynamic RoPE, …) is refused by name: docs/gguf.md.
            """),
        "report": """
        usage: llmprune report RUN_DIR
          report.html (inline SVG: kept widths, score distribution per layer, perplexity original/pruned/tuned,
          LoRA loss, time per phase per rank) and summary.json, from the prune job, tune job and baseline.json
          found in RUN_DIR (or RUN_DIR itself being a job directory).
        """,
    ]
}
