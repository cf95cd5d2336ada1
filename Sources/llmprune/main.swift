// llmprune: a thin command line over the library modules. Each subcommand parses flags, calls the library
// and prints; errors become one line on stderr and a non-zero exit.
import Cluster
import Foundation

let usage = """
usage: llmprune <command> [flags]

commands:
  info      --model PATH [--json]                      architecture, per-layer widths, parameter count
  eval      --model PATH --dataset wikitext2|ptb|ptb-valid|FILE [--seq-len 128] [--max-windows N] [--adapter DIR]
            [--batch 8] [--threads T] [--json] [--quiet]   perplexity (LLM-Pruner protocol)
  tokenize  --model PATH --dataset NAME|FILE [--out ids.bin] [--json]   token count and SHA-256 of the ids
  plan      --model PATH --plan FILE [pruning flags]        importance pass → prune plan (nothing is cut)
  apply     --plan FILE --model PATH --out DIR [--force]     cut a model by a plan, write a HF directory
  prune     --model PATH --out DIR [pruning flags] [--eval wikitext2,ptb] [--eval-windows N] [--force]
            pruning flags: --ratio 0.25 --criterion element1|element2|param_second|vector|l1|l2|random
            --reduction sum|mean|max|prod|first --attention-unit kv-group|query-head --allocation local|global
            --target-params F --round-to 8|64|128 --layers START:END --calib ptb-valid|FILE --calib-samples 10
            --calib-len 64 --seed 42 --global-normalization parameters|layer
  cluster prune  --model PATH --out DIR [pruning flags] [--shard samples|layers] [--job-dir DIR]
            [--resume DIR] [--bind tcp://HOST:PORT] [--heartbeat-interval 1] [--heartbeat-timeout 5] [--curve]
            [--json] [--quiet] [--force]      under `mpiexec -n N`: the prune job across N ranks (docs/cluster.md)
  cluster status JOB_DIR                      phases done, attempts, how the last one ended
  tune      --model PATH --data ALPACA.json --out DIR [--epochs 2 | --steps N] [--batch 64] [--lr 1e-4]
            [--rank 8 --alpha 16 --dropout 0.05] [--checkpoint-every 10] [--resume JOB] [--eval wikitext2,ptb]
            LoRA recovery (peft adapter); under `mpiexec -n N` data parallel   (llmprune tune --help)
  merge     --model PATH --adapter DIR --out DIR      fold a LoRA adapter into the weights (HF directory)
  report    RUN_DIR                                   report.html (SVG charts) + summary.json of a run or job dir
  bench     --model PATH [--batch 8] [--seq-len 128] [--iters 5] [--threads T] [--json]   forward speed

PATH is a .gguf file or a Hugging Face model directory (config.json, safetensors, tokenizer.json).
"""

func fail(_ message: String, code: Int32) -> Never {
    let world = Communicator.world
    let rank = world.size > 1 ? "[rank \(world.rank)] " : ""
    FileHandle.standardError.write("llmprune: error: \(rank)\(message)\n".data(using: .utf8)!)
    world.abort(code: code)   // under mpiexec, take the other ranks down too rather than leave them waiting
}

var argv = Array(CommandLine.arguments.dropFirst())
guard let command = argv.first else {
    print(usage)
    exit(2)
}
argv.removeFirst()
do {
    switch command {
    case "info": try InfoCommand.run(argv)
    case "eval": try EvalCommand.run(argv)
    case "tokenize": try TokenizeCommand.run(argv)
    case "bench": try BenchCommand.run(argv)
    case "plan": try PruneCommand.plan(argv)
    case "apply": try PruneCommand.apply(argv)
    case "prune": try PruneCommand.prune(argv)
    case "cluster": try ClusterCommand.run(argv)
    case "report": try ReportCommand.run(argv)
    case "tune", "merge": try TuneCommand.run(command, argv)
    case "help", "--help", "-h": print(usage)
    default: throw UsageError("unknown command \"\(command)\" (try: llmprune help)")
    }
    Communicator.world.finalize()
} catch let e as UsageError {
    fail(e.description, code: 2)
} catch {
    fail(String(describing: error), code: 1)
}
