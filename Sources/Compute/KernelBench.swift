// KernelBench: timings of the int8 kernels (ckernels.h) and of OpenBLAS sgemm on fixed shapes, for
// `ocellus bench kernels`. Owns its buffers; callers see no pointers.
import CKernels
import COpenBLAS
import Foundation

// MARK: - Bench

/// Times the int8 peak, GEMM and GEMV of a kernel variant and OpenBLAS `cblas_sgemm`, reporting
/// the median of `repeats` runs after one warm-up. Not for hot paths: it allocates its buffers.
public final class KernelBench {
    /// Runs timed per figure (the median is reported).
    public let repeats: Int

    /// A bench taking the median of `repeats` runs.
    public init(repeats: Int) {
        precondition(repeats >= 1)
        self.repeats = repeats
    }

    // MARK: - Machine

    /// The CPU's model name from /proc/cpuinfo ("unknown" where there is none).
    public static var cpuModel: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") || line.hasPrefix("Model") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown"
    }

    // MARK: - Figures

    /// The int8 peak of `variant` in GOP/s: its multiply-accumulate instruction in independent
    /// dependent chains, run on every thread of `pool` at once (rates summed).
    public func peakGops(variant: String, pool: WorkerPool) throws -> Double {
        let t = try table(variant)
        let peak = t.pointee.peak!
        // Calibrate to about 20 ms per run on one thread.
        _ = peak(100_000)
        let iters = max(10_000, Int(100_000.0 * 0.02 / max(1e-6, timeOf(peak, 100_000))))
        let threads = pool.threadCount
        let rates = UnsafeMutablePointer<Double>.allocate(capacity: threads)
        defer { rates.deallocate() }
        return median {
            pool.run(threads) { i in rates[i] = peak(iters) }
            return (0..<threads).reduce(0) { $0 + rates[$1] }
        }
    }

    /// int8 GEMM `[m,k]·[n,k]ᵀ` with `variant` on `pool`, kernel only (activations quantized
    /// beforehand), in GOP/s (2·m·k·n operations).
    public func int8GemmGops(m: Int, k: Int, n: Int, variant: String, pool: WorkerPool) throws -> Double {
        let t = try table(variant)
        let p = Int8Problem(m: m, k: k, n: n, copies: 1)
        defer { p.free() }
        p.quantize(t)
        let ops = 2.0 * Double(m) * Double(k) * Double(n)
        return ops / median { timed { p.gemm(t, copy: 0, pool: pool) } } / 1e9
    }

    /// int8 GEMV (one row) over `[n,k]` weights with `variant` on `pool`, in GB/s of weight bytes.
    /// Two weight copies alternate so that a matrix smaller than the last-level cache is not
    /// simply re-read from it.
    public func int8GemvGBps(k: Int, n: Int, variant: String, pool: WorkerPool) throws -> Double {
        let t = try table(variant)
        let p = Int8Problem(m: 1, k: k, n: n, copies: 2)
        defer { p.free() }
        p.quantize(t)
        var copy = 0
        let bytes = Double(Int8Weights.packedBytes(outFeatures: n, inFeatures: k))
        return bytes / median { timed { p.gemm(t, copy: copy, pool: pool); copy ^= 1 } } / 1e9
    }

    /// OpenBLAS `cblas_sgemm` on the same product in fp32 (`y = x·wᵀ`), `threads` OpenBLAS threads,
    /// in GFLOP/s.
    public func sgemmGflops(m: Int, k: Int, n: Int, threads: Int) -> Double {
        openblas_set_num_threads(Int32(threads))
        defer { openblas_set_num_threads(1) }
        let x = alloc(Float.self, m * k), w = alloc(Float.self, n * k), y = alloc(Float.self, m * n)
        defer { Foundation.free(x); Foundation.free(w); Foundation.free(y) }
        var rng: UInt64 = 1
        for i in 0..<(m * k) { x[i] = nextFloat(&rng) }
        for i in 0..<(n * k) { w[i] = nextFloat(&rng) }
        let flops = 2.0 * Double(m) * Double(k) * Double(n)
        return flops / median {
            timed {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                            1, x, Int32(k), w, Int32(k), 0, y, Int32(n))
            }
        } / 1e9
    }

    /// A plain streaming read of `megabytes` of memory split over `pool`, in GB/s: the bandwidth
    /// the GEMV's weight stream competes for at the moment of the run.
    public func memoryReadGBps(megabytes: Int, pool: WorkerPool) -> Double {
        let bytes = megabytes << 20
        let buf = alloc(UInt8.self, bytes)
        defer { Foundation.free(buf) }
        memset(buf, 1, bytes)
        let threads = pool.threadCount, share = (bytes / threads) & ~63
        let sums = UnsafeMutablePointer<UInt64>.allocate(capacity: threads)
        defer { sums.deallocate() }
        let t = median { timed { pool.run(threads) { i in sums[i] = ock_sum_words(buf + i * share, share) } } }
        return Double(share * threads) / t / 1e9
    }

    // MARK: - Helpers

    private func table(_ name: String) throws -> UnsafePointer<ock_kernels> {
        guard let t = Kernels.table(name) else {
            if Kernels.compiled.contains(name) { throw KernelError.unsupportedVariant(name, supported: Kernels.supported) }
            throw KernelError.unknownVariant(name, known: Kernels.compiled)
        }
        return t
    }

    /// One warm-up, then the median of `repeats` values of `body`.
    private func median(_ body: () -> Double) -> Double {
        _ = body()
        var v = (0..<repeats).map { _ in body() }
        v.sort()
        return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
    }

    private func timed(_ body: () -> Void) -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    }

    private func timeOf(_ peak: ock_peak_fn, _ iters: Int) -> Double { timed { _ = peak(iters) } }
}

// MARK: - Buffers

/// Aligned, uninitialised memory for `count` values (freed with `free`).
private func alloc<T>(_: T.Type, _ count: Int) -> UnsafeMutablePointer<T> {
    var p: UnsafeMutableRawPointer?
    precondition(posix_memalign(&p, 64, max(64, count * MemoryLayout<T>.stride)) == 0)
    return p!.bindMemory(to: T.self, capacity: count)
}

/// xorshift64 in [-1, 1).
private func nextFloat(_ s: inout UInt64) -> Float {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17
    return Float(s >> 40) / 8_388_608 - 1
}

/// Random activations and `copies` random packed weight matrices of one int8 product.
private final class Int8Problem {
    let m: Int, k: Int, n: Int
    let x: UnsafeMutablePointer<Float>, qa: UnsafeMutablePointer<Int8>, sa: UnsafeMutablePointer<Float>
    let weights: [UnsafeMutablePointer<Int8>], sw: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>

    init(m: Int, k: Int, n: Int, copies: Int) {
        self.m = m; self.k = k; self.n = n
        x = alloc(Float.self, m * k); qa = alloc(Int8.self, m * k); sa = alloc(Float.self, m)
        sw = alloc(Float.self, n); y = alloc(Float.self, m * n)
        let bytes = Int8Weights.packedBytes(outFeatures: n, inFeatures: k)
        weights = (0..<copies).map { _ in alloc(Int8.self, bytes) }
        var rng: UInt64 = 7
        for i in 0..<(m * k) { x[i] = nextFloat(&rng) }
        for i in 0..<n { sw[i] = 0.01 }
        for w in weights { for i in 0..<bytes { w[i] = Int8(truncatingIfNeeded: Int(nextFloat(&rng) * 127)) } }
    }

    func quantize(_ t: UnsafePointer<ock_kernels>) {
        Kernels.quantize(t, x, ldx: k, k: k, rows: 0..<m, into: qa, ldq: k, scale: sa)
    }

    func gemm(_ t: UnsafePointer<ock_kernels>, copy: Int, pool: WorkerPool) {
        let args = ock_gemm_args(m: m, k: k, n: n, qa: qa, lda: k, sa: sa, qw: weights[copy], sw: sw,
                                 bias: nil, y: y, ldy: n)
        withUnsafePointer(to: args) { a in
            Kernels.gemmSplit(t, a, rows: m, panels: (n + 15) / 16, pool: pool)
        }
    }

    func free() {
        Foundation.free(x); Foundation.free(qa); Foundation.free(sa); Foundation.free(sw); Foundation.free(y)
        for w in weights { Foundation.free(w) }
    }
}
