// Linear layers: y = x·Wᵀ + b, with fp32 weights (OpenBLAS) or packed int8 weights (CKernels),
// mirroring torch.nn.Linear (weight [N, K], PyTorch order) and the converter's int8 storage.
import CKernels
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

    /// Quantizes fp32 weights `[N, K]` (PyTorch `Linear.weight` order) per output channel and packs
    /// them into `arena` (`packedBytes` + `4·N` bytes; the arena must outlive the result).
    /// Rule (ckernels.h): `scale[n] = amax/127`, `q = clamp(round_half_even(w·(127/amax)), ±127)`,
    /// so `|w − q·scale| ≤ scale·(0.5 + 1e-4)` for every element.
    public static func quantizing(_ weight: Tensor, into arena: Arena) throws -> Int8Weights {
        precondition(weight.shape.rank == 2, "int8 weights need [N, K], got \(weight.shape)")
        let n = weight.shape[0], k = weight.shape[1]
        precondition(k % 4 == 0, "int8 weights need K % 4 == 0, got \(k)")
        let packed = try arena.allocateBytes(packedBytes(outFeatures: n, inFeatures: k))
            .bindMemory(to: Int8.self, capacity: packedBytes(outFeatures: n, inFeatures: k))
        let scales = try arena.allocateBytes(n * 4).bindMemory(to: Float.self, capacity: n)
        ock_pack_weights(weight.base, n, k, packed, scales)
        return Int8Weights(outFeatures: n, inFeatures: k, packed: packed, scales: scales)
    }

    /// The residual level of `weight` after `first` (its `quantizing`): `w − q·scale` computed in
    /// fp32, quantized and packed by the same rule, as convert.py writes `.qresidual`/`.rscale`.
    public static func quantizingResidual(of weight: Tensor, after first: Int8Weights, into arena: Arena) throws -> Int8Weights {
        let n = first.outFeatures, k = first.inFeatures
        precondition(weight.shape == Shape(n, k), "residual of \(weight.shape) after [\(n), \(k)]")
        let left = UnsafeMutablePointer<Float>.allocate(capacity: n * k) // not a hot path (tests, tools)
        defer { left.deallocate() }
        for r in 0..<n {
            let s = first.scales[r]
            for c in 0..<k { left[r * k + c] = weight[r * k + c] - Float(first.quantized(r, c)) * s }
        }
        let packed = try arena.allocateBytes(packedBytes(outFeatures: n, inFeatures: k))
            .bindMemory(to: Int8.self, capacity: packedBytes(outFeatures: n, inFeatures: k))
        let scales = try arena.allocateBytes(n * 4).bindMemory(to: Float.self, capacity: n)
        ock_pack_weights(left, n, k, packed, scales)
        return Int8Weights(outFeatures: n, inFeatures: k, packed: packed, scales: scales)
    }

    /// The quantized value q[n, k] (for tests and inspection).
    public func quantized(_ n: Int, _ k: Int) -> Int8 {
        precondition(n >= 0 && n < outFeatures && k >= 0 && k < inFeatures)
        return packed[Int8Weights.offset(n: n, k: k, inFeatures: inFeatures)]
    }

    /// The scale of output channel `n`.
    public func scale(_ n: Int) -> Float {
        precondition(n >= 0 && n < outFeatures)
        return scales[n]
    }
}

// MARK: - Context

/// What a forward pass needs besides weights: the worker pool and a scratch arena.
public final class ComputeContext: @unchecked Sendable {
    /// Threads for parallel kernels.
    public let pool: WorkerPool
    /// Scratch for per-call temporaries (quantized activations); reset after each use.
    public let scratch: Arena

    /// A context over `pool` with `scratchBytes` of scratch. The engine parallelizes over its own
    /// pool and calls OpenBLAS from the pool's threads, so this sets OpenBLAS to one thread.
    public init(pool: WorkerPool, scratchBytes: Int) {
        self.pool = pool
        self.scratch = Arena(capacity: scratchBytes)
        openblas_set_num_threads(1)
    }
}

// MARK: - Linear

/// Output columns `range` of an fp32 linear: `y[:, range] = x·W[range]ᵀ + b[range]`.
private struct Fp32Columns: RangeTask {
    let x: UnsafeMutablePointer<Float>, w: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>?
    let y: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int
    func callAsFunction(_ r: Range<Int>) {
        let n0 = r.lowerBound, cols = r.count
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(cols), Int32(k),
                    1, x, Int32(k), w + n0 * k, Int32(k), 0, y + n0, Int32(n))
        if let b {
            for row in 0..<m {
                let yr = y + row * n + n0
                for j in 0..<cols { yr[j] += b[n0 + j] }
            }
        }
    }
}

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
    /// int8 only: a second int8 level holding what the first leaves, `w − q·scale`, quantized by
    /// the same rule (FORMAT.md "Weights"), so `w ≈ q·scale + r·rscale`. See
    /// `addResidualProduct` and `fewRowsResidualForward` for how it runs.
    public let residual: Int8Weights?
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
        residual = nil
        outFeatures = weight.shape[0]
        inFeatures = weight.shape[1]
        if let b = bias { precondition(b.count == outFeatures) }
        self.bias = bias
    }

    /// A layer over int8 weights, optionally with a residual level of the same shape.
    public init(int8 w: Int8Weights, residual r: Int8Weights? = nil, bias: Tensor?) {
        if let r { precondition(r.outFeatures == w.outFeatures && r.inFeatures == w.inFeatures, "residual shape differs") }
        storage = .int8(w)
        residual = r
        outFeatures = w.outFeatures
        inFeatures = w.inFeatures
        if let b = bias { precondition(b.count == outFeatures) }
        self.bias = bias
    }

    /// Scratch bytes one int8 `forward` of `rows` rows of `inFeatures` takes (quantized
    /// activations and row scales); fp32 layers take none. A layer with a residual level takes
    /// `residualScratchBytes` more.
    public static func scratchBytes(rows m: Int, inFeatures k: Int) -> Int {
        Arena.aligned(m * k) + Arena.aligned(m * MemoryLayout<Float>.stride)
    }

    /// Up to this many rows a residual layer also splits its activations in two levels.
    public static let activationResidualMaxRows = 4

    /// Rows of a residual layer's second-level products computed at a time (their outputs go to
    /// scratch, then are added to y).
    public static let residualChunkRows = 64

    /// Extra scratch of a layer with a residual level for `rows` rows. Many rows: the residual
    /// product's output for a chunk of `residualChunkRows`. Few rows: room for the second activation
    /// level (rows and scales), the activations' own residual in fp32 and the first-level weights'
    /// product over both levels.
    public static func residualScratchBytes(rows m: Int, inFeatures k: Int, outFeatures n: Int) -> Int {
        if m > activationResidualMaxRows { return Arena.aligned(min(m, residualChunkRows) * n * MemoryLayout<Float>.stride) }
        return scratchBytes(rows: 2 * m, inFeatures: k) - scratchBytes(rows: m, inFeatures: k)
            + Arena.aligned(m * k * MemoryLayout<Float>.stride) + Arena.aligned(2 * m * n * MemoryLayout<Float>.stride)
    }

    /// `y = x·Wᵀ + b` for `x` of `[M, K]` (any shape whose last dimension is K) into `y` `[M, N]`.
    public func forward(_ x: Tensor, into y: Tensor, context: ComputeContext) throws {
        let k = inFeatures, n = outFeatures
        precondition(x.count % k == 0, "linear input \(x.shape) is not a multiple of K=\(k)")
        let m = x.count / k
        precondition(y.count == m * n, "linear output \(y.shape) is not [\(m), \(n)]")
        switch storage {
        case .fp32(let w):
            // OpenBLAS runs single-threaded under the engine: split the outputs over the pool
            // (at least 64 columns a piece), each piece one sgemm plus its bias.
            let task = Fp32Columns(x: x.base, w: w.base, b: bias?.base, y: y.base, m: m, n: n, k: k)
            context.pool.parallelFor(n, minChunk: 64, task)
        case .int8(let w):
            try int8Forward(x.base, m: m, w: w, y: y.base, context: context)
        }
    }

    /// The input row `id` of the weight matrix as a vector of K (the tied token embedding is stored
    /// as a linear `[V, d]`): int8 rows are dequantized (`q·scale[id]`), fp32 rows copied.
    public func embeddingRow(_ id: Int, into out: Tensor) {
        precondition(id >= 0 && id < outFeatures, "embedding id \(id) out of 0..<\(outFeatures)")
        precondition(out.count == inFeatures, "embedding row is \(inFeatures) values, output is \(out.shape)")
        switch storage {
        case .fp32(let w):
            out.base.update(from: w.base + id * inFeatures, count: inFeatures)
        case .int8(let w):
            Self.dequantizeRow(w, id, into: out.base, adding: false)
            if let r = residual { Self.dequantizeRow(r, id, into: out.base, adding: true) }
        }
    }

    /// Row `id` of `w` dequantized (`q·scale[id]`) into `dst`, or added to it.
    private static func dequantizeRow(_ w: Int8Weights, _ id: Int, into dst: UnsafeMutablePointer<Float>, adding: Bool) {
        let s = w.scales[id], k = w.inFeatures
        // Row `id` is 4 bytes at the start of every 64-byte group of its panel.
        let row = w.packed + (id >> 4) * (k * 16) + (id & 15) * 4
        for g in 0..<(k >> 2) {
            let src = row + g * 64, d = dst + g * 4
            for j in 0..<4 { d[j] = adding ? d[j] + Float(src[j]) * s : Float(src[j]) * s }
        }
    }

    /// int8 path: per-token activation quantization into the scratch arena, then the active
    /// kernel's GEMM (GEMV for few rows), split over the pool by output panels (or rows).
    private func int8Forward(_ x: UnsafeMutablePointer<Float>, m: Int, w: Int8Weights,
                             y: UnsafeMutablePointer<Float>, context: ComputeContext) throws {
        let k = w.inFeatures, n = w.outFeatures
        let t = Kernels.active
        let mark = context.scratch.mark()
        defer { context.scratch.reset(to: mark) }
        // A residual layer's few-row path quantizes a second activation level into rows m..<2m.
        let levels = residual != nil && m <= Linear.activationResidualMaxRows ? 2 : 1
        let qa = try context.scratch.allocateBytes(levels * m * k).bindMemory(to: Int8.self, capacity: levels * m * k)
        let sa = try context.scratch.allocateBytes(levels * m * 4).bindMemory(to: Float.self, capacity: levels * m)
        if m >= 32 && context.pool.threadCount > 1 {
            context.pool.parallelFor(m, minChunk: 16, Kernels.QuantizeRows(t: t, x: x, k: k, q: qa, scale: sa))
        } else {
            Kernels.quantize(t, x, ldx: k, k: k, rows: 0..<m, into: qa, ldq: k, scale: sa)
        }
        if let r = residual, levels == 2 {
            return try fewRowsResidualForward(x, m: m, w: w, r: r, qa: qa, sa: sa, y: y, context: context)
        }
        let args = ock_gemm_args(m: m, k: k, n: n, qa: qa, lda: k, sa: sa, qw: w.packed, sw: w.scales,
                                 bias: bias.map { UnsafePointer($0.base) }, y: y, ldy: n)
        withUnsafePointer(to: args) { a in
            Kernels.gemmSplit(t, a, rows: m, panels: (n + 15) / 16, pool: context.pool)
        }
        if let r = residual { try addResidualProduct(r, m: m, qa: qa, sa: sa, y: y, context: context) }
    }

    /// Many rows of a residual layer (the encoder: bound by arithmetic, where a second activation
    /// level would cost a whole third product for no measured gain in agreement): after
    /// `y = W·qa + b`, adds `R·qa`, the weights' residual level under the same activations, through
    /// scratch `residualChunkRows` rows at a time. Exact weights, first-level activations.
    private func addResidualProduct(_ r: Int8Weights, m: Int, qa: UnsafeMutablePointer<Int8>, sa: UnsafeMutablePointer<Float>,
                                    y: UnsafeMutablePointer<Float>, context: ComputeContext) throws {
        let k = r.inFeatures, n = r.outFeatures, t = Kernels.active
        let chunk = min(m, Linear.residualChunkRows)
        let yr = try context.scratch.allocateBytes(chunk * n * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: chunk * n)
        var r0 = 0
        while r0 < m {
            let rows = min(chunk, m - r0)
            let underR = ock_gemm_args(m: rows, k: k, n: n, qa: qa + r0 * k, lda: k, sa: sa + r0, qw: r.packed, sw: r.scales,
                                       bias: nil, y: yr, ldy: n)
            withUnsafePointer(to: underR) { Kernels.gemmSplit(t, $0, rows: rows, panels: (n + 15) / 16, pool: context.pool) }
            Ops.addInPlace(Tensor(base: y + r0 * n, shape: Shape(rows * n)), Tensor(base: yr, shape: Shape(rows * n)), context: context)
            r0 += rows
        }
    }

    /// Few rows of a residual layer (decoder steps, beams: the product is bound by the weight
    /// stream): the activations' own rounding error `x − q·sa` is quantized per token (qa₂, sa₂)
    /// like the first level, and `y = W·[qa; qa₂] (summed per row) + R·qa + b`: the first-level
    /// weights W under both activation levels in one product of twice the rows (W streamed once),
    /// the weights' residual level R under the first-level activations (R·qa₂ is below both
    /// levels' rounding and left out); what remains is about 1/250 of either level's rounding.
    private func fewRowsResidualForward(_ x: UnsafeMutablePointer<Float>, m: Int, w: Int8Weights, r: Int8Weights,
                                        qa: UnsafeMutablePointer<Int8>, sa: UnsafeMutablePointer<Float>,
                                        y: UnsafeMutablePointer<Float>, context: ComputeContext) throws {
        let k = w.inFeatures, n = w.outFeatures, t = Kernels.active, pool = context.pool, panels = (n + 15) / 16
        // qa/sa have room for 2m rows: rows 0..<m hold the first activation level, m..<2m get its residual.
        let x2 = try context.scratch.allocateBytes(m * k * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: m * k)
        let yw = try context.scratch.allocateBytes(2 * m * n * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: 2 * m * n)
        ock_activation_residual_f32(x, k, k, qa, k, sa, t.pointee.act_offset, x2, k, 0, m)
        Kernels.quantize(t, x2, ldx: k, k: k, rows: 0..<m, into: qa + m * k, ldq: k, scale: sa + m)
        let underW = ock_gemm_args(m: 2 * m, k: k, n: n, qa: qa, lda: k, sa: sa, qw: w.packed, sw: w.scales,
                                   bias: nil, y: yw, ldy: n)
        let underR = ock_gemm_args(m: m, k: k, n: n, qa: qa, lda: k, sa: sa, qw: r.packed, sw: r.scales,
                                   bias: bias.map { UnsafePointer($0.base) }, y: y, ldy: n)
        withUnsafePointer(to: underW) { Kernels.gemmSplit(t, $0, rows: 2 * m, panels: panels, pool: pool) }
        withUnsafePointer(to: underR) { Kernels.gemmSplit(t, $0, rows: m, panels: panels, pool: pool) }
        let underQa = Tensor(base: yw, shape: Shape(m * n)), underQa2 = Tensor(base: yw + m * n, shape: Shape(m * n))
        Ops.add(underQa, underQa2, into: underQa, context: context)
        Ops.addInPlace(Tensor(base: y, shape: Shape(m * n)), underQa, context: context)
    }
}
