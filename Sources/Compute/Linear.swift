// Linear layers: y = x·Wᵀ + b, with fp32 weights (OpenBLAS) or packed int8 weights (CKernels).
import COpenBLAS

// MARK: - Int8 weights

/// Int8 weights of a linear layer in the kernels' packed layout, with one fp32 scale per output
/// channel (symmetric, w ≈ q·scale[n]).
///
/// Layout "panel16x4": N is padded with zero rows to a multiple of 16, K must be a multiple of 4;
/// the byte for (n, k) is at `((n/16)·(K/4) + k/4)·64 + (n%16)·4 + k%4`.
public struct Int8Weights: @unchecked Sendable {
    /// Output features (N, before padding).
    public let outFeatures: Int
    /// Input features (K).
    public let inFeatures: Int
    @usableFromInline let packed: UnsafePointer<Int8>
    @usableFromInline let scales: UnsafePointer<Float>

    /// Bytes of packed weights for `n` outputs and `k` inputs.
    public static func packedBytes(outFeatures n: Int, inFeatures k: Int) -> Int { ((n + 15) / 16) * 16 * k }

    init(outFeatures: Int, inFeatures: Int, packed: UnsafePointer<Int8>, scales: UnsafePointer<Float>) {
        precondition(inFeatures % 4 == 0, "int8 weights need K % 4 == 0, got \(inFeatures)")
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.packed = packed
        self.scales = scales
    }

    /// Offset of (n, k) in the packed layout.
    @inlinable static func offset(n: Int, k: Int, inFeatures: Int) -> Int {
        ((n >> 4) * (inFeatures >> 2) + (k >> 2)) * 64 + (n & 15) * 4 + (k & 3)
    }
}

// MARK: - Context

/// What a forward pass needs besides weights: the worker pool and a scratch arena.
public final class ComputeContext: @unchecked Sendable {
    /// Threads for parallel kernels.
    public let pool: WorkerPool
    /// Scratch for per-call temporaries (quantized activations); reset after each use.
    public let scratch: Arena

    /// A context over `pool` with `scratchBytes` of scratch.
    public init(pool: WorkerPool, scratchBytes: Int) {
        self.pool = pool
        self.scratch = Arena(capacity: scratchBytes)
    }
}

// MARK: - Linear

/// A linear layer `y[M,N] = x[M,K]·Wᵀ + b`.
public struct Linear: @unchecked Sendable {
    /// How the weight matrix is stored.
    public enum Storage: @unchecked Sendable {
        /// fp32 `[N, K]`, row-major (as PyTorch stores `Linear.weight`).
        case fp32(Tensor)
        /// int8 packed, per-output-channel scales.
        case int8(Int8Weights)
    }

    /// The weights.
    public let storage: Storage
    /// Optional bias `[N]`.
    public let bias: Tensor?
    /// N.
    public let outFeatures: Int
    /// K.
    public let inFeatures: Int

    /// A layer over fp32 weights `[N, K]`.
    public init(weight: Tensor, bias: Tensor?) {
        precondition(weight.shape.rank == 2)
        storage = .fp32(weight)
        outFeatures = weight.shape[0]
        inFeatures = weight.shape[1]
        if let b = bias { precondition(b.count == outFeatures) }
        self.bias = bias
    }

    /// A layer over int8 weights.
    public init(int8 w: Int8Weights, bias: Tensor?) {
        storage = .int8(w)
        outFeatures = w.outFeatures
        inFeatures = w.inFeatures
        if let b = bias { precondition(b.count == outFeatures) }
        self.bias = bias
    }

    /// `y = x·Wᵀ + b` for `x` of `[M, K]` (any shape whose last dimension is K) into `y` `[M, N]`.
    public func forward(_ x: Tensor, into y: Tensor, context: ComputeContext) throws {
        let k = inFeatures, n = outFeatures
        precondition(x.count % k == 0, "linear input \(x.shape) is not a multiple of K=\(k)")
        let m = x.count / k
        precondition(y.count == m * n, "linear output \(y.shape) is not [\(m), \(n)]")
        switch storage {
        case .fp32(let w):
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                        1, x.base, Int32(k), w.base, Int32(k), 0, y.base, Int32(n))
            if let b = bias {
                for r in 0..<m { let row = y.base + r * n; for j in 0..<n { row[j] += b.base[j] } }
            }
        case .int8(let w):
            try int8Forward(x.base, m: m, w: w, y: y.base, context: context)
        }
    }

    /// Reference int8 path: per-token symmetric activation quantization, exact int32 dot products.
    private func int8Forward(_ x: UnsafeMutablePointer<Float>, m: Int, w: Int8Weights,
                             y: UnsafeMutablePointer<Float>, context: ComputeContext) throws {
        let k = w.inFeatures, n = w.outFeatures
        let mark = context.scratch.mark()
        defer { context.scratch.reset(to: mark) }
        let qa = try context.scratch.allocateBytes(m * k).bindMemory(to: Int8.self, capacity: m * k)
        let sa = try context.scratch.allocateBytes(m * 4).bindMemory(to: Float.self, capacity: m)
        for r in 0..<m {
            var amax: Float = 0
            for i in 0..<k { amax = max(amax, abs(x[r * k + i])) }
            let s = amax / 127
            sa[r] = s
            let inv: Float = s > 0 ? 1 / s : 0
            for i in 0..<k { qa[r * k + i] = Int8(max(-127, min(127, (x[r * k + i] * inv).rounded()))) }
        }
        let biasBase = bias?.base
        context.pool.parallelFor(n, minChunk: 16) { cols in
            for r in 0..<m {
                for j in cols {
                    var acc: Int32 = 0
                    for i in 0..<k {
                        acc &+= Int32(qa[r * k + i]) * Int32(w.packed[Int8Weights.offset(n: j, k: i, inFeatures: k)])
                    }
                    y[r * n + j] = Float(acc) * sa[r] * w.scales[j] + (biasBase?[j] ?? 0)
                }
            }
        }
    }
}
