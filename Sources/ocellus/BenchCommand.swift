// `ocellus bench`: benchmarks by hand. `bench kernels` times the int8 kernels against their peak and
// against OpenBLAS fp32 on the shapes Florence-2 uses (issue 2).
import ArgumentParser
import Compute
import Foundation

// MARK: - bench

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark parts of the engine.",
        subcommands: [BenchKernelsCommand.self, BenchAccuracyCommand.self]
    )
}

// MARK: - bench kernels

struct BenchKernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Time the int8 kernels (peak, GEMM, GEMV) and OpenBLAS sgemm, on 1 thread and on all threads."
    )

    @Flag(name: .long, help: "Print one JSON object instead of the table.")
    var json = false

    @Option(name: .long, help: "Threads for the all-threads figures (default: every online core).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .customLong("repeat"), help: "Timed runs per figure; the median is reported (after one warm-up).")
    var repeats: Int = 7

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1") }
    }

    func run() throws {
        let report = try KernelsReport.measure(threads: threads, repeats: repeats)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(report), as: UTF8.self))
        } else {
            print(report.table)
        }
    }
}

// MARK: - Report

/// Every figure of one `bench kernels` run (JSON keys are the property names, snake case).
struct KernelsReport: Encodable {
    static let gemmShape = (m: 577, k: 768, n: 3072)   // DaViT stage / BART FFN: tokens x d x 4d
    static let gemmShape2 = (m: 2304, k: 128, n: 512)  // DaViT stage 1 MLP: 48x48 tokens x 128 x 512
    static let gemvShape = (k: 768, n: 51289)          // LM head: d x vocabulary

    var variant = "", cpuModel = "", threads = 1, repeats = 1
    var peakInt8Gops1t = 0.0, peakInt8Gops = 0.0
    var int8GemmGops1t = 0.0, int8GemmGops = 0.0
    var int8Gemm2Gops1t = 0.0, int8Gemm2Gops = 0.0
    var avx2GemmGops1t: Double?, avx2GemmGops: Double?
    var sgemmGflops1t = 0.0, sgemmGflops = 0.0
    var sgemm2Gflops1t = 0.0, sgemm2Gflops = 0.0
    var int8GemvGbps1t = 0.0, int8GemvGbps = 0.0
    var memoryReadGbps1t = 0.0, memoryReadGbps = 0.0
    var gemmOverPeak1t = 0.0, gemmOverPeak = 0.0
    var gemmOverSgemm1t = 0.0, gemmOverSgemm = 0.0
    var seconds = 0.0

    enum CodingKeys: String, CodingKey {
        case variant, cpuModel = "cpu_model", threads, repeats
        case peakInt8Gops1t = "peak_int8_gops_1t", peakInt8Gops = "peak_int8_gops"
        case int8GemmGops1t = "int8_gemm_gops_1t", int8GemmGops = "int8_gemm_gops"
        case int8Gemm2Gops1t = "int8_gemm_2304x128x512_gops_1t", int8Gemm2Gops = "int8_gemm_2304x128x512_gops"
        case avx2GemmGops1t = "avx2_gemm_gops_1t", avx2GemmGops = "avx2_gemm_gops"
        case sgemmGflops1t = "sgemm_gflops_1t", sgemmGflops = "sgemm_gflops"
        case sgemm2Gflops1t = "sgemm_2304x128x512_gflops_1t", sgemm2Gflops = "sgemm_2304x128x512_gflops"
        case int8GemvGbps1t = "int8_gemv_gbps_1t", int8GemvGbps = "int8_gemv_gbps"
        case memoryReadGbps1t = "memory_read_gbps_1t", memoryReadGbps = "memory_read_gbps"
        case gemmOverPeak1t = "gemm_over_peak_1t", gemmOverPeak = "gemm_over_peak"
        case gemmOverSgemm1t = "gemm_over_sgemm_1t", gemmOverSgemm = "gemm_over_sgemm"
        case seconds
    }

    /// Runs every measurement: int8 first (OpenBLAS threads may spin for a while after a call).
    static func measure(threads: Int, repeats: Int) throws -> KernelsReport {
        let start = Date()
        var r = KernelsReport()
        r.variant = Kernels.variant
        r.cpuModel = KernelBench.cpuModel
        r.threads = threads
        r.repeats = repeats
        let bench = KernelBench(repeats: repeats)
        let one = WorkerPool(threads: 1), all = WorkerPool(threads: threads)
        let (m, k, n) = gemmShape, (m2, k2, n2) = gemmShape2
        r.peakInt8Gops1t = try bench.peakGops(variant: r.variant, pool: one)
        r.peakInt8Gops = try bench.peakGops(variant: r.variant, pool: all)
        r.int8GemmGops1t = try bench.int8GemmGops(m: m, k: k, n: n, variant: r.variant, pool: one)
        r.int8GemmGops = try bench.int8GemmGops(m: m, k: k, n: n, variant: r.variant, pool: all)
        r.int8Gemm2Gops1t = try bench.int8GemmGops(m: m2, k: k2, n: n2, variant: r.variant, pool: one)
        r.int8Gemm2Gops = try bench.int8GemmGops(m: m2, k: k2, n: n2, variant: r.variant, pool: all)
        if r.variant == "avx512vnni", Kernels.supported.contains("avx2") {
            r.avx2GemmGops1t = try bench.int8GemmGops(m: m, k: k, n: n, variant: "avx2", pool: one)
            r.avx2GemmGops = try bench.int8GemmGops(m: m, k: k, n: n, variant: "avx2", pool: all)
        }
        r.int8GemvGbps1t = try bench.int8GemvGBps(k: gemvShape.k, n: gemvShape.n, variant: r.variant, pool: one)
        r.int8GemvGbps = try bench.int8GemvGBps(k: gemvShape.k, n: gemvShape.n, variant: r.variant, pool: all)
        r.memoryReadGbps1t = bench.memoryReadGBps(megabytes: 256, pool: one)
        r.memoryReadGbps = bench.memoryReadGBps(megabytes: 256, pool: all)
        r.sgemmGflops1t = bench.sgemmGflops(m: m, k: k, n: n, threads: 1)
        r.sgemmGflops = bench.sgemmGflops(m: m, k: k, n: n, threads: threads)
        r.sgemm2Gflops1t = bench.sgemmGflops(m: m2, k: k2, n: n2, threads: 1)
        r.sgemm2Gflops = bench.sgemmGflops(m: m2, k: k2, n: n2, threads: threads)
        r.gemmOverPeak1t = r.int8GemmGops1t / r.peakInt8Gops1t
        r.gemmOverPeak = r.int8GemmGops / r.peakInt8Gops
        r.gemmOverSgemm1t = r.int8GemmGops1t / r.sgemmGflops1t
        r.gemmOverSgemm = r.int8GemmGops / r.sgemmGflops
        r.seconds = Date().timeIntervalSince(start)
        return r
    }

    /// The human-readable table.
    var table: String {
        func f(_ v: Double) -> String { String(format: "%9.1f", v) }
        func pct(_ v: Double) -> String { String(format: "%5.0f %%", v * 100) }
        func x(_ v: Double) -> String { String(format: "%6.2fx", v) }
        let all = "\(threads) thread\(threads == 1 ? "" : "s")"
        var lines = [
            "int8 kernels: \(variant) on \(cpuModel); median of \(repeats) runs after a warm-up",
            "".padding(toLength: 44, withPad: " ", startingAt: 0) + "   1 thread" + "  " + all,
            row("int8 peak (dependent chains)      GOP/s", f(peakInt8Gops1t), f(peakInt8Gops)),
            row("int8 GEMM 577x768x3072            GOP/s", f(int8GemmGops1t), f(int8GemmGops)),
            row("  of the int8 peak", pct(gemmOverPeak1t), pct(gemmOverPeak)),
            row("sgemm fp32 OpenBLAS 577x768x3072 GFLOP/s", f(sgemmGflops1t), f(sgemmGflops)),
            row("  int8 GEMM / sgemm", x(gemmOverSgemm1t), x(gemmOverSgemm)),
            row("int8 GEMM 2304x128x512            GOP/s", f(int8Gemm2Gops1t), f(int8Gemm2Gops)),
            row("sgemm fp32 OpenBLAS 2304x128x512 GFLOP/s", f(sgemm2Gflops1t), f(sgemm2Gflops)),
        ]
        if let a1 = avx2GemmGops1t, let a = avx2GemmGops {
            lines.append(row("avx2 int8 GEMM 577x768x3072       GOP/s", f(a1), f(a)))
        }
        lines.append(row("int8 GEMV 768x51289 (weights)     GB/s", f(int8GemvGbps1t), f(int8GemvGbps)))
        lines.append(row("  plain memory read, 256 MiB      GB/s", f(memoryReadGbps1t), f(memoryReadGbps)))
        lines.append(String(format: "(%.1f s; GEMM figures are the kernel alone, activations quantized beforehand)", seconds))
        return lines.joined(separator: "\n")
    }

    private func row(_ label: String, _ a: String, _ b: String) -> String {
        label.padding(toLength: 44, withPad: " ", startingAt: 0) + a.leftPad(11) + b.leftPad(11)
    }
}

private extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
