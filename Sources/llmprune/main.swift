// llmprune: a thin command line over the library modules. Each subcommand parses flags, calls the library
// and prints; errors become one line on stderr and a non-zero exit.
import Cluster
import ClusterPrune
import Foundation
import Pruning
import Support
import TensorCore


func fail(_ message: String, code: Int32) -> Never {
    let world = Communicator.world
    let rank = world.size > 1 ? "[rank \(world.rank)] " : ""
    FileHandle.standardError.write("llmprune: error: \(rank)\(message)\n".data(using: .utf8)!)
    world.abort(code: code)   // under mpiexec, take the other ranks down too rather than leave them waiting
}

var argv = Array(CommandLine.arguments.dropFirst())
OpenMPWaitPolicy.ensurePassive(argv)
BLAS.shortenIdleSpin()
guard let command = argv.first else {
    print(Help.overview)
    exit(2)
}
argv.removeFirst()
if argv.contains("--help") || argv.contains("-h"), let page = Help.pages[command] {
    print(page)
    exit(0)
}
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
    case "synth": try SynthCommand.run(argv)
    case "export": try ExportCommand.run(argv)
    case "tune", "merge": try TuneCommand.run(command, argv)
    case "generate": try GenerateCommand.run(argv)
    case "help", "--help", "-h": print(Help.overview)
    default: throw UsageError("unknown command \"\(command)\" (try: llmprune help)")
    }
    Communicator.world.finalize()
} catch let e as MemoryBudgetError {
    // Every rank reaches the same verdict from the same headers: one line from rank 0, a clean exit everywhere.
    if Communicator.world.rank == 0 { FileHandle.standardError.write("llmprune: error: \(e.message)\n".data(using: .utf8)!) }
    Communicator.world.finalize()
    exit(2)
} catch let e as UsageError {
    fail(e.description, code: 2)
} catch PruneError.setting(let setting, let reason) {
    fail("--\(PruningFlags.flagName(for: setting)): \(reason)", code: 2)
} catch {
    // File-system failures (disk full, read-only, no permission) as one plain line naming the path.
    fail(SystemError.from(error).map(String.init(describing:)) ?? String(describing: error), code: 1)
}
