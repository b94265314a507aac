// Attention cores: DaViT window and channel attention (transformers Florence2VisionWindowAttention /
// Florence2VisionChannelAttention, between qkv and proj) and BART multi-head attention
// (`eager_attention_forward`, between the q/k/v projections and out_proj).
// Matrix products are single-threaded OpenBLAS calls spread over the worker pool; the softmax
// between them is the fused CKernels `ock_attn_softmax_f32`.
import CKernels
import COpenBLAS

/// The attention cores. Each takes projected q/k/v, writes the heads' outputs concatenated
/// (head-major along channels) and leaves the output projection to the caller's `Linear`.
/// Scratch comes from `context.scratch` (sized by the matching `...ScratchBytes` function) and is
/// released before returning.
public enum Attention {
    /// Queries per block in `multiHead` (one score block is `queryBlock × keys` floats).
    public static let queryBlock = 96

    /// The SIMD variant the softmax and decode kernels use ("avx512", "avx2" or "reference").
    public static var kernelVariant: String { String(cString: ock_attn_variant()) }

    /// Forces the reference kernels (for debugging) or returns to the CPU's best variant.
    /// Call between forward passes, never while one runs.
    public static func forceReferenceKernels(_ on: Bool) { ock_attn_force_reference(on ? 1 : 0) }

    // MARK: - Window attention (DaViT spatial block)

    /// Scratch bytes `window` needs for windows of `tokens` tokens on `threads` threads:
    /// `threads × aligned(tokens² × 4)` (one score matrix per thread).
    public static func windowScratchBytes(tokens: Int, threads: Int) -> Int {
        max(1, threads) * Arena.aligned(tokens * tokens * MemoryLayout<Float>.stride)
    }

    /// Window self-attention: `qkv [nWin, T, 3C]` (the qkv Linear's output over partitioned
    /// windows, the 3C axis laid out [3][heads][headDim]) into `out [nWin, T, C]`: per window and
    /// head, `softmax(q·kᵀ · headDim^-0.5)·v`, heads concatenated along C. No mask: every token of
    /// the window (padding included) is a key.
    public static func window(qkv: Tensor, heads: Int, out: Tensor, context: ComputeContext) throws {
        precondition(qkv.shape.rank == 3 && qkv.shape[2] % 3 == 0, "window attention needs qkv [nWin, T, 3C], got \(qkv.shape)")
        let nWin = qkv.shape[0], t = qkv.shape[1], c = qkv.shape[2] / 3
        precondition(heads >= 1 && c % heads == 0, "C=\(c) is not a multiple of heads=\(heads)")
        precondition(out.shape == Shape(nWin, t, c), "window attention output must be [\(nWin), \(t), \(c)], got \(out.shape)")
        if nWin == 0 || t == 0 { return }
        let hd = c / heads
        let scale = Float(1 / Double(hd).squareRoot())
        let items = nWin * heads
        let tasks = min(context.pool.threadCount, items)
        let slice = Arena.aligned(t * t * MemoryLayout<Float>.stride) / MemoryLayout<Float>.stride
        let mark = context.scratch.mark()
        defer { context.scratch.reset(to: mark) }
        let scratch = try context.scratch.allocateBytes(tasks * slice * MemoryLayout<Float>.stride)
            .bindMemory(to: Float.self, capacity: tasks * slice)
        let src = qkv.base, dst = out.base
        let ld = Int32(3 * c), ldo = Int32(c), t32 = Int32(t), hd32 = Int32(hd)
        var next = 0  // items are claimed dynamically; each task owns one score slice
        withUnsafeMutablePointer(to: &next) { counter in
            context.pool.run(tasks, WindowTask(counter: counter, scratch: scratch, slice: slice, items: items, heads: heads,
                                               src: src, dst: dst, t: t, c: c, hd: hd, scale: scale,
                                               ld: ld, ldo: ldo, t32: t32, hd32: hd32))
        }
    }

    /// One worker's share of `window`: claims (window, head) items and runs them.
    private struct WindowTask: ParallelTask {
        let counter: UnsafeMutablePointer<Int>, scratch: UnsafeMutablePointer<Float>, slice: Int, items: Int, heads: Int
        let src: UnsafeMutablePointer<Float>, dst: UnsafeMutablePointer<Float>, t: Int, c: Int, hd: Int, scale: Float
        let ld: Int32, ldo: Int32, t32: Int32, hd32: Int32
        func callAsFunction(_ task: Int) {
            let s = scratch + task * slice
            while true {
                let item = ock_attn_claim(counter, 1)
                if item >= items { break }
                let w = item / heads, h = item % heads
                let q = src + w * t * 3 * c + h * hd
                // s[T, T] = q[T, hd] · k[T, hd]ᵀ
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t32, t32, hd32,
                            1, q, ld, q + c, ld, 0, s, t32)
                ock_attn_softmax_f32(s, t, t, t, scale, t, 0)
                // out[T, hd] = p[T, T] · v[T, hd]
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t32, hd32, t32,
                            1, s, t32, q + 2 * c, ld, 0, dst + w * t * c + h * hd, ldo)
            }
        }
    }

    // MARK: - Channel attention (DaViT channel block)

    /// Scratch bytes `channel` needs: `ChannelAttentionBlocks.bytes` — one partial score set
    /// `[G, C/G, C/G]` per thread, the softmaxed scores and their transpose (`tokens` does not matter).
    public static func channelScratchBytes(tokens: Int, channels: Int, groups: Int, threads: Int) -> Int {
        ChannelAttentionBlocks.bytes(channels: channels, groups: max(1, groups), threads: max(1, threads))
    }

    /// Channel (group) attention: `qkv [N, 3C]` laid out (3, G, C/G) along 3C into `out [N, C]`.
    /// Per group g, with q, k, v the `[N, C/G]` slices: `A = softmax_lastdim(qᵀ·k · N^-0.5)`
    /// (`[C/G, C/G]`) and `out[n, g·C/G + i] = Σ_j A[i, j]·v[n, j]`.
    public static func channel(qkv: Tensor, groups: Int, out: Tensor, context: ComputeContext) throws {
        precondition(qkv.shape.rank == 2 && qkv.shape[1] % 3 == 0, "channel attention needs qkv [N, 3C], got \(qkv.shape)")
        let n = qkv.shape[0], c = qkv.shape[1] / 3
        precondition(groups >= 1 && c % groups == 0, "C=\(c) is not a multiple of groups=\(groups)")
        precondition(out.shape == Shape(n, c), "channel attention output must be [\(n), \(c)], got \(out.shape)")
        if n == 0 { return }
        // All tokens as one block of the two-pass form the vision tower uses.
        let mark = context.scratch.mark()
        defer { context.scratch.reset(to: mark) }
        var blocks = try ChannelAttentionBlocks(channels: c, groups: groups, threads: context.pool.threadCount, arena: context.scratch)
        blocks.accumulate(qkv, context: context)
        blocks.finish()
        blocks.apply(qkv, column: 2 * c, into: out, context: context)
    }

    // MARK: - Multi-head attention (BART)

    /// Scratch bytes `multiHead` needs for `queries` × `keys` on `threads` threads:
    /// `threads × aligned(min(queries, queryBlock) × keys × 4)`.
    public static func multiHeadScratchBytes(queries: Int, keys: Int, threads: Int) -> Int {
        max(1, threads) * Arena.aligned(min(queries, queryBlock) * keys * MemoryLayout<Float>.stride)
    }

    /// Multi-head scaled dot-product attention: `q [Tq, d]`, `k` and `v [Tk, d]` (contiguous
    /// rows, heads head-major along d) into `out [Tq, d]`, scale `headDim^-0.5`.
    /// With `causal`, query i sees keys `0...i + (Tk - Tq)` (a prefill after `Tk - Tq` cached
    /// positions; needs Tk ≥ Tq). Without it every query sees every key.
    public static func multiHead(q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool,
                                 out: Tensor, context: ComputeContext) throws {
        precondition(q.shape.rank == 2 && k.shape.rank == 2 && v.shape.rank == 2, "attention needs rank-2 q, k, v")
        let tq = q.shape[0], d = q.shape[1], tk = k.shape[0]
        precondition(k.shape == Shape(tk, d) && v.shape == Shape(tk, d), "k \(k.shape) and v \(v.shape) must be [Tk, \(d)]")
        precondition(out.shape == Shape(tq, d), "attention output must be [\(tq), \(d)], got \(out.shape)")
        try multiHead(q: q.base, ldq: d, k: k.base, ldk: d, v: v.base, ldv: d, queries: tq, keys: tk, d: d,
                      heads: heads, causal: causal, out: out.base, context: context)
    }

    /// Multi-head self-attention over a packed projection: `qkv [T, 3d]` holding q, k and v side
    /// by side along columns (as one fused q/k/v Linear writes them) into `out [T, d]`; otherwise
    /// as `multiHead(q:k:v:...)` with Tq = Tk = T.
    public static func multiHead(qkv: Tensor, heads: Int, causal: Bool, out: Tensor, context: ComputeContext) throws {
        precondition(qkv.shape.rank == 2 && qkv.shape[1] % 3 == 0, "attention needs qkv [T, 3d], got \(qkv.shape)")
        let t = qkv.shape[0], d = qkv.shape[1] / 3
        precondition(out.shape == Shape(t, d), "attention output must be [\(t), \(d)], got \(out.shape)")
        try multiHead(q: qkv.base, ldq: 3 * d, k: qkv.base + d, ldk: 3 * d, v: qkv.base + 2 * d, ldv: 3 * d,
                      queries: t, keys: t, d: d, heads: heads, causal: causal, out: out.base, context: context)
    }

    /// The strided core of `multiHead`: rows of q, k, v at strides ldq, ldk, ldv floats; out
    /// contiguous `[queries, d]`.
    static func multiHead(q qp: UnsafeMutablePointer<Float>, ldq: Int, k kp: UnsafeMutablePointer<Float>, ldk: Int,
                          v vp: UnsafeMutablePointer<Float>, ldv: Int, queries tq: Int, keys tk: Int, d: Int,
                          heads: Int, causal: Bool, out op: UnsafeMutablePointer<Float>, context: ComputeContext) throws {
        precondition(heads >= 1 && d % heads == 0, "d=\(d) is not a multiple of heads=\(heads)")
        precondition(!causal || tk >= tq, "causal attention needs at least as many keys (\(tk)) as queries (\(tq))")
        if tq == 0 { return }
        precondition(tk >= 1, "attention over zero keys")
        let hd = d / heads
        let scale = Float(1 / Double(hd).squareRoot())
        let offset = tk - tq
        let qb = min(tq, queryBlock)
        let blocks = (tq + qb - 1) / qb
        let items = heads * blocks
        let tasks = min(context.pool.threadCount, items)
        let slice = Arena.aligned(qb * tk * MemoryLayout<Float>.stride) / MemoryLayout<Float>.stride
        let mark = context.scratch.mark()
        defer { context.scratch.reset(to: mark) }
        let scratch = try context.scratch.allocateBytes(tasks * slice * MemoryLayout<Float>.stride)
            .bindMemory(to: Float.self, capacity: tasks * slice)
        let lq = Int32(ldq), lk = Int32(ldk), lv = Int32(ldv), d32 = Int32(d), hd32 = Int32(hd)
        var next = 0  // items are claimed dynamically; each task owns one score slice
        withUnsafeMutablePointer(to: &next) { counter in
            context.pool.run(tasks, MultiHeadTask(counter: counter, scratch: scratch, slice: slice, items: items, heads: heads,
                                                  blocks: blocks, causal: causal, qb: qb, tq: tq, tk: tk, offset: offset,
                                                  qp: qp, kp: kp, vp: vp, op: op, ldq: ldq, d: d, hd: hd, scale: scale,
                                                  lq: lq, lk: lk, lv: lv, d32: d32, hd32: hd32))
        }
    }

    /// One worker's share of `multiHead`: claims (query block, head) items and runs them.
    private struct MultiHeadTask: ParallelTask {
        let counter: UnsafeMutablePointer<Int>, scratch: UnsafeMutablePointer<Float>, slice: Int, items: Int, heads: Int
        let blocks: Int, causal: Bool, qb: Int, tq: Int, tk: Int, offset: Int
        let qp: UnsafeMutablePointer<Float>, kp: UnsafeMutablePointer<Float>, vp: UnsafeMutablePointer<Float>
        let op: UnsafeMutablePointer<Float>, ldq: Int, d: Int, hd: Int, scale: Float
        let lq: Int32, lk: Int32, lv: Int32, d32: Int32, hd32: Int32
        func callAsFunction(_ task: Int) {
            let s = scratch + task * slice
            while true {
                let item = ock_attn_claim(counter, 1)
                if item >= items { break }
                // Causal blocks see more keys the later they are: hand those out first.
                let b = causal ? blocks - 1 - item / heads : item / heads, h = item % heads
                let i0 = b * qb, i1 = min(tq, i0 + qb), m = i1 - i0
                let nk = causal ? min(tk, i1 + offset) : tk
                let nk32 = Int32(nk)
                // s[m, nk] = q[i0..<i1, h] · k[0..<nk, h]ᵀ
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), nk32, hd32,
                            1, qp + i0 * ldq + h * hd, lq, kp + h * hd, lk, 0, s, nk32)
                ock_attn_softmax_f32(s, m, nk, nk, scale, causal ? offset + i0 + 1 : nk, causal ? 1 : 0)
                // out[i0..<i1, h] = p[m, nk] · v[0..<nk, h]
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), hd32, nk32,
                            1, s, nk32, vp + h * hd, lv, 0, op + i0 * d + h * hd, d32)
            }
        }
    }
}
