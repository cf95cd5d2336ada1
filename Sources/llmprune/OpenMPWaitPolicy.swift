// oneDNN (the bf16 products, `--compute bf16`) runs on libgomp, whose idle workers busy-wait after every parallel
// region unless OMP_WAIT_POLICY is passive (GCC libgomp manual, OMP_WAIT_POLICY / GOMP_SPINCOUNT): they then take
// the cores from the OpenBLAS and Dispatch workers of the fp32 work between two bf16 products (docs/bf16.md,
// pitfall 4). libgomp reads the variable once, when it is loaded — before main — so a bf16 run that was not given
// one sets it and re-executes itself once, before anything else (MPI included) has started.
import Foundation

enum OpenMPWaitPolicy {
    /// Re-executes this process with OMP_WAIT_POLICY=PASSIVE when `args` ask for bf16 products and the
    /// environment sets no policy; returns (and runs on as is) if the exec fails.
    static func ensurePassive(_ args: [String]) {
        let bf16 = zip(args, args.dropFirst()).contains { $0 == "--compute" && $1 == "bf16" }
            || args.contains("--compute=bf16")
        guard bf16, ProcessInfo.processInfo.environment["OMP_WAIT_POLICY"] == nil else { return }
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
    }
}
