// swift-tools-version:6.0
// llmprune: structural pruning (LLM-Pruner) and LoRA recovery of Llama-family models, in Swift over
// OpenBLAS, ZeroMQ and MPICH. No outside Swift packages: only the toolchain and Debian C libraries.
import PackageDescription

// A file may use a type's members only if it imports the type's module itself (SE-0444). Without this, members of
// a module loaded only transitively are visible, the build does not track that module for the file, and an
// incremental build can keep an object compiled against an old layout: ClusterTune read BPETokenizer.padId (a
// stored property after an inline SPMModel) at a stale field offset when SPMModel gained a field, and tune trapped.
let memberImports: [SwiftSetting] = [.enableUpcomingFeature("MemberImportVisibility")]

// Release builds target the baseline x86-64 CPU; hot paths go through OpenBLAS, which picks its own kernels.
let swiftSettings: [SwiftSetting] = memberImports + [
    .unsafeFlags(["-Ounchecked"], .when(configuration: .release)),
    // Debug builds (and so `swift test`) still optimise the library code: the real-model tests run the
    // numeric kernels over millions of values. Overflow and bounds checks stay on in debug.
    .unsafeFlags(["-O"], .when(configuration: .debug)),
]
// Numeric modules share raw buffers across `concurrentPerform` workers that write disjoint rows; Swift 6's
// Sendable checking cannot express that, so these modules build in Swift 5 mode.
let kernelSettings: [SwiftSetting] = swiftSettings + [.swiftLanguageMode(.v5)]

let package = Package(
    name: "llmprune",
    products: [
        .executable(name: "llmprune", targets: ["llmprune"]),
        .library(name: "LlamaModel", targets: ["LlamaModel"]),
    ],
    targets: [
        // MARK: C libraries (Debian packages) and the one shim for macros Swift cannot import
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // oneDNN (C API) for the bf16 products of the frozen base (docs/bf16.md: Debian's OpenBLAS has no sbgemm).
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL",
                       providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ",
                       providers: [.apt(["libzmq3-dev"])]),
        // Sealed boxes (crypto_box_seal) for handing each worker the job token under its CURVE key; libzmq's CURVE
        // is built on the same library.
        .systemLibrary(name: "CSodium", path: "Sources/CSodium", pkgConfig: "libsodium",
                       providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "mpich",
                       providers: [.apt(["libmpich-dev", "mpich"])]),
        .target(name: "MPIShim", dependencies: ["CMPI"]),
        .target(name: "ProcessShim"),

        // MARK: library modules, one concern each
        .target(name: "Support", swiftSettings: swiftSettings),
        .target(name: "Formats", dependencies: ["Support"], swiftSettings: swiftSettings),
        .target(name: "Tokenizer", swiftSettings: swiftSettings),
        .target(name: "TensorCore", dependencies: ["CBLAS", "CDNNL"], swiftSettings: kernelSettings),
        .target(name: "LlamaModel", dependencies: ["Support", "Formats", "Tokenizer", "TensorCore"],
                swiftSettings: kernelSettings),
        .target(name: "Eval", dependencies: ["Support", "LlamaModel"], swiftSettings: kernelSettings),
        // Writing models: the Hugging Face directory (whole or sharded, staged and renamed into place) and `synth`.
        .target(name: "ModelExport", dependencies: ["Support", "Formats", "Tokenizer", "LlamaModel"],
                // The trust_remote_code python of heterogeneous outputs, compiled into the binary (RemoteCode.swift).
                resources: [.embedInCode("RemoteCode/configuration_llmprune.py"),
                            .embedInCode("RemoteCode/modeling_llmprune.py")],
                swiftSettings: swiftSettings),
        .target(name: "Pruning", dependencies: ["Support", "Formats", "LlamaModel", "ModelExport", "TensorCore"],
                swiftSettings: kernelSettings),
        .target(name: "LoRA", dependencies: ["Support", "Formats", "Tokenizer", "LlamaModel", "TensorCore"],
                swiftSettings: kernelSettings),
        // Text generation: sampling, the prefill/decode loop over the KV-cached forward, streamed text; and the
        // Jinja subset that renders chat templates.
        .target(name: "ChatTemplate", dependencies: ["Support"], swiftSettings: swiftSettings),
        .target(name: "Generation", dependencies: ["Support", "Tokenizer", "LlamaModel"], swiftSettings: swiftSettings),
        // The cluster runtime (MPI data plane, ZeroMQ control plane, job directory, sessions) and the jobs on it.
        .target(name: "Cluster", dependencies: ["CZeroMQ", "CSodium", "CMPI", "MPIShim", "ProcessShim", "Support"],
                swiftSettings: swiftSettings),
        .target(name: "ClusterPrune", dependencies: ["Cluster", "Support", "Formats", "LlamaModel", "ModelExport", "Pruning"],
                swiftSettings: swiftSettings),
        .target(name: "ClusterTune", dependencies: ["Cluster", "Support", "Formats", "LlamaModel", "LoRA", "ModelExport", "Pruning",
                                                   "TensorCore", "Tokenizer"],
                swiftSettings: swiftSettings),
        .target(name: "Reporting", dependencies: ["Cluster", "ClusterPrune", "ClusterTune", "Support", "LlamaModel", "Pruning"],
                swiftSettings: swiftSettings),

        // MARK: the thin CLI
        .executableTarget(name: "llmprune",
                          dependencies: ["Support", "Formats", "Tokenizer", "TensorCore", "LlamaModel", "Eval", "ModelExport",
                                         "Pruning", "Cluster", "ClusterPrune", "ClusterTune", "LoRA", "Reporting",
                                         "ChatTemplate", "Generation"],
                          swiftSettings: swiftSettings),

        // MARK: tests mirror Sources
        .testTarget(name: "SupportTests", dependencies: ["Support"], swiftSettings: memberImports),
        .testTarget(name: "FormatsTests", dependencies: ["Formats"], exclude: ["Resources"], swiftSettings: memberImports),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "Formats", "Support", "Eval"], exclude: ["Resources"],
                    swiftSettings: memberImports),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore"], exclude: ["Resources"], swiftSettings: memberImports),
        .testTarget(name: "LlamaModelTests", dependencies: ["LlamaModel", "Formats", "TensorCore"], exclude: ["Resources"],
                    swiftSettings: memberImports),
        .testTarget(name: "EvalTests", dependencies: ["Eval", "LlamaModel", "Support", "TensorCore", "Tokenizer"], exclude: ["Resources"],
                    swiftSettings: memberImports),
        .testTarget(name: "ModelExportTests", dependencies: ["ModelExport", "LlamaModel", "Formats", "Tokenizer"], swiftSettings: memberImports),
        .testTarget(name: "PruningTests", dependencies: ["Pruning", "ModelExport", "LlamaModel", "Formats", "Support"],
                    exclude: ["Resources"], swiftSettings: memberImports),
        .testTarget(name: "LoRATests", dependencies: ["LoRA", "LlamaModel", "Formats", "TensorCore", "Tokenizer"],
                    exclude: ["Resources"], swiftSettings: memberImports),
        .testTarget(name: "VariantTests", dependencies: ["LoRA", "Pruning", "LlamaModel", "Formats"],
                    exclude: ["Resources"], swiftSettings: memberImports),
        .testTarget(name: "ClusterTests", dependencies: ["CMPI", "CZeroMQ", "Cluster", "ClusterPrune", "LlamaModel",
                                                         "ModelExport", "Pruning", "TensorCore"], swiftSettings: memberImports),
        .testTarget(name: "CLITests", dependencies: ["Formats"], swiftSettings: memberImports),
        .testTarget(name: "ChatTemplateTests", dependencies: ["ChatTemplate"], exclude: ["Resources"],
                    swiftSettings: memberImports),
        .testTarget(name: "GenerationTests", dependencies: ["Generation", "LlamaModel", "Tokenizer"],
                    exclude: ["Resources"], swiftSettings: memberImports),
    ]
)
