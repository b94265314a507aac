// DaViT channel attention in token blocks (two passes), so a stage never holds q, k, v for all
// tokens: pass 1 sums qᵀ·k over the blocks, `finish` turns the sums into A = softmax(· N^-0.5),
// pass 2 applies A to each block's v. Same arithmetic as `Attention.channel` in another order.
import CKernels

/// The running score sums of one channel-attention layer, in memory from an arena (a value:
/// making one per layer allocates nothing on the heap).
public struct ChannelAttentionBlocks: @unchecked Sendable {
    /// Channels C and groups G.
    public let channels: Int, groups: Int
    private let cg: Int, count: Int, slice: Int, partials: Int
    private let sums: UnsafeMutablePointer<Float>  // [partials][G, cg, cg], then A and Aᵀ
    private var tokens = 0

    /// Arena bytes for C channels, G groups and `threads` threads: one partial score set per
    /// thread plus the softmaxed scores and their transpose.
    public static func bytes(channels c: Int, groups g: Int, threads: Int) -> Int {
        (max(1, threads) + 2) * Arena.aligned(c * (c / g) * MemoryLayout<Float>.stride)
    }

    /// Sums for C channels in G groups, carved from `arena` (`bytes(…)` of it).
    public init(channels c: Int, groups g: Int, threads: Int, arena: Arena) throws {
        precondition(g >= 1 && c % g == 0, "C=\(c) is not a multiple of groups=\(g)")
        channels = c
        groups = g
        cg = c / g
        count = c * cg
        slice = Arena.aligned(count * MemoryLayout<Float>.stride) / MemoryLayout<Float>.stride
        partials = max(1, threads)
        sums = try arena.allocateBytes(ChannelAttentionBlocks.bytes(channels: c, groups: g, threads: threads))
            .bindMemory(to: Float.self, capacity: (partials + 2) * slice)
        reset()
    }

    /// Starts a new layer: zero sums, no tokens.
    public mutating func reset() {
        sums.update(repeating: 0, count: partials * slice)
        tokens = 0
    }

    /// Pass 1: adds `q[t]ᵀ·k[t]` of a block. `qk` is `[m, ≥ 2C]`: q in columns 0..<C, k in C..<2C
    /// (e.g. the first 2C outputs of the qkv linear, or all 3C of them).
    public mutating func accumulate(_ qk: Tensor, context: ComputeContext) {
        precondition(qk.shape.rank == 2 && qk.shape[1] >= 2 * channels, "accumulate needs [m, >= \(2 * channels)], got \(qk.shape)")
        let m = qk.shape[0], ld = qk.shape[1]
        let parts = min(partials, max(1, m / 64))
        context.pool.run(parts, ScoresPart(q: qk.base, ld: ld, m: m, parts: parts, c: channels, cg: cg, groups: groups,
                                           sums: sums, slice: slice))
        tokens += m
    }

    /// Turns the sums into A = softmax(qᵀk · N^-0.5) over the `tokens` accumulated.
    public func finish() {
        precondition(tokens > 0, "channel attention finished with no tokens")
        let a = sums
        for p in 1..<partials {
            let s = sums + p * slice
            for i in 0..<count { a[i] += s[i] }
        }
        let scale = Float(1 / Double(tokens).squareRoot())
        ock_attn_softmax_f32(a, channels, cg, cg, scale, cg, 0)
        let at = sums + (partials + 1) * slice
        for g in 0..<groups {
            for i in 0..<cg { for j in 0..<cg { at[(g * cg + j) * cg + i] = a[(g * cg + i) * cg + j] } }
        }
    }

    /// Pass 2: `out[t, g·cg + i] = Σ_j A_g[i, j]·v[t, g·cg + j]` for a block. `v` is `[m, ≥ C]`
    /// with v in columns `column..<column + C`; `out` is `[m, C]`.
    public func apply(_ v: Tensor, column: Int, into out: Tensor, context: ComputeContext) {
        precondition(v.shape.rank == 2 && v.shape[1] >= column + channels, "apply needs v [m, >= \(column + channels)], got \(v.shape)")
        let m = v.shape[0]
        precondition(out.shape == Shape(m, channels), "apply output must be [\(m), \(channels)], got \(out.shape)")
        let at = sums + (partials + 1) * slice
        context.pool.parallelFor(m, minChunk: 128, ApplyRows(v: v.base + column, ldv: v.shape[1], at: at, cg: cg, groups: groups,
                                                            out: out.base, c: channels))
    }

    private struct ScoresPart: ParallelTask {
        let q: UnsafeMutablePointer<Float>, ld: Int, m: Int, parts: Int, c: Int, cg: Int, groups: Int
        let sums: UnsafeMutablePointer<Float>, slice: Int
        func callAsFunction(_ p: Int) {
            let per = (m + parts - 1) / parts, t0 = p * per, t1 = min(m, t0 + per)
            if t1 > t0 { ock_attn_channel_scores_f32(q + t0 * ld, q + t0 * ld + c, ld, t1 - t0, cg, groups, sums + p * slice) }
        }
    }

    private struct ApplyRows: RangeTask {
        let v: UnsafeMutablePointer<Float>, ldv: Int, at: UnsafeMutablePointer<Float>, cg: Int, groups: Int
        let out: UnsafeMutablePointer<Float>, c: Int
        func callAsFunction(_ r: Range<Int>) {
            ock_attn_channel_apply_f32(v + r.lowerBound * ldv, ldv, r.count, at, cg, groups, out + r.lowerBound * c, c)
        }
    }
}

extension Linear {
    /// The layer restricted to outputs `range` (a view: no copy), or nil when the storage cannot
    /// express it (int8 rows are grouped in panels of 16: the range must start on a panel and end
    /// on one or at N).
    public func outputs(_ range: Range<Int>) -> Linear? {
        precondition(range.lowerBound >= 0 && range.upperBound <= outFeatures && !range.isEmpty, "outputs \(range) of \(outFeatures)")
        let b = bias?.rows(range)
        switch storage {
        case .fp32(let w):
            return Linear(weight: w.rows(range), bias: b)
        case .int8(let w):
            guard range.lowerBound % 16 == 0, range.upperBound % 16 == 0 || range.upperBound == outFeatures else { return nil }
            func slice(_ w: Int8Weights) -> Int8Weights {
                Int8Weights(outFeatures: range.count, inFeatures: inFeatures,
                            packed: w.packed + (range.lowerBound / 16) * inFeatures * 16, scales: w.scales + range.lowerBound)
            }
            return Linear(int8: slice(w), residual: residual.map(slice), bias: b)
        }
    }
}
