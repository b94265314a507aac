// Tests of the attention cores (Attention.swift) and decoder caches (KVCache.swift) against numpy
// goldens (Quantization/goldens_attention.py) and plain-Swift float64 references.
//
// Tolerance: 1e-5 absolute everywhere. Every output is a convex combination of v entries
// (|v| < 6 here); fp32 rounding of the dot products (K ≤ 3000 terms) and of the softmax (the
// polynomial exp is within 1e-7 relative) moves it by a few 1e-6 at most, so 1e-5 holds with
// margin while any indexing, scaling or masking mistake shows up as errors of order 0.1.
import CKernels
import COpenBLAS
import Foundation
import XCTest

@testable import Compute

final class AttentionTests: XCTestCase {
    static let tolerance: Float = 1e-5

    override func setUp() {
        super.setUp()
        openblas_set_num_threads(1)  // the engine's setting: our pool owns the parallelism
    }

    // MARK: - Helpers

    /// A seeded generator of standard normal floats (SplitMix64 + Box-Muller).
    struct Normal {
        var bits: SplitMix64
        init(seed: UInt64) { bits = SplitMix64(seed: seed) }
        mutating func nextU64() -> UInt64 { bits.next() }
        mutating func uniform() -> Double { Double(nextU64() >> 11) / Double(1 << 53) }
        mutating func next() -> Float {
            let u1 = max(uniform(), 1e-300), u2 = uniform()
            return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
        }
        mutating func array(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
        mutating func int(_ n: Int) -> Int { Int(nextU64() % UInt64(n)) }
    }

    /// Pools live for the whole test run (one per thread count): the WorkerPool's threads hold it
    /// `unowned`, so a pool released while they wake up for shutdown traps.
    nonisolated(unsafe) static var pools: [Int: WorkerPool] = [:]

    func context(threads: Int, scratchBytes: Int) -> ComputeContext {
        if Self.pools[threads] == nil { Self.pools[threads] = WorkerPool(threads: threads) }
        return ComputeContext(pool: Self.pools[threads]!, scratchBytes: scratchBytes)
    }

    func tensor(_ values: [Float], _ shape: Shape, in arena: Arena) throws -> Tensor {
        let t = try arena.tensor(shape)
        t.copy(from: values)
        return t
    }

    // MARK: - References (plain Swift, float64)

    /// softmax over `s` in place (float64).
    static func softmaxRef(_ s: inout [Double]) {
        let m = s.max()!
        var sum = 0.0
        for j in s.indices { s[j] = exp(s[j] - m); sum += s[j] }
        for j in s.indices { s[j] /= sum }
    }

    /// Attention of queries q [tq, d] over k, v [tk, d] with `heads` heads; query i sees keys
    /// 0..<visible(i). Row strides ldq, ldk, ldv; column offsets qo, ko, vo.
    static func attentionRef(q: [Float], ldq: Int, qo: Int, k: [Float], ldk: Int, ko: Int, v: [Float], ldv: Int, vo: Int,
                             tq: Int, d: Int, heads: Int, scale: Double, visible: (Int) -> Int) -> [Float] {
        let hd = d / heads
        var out = [Float](repeating: 0, count: tq * d)
        for h in 0..<heads {
            for i in 0..<tq {
                let nk = visible(i)
                var s = [Double](repeating: 0, count: nk)
                for j in 0..<nk {
                    var dot = 0.0
                    for c in 0..<hd { dot += Double(q[i * ldq + qo + h * hd + c]) * Double(k[j * ldk + ko + h * hd + c]) }
                    s[j] = dot * scale
                }
                softmaxRef(&s)
                for c in 0..<hd {
                    var acc = 0.0
                    for j in 0..<nk { acc += s[j] * Double(v[j * ldv + vo + h * hd + c]) }
                    out[i * d + h * hd + c] = Float(acc)
                }
            }
        }
        return out
    }

    static func windowRef(_ qkv: [Float], nWin: Int, t: Int, c: Int, heads: Int) -> [Float] {
        var out = [Float]()
        let scale = 1 / Double(c / heads).squareRoot()
        for w in 0..<nWin {
            let win = Array(qkv[(w * t * 3 * c)..<((w + 1) * t * 3 * c)])
            out += attentionRef(q: win, ldq: 3 * c, qo: 0, k: win, ldk: 3 * c, ko: c, v: win, ldv: 3 * c, vo: 2 * c,
                                tq: t, d: c, heads: heads, scale: scale, visible: { _ in t })
        }
        return out
    }

    static func channelRef(_ qkv: [Float], n: Int, c: Int, groups: Int) -> [Float] {
        let cg = c / groups
        var out = [Float](repeating: 0, count: n * c)
        for g in 0..<groups {
            var a = [[Double]](repeating: [Double](repeating: 0, count: cg), count: cg)
            for i in 0..<cg {
                for j in 0..<cg {
                    var dot = 0.0
                    for t in 0..<n { dot += Double(qkv[t * 3 * c + g * cg + i]) * Double(qkv[t * 3 * c + c + g * cg + j]) }
                    a[i][j] = dot / Double(n).squareRoot()
                }
                softmaxRef(&a[i])
            }
            for t in 0..<n {
                for i in 0..<cg {
                    var acc = 0.0
                    for j in 0..<cg { acc += a[i][j] * Double(qkv[t * 3 * c + 2 * c + g * cg + j]) }
                    out[t * c + g * cg + i] = Float(acc)
                }
            }
        }
        return out
    }

    static func multiHeadRef(q: [Float], k: [Float], v: [Float], tq: Int, tk: Int, d: Int, heads: Int, causal: Bool) -> [Float] {
        attentionRef(q: q, ldq: d, qo: 0, k: k, ldk: d, ko: 0, v: v, ldv: d, vo: 0, tq: tq, d: d, heads: heads,
                     scale: 1 / Double(d / heads).squareRoot(), visible: { causal ? min(tk, $0 + tk - tq + 1) : tk })
    }

    // MARK: - Goldens (numpy)

    func testWindowAttentionGolden() throws {
        let qkv = try Golden.npy("attention/window_qkv.npy"), want = try Golden.npy("attention/window_out.npy")
        XCTAssertEqual(qkv.shape, [3, 16, 48])
        let arena = Arena(capacity: 1 << 20)
        let ctx = context(threads: 2, scratchBytes: Attention.windowScratchBytes(tokens: 16, threads: 2))
        let x = try tensor(qkv.values, Shape(3, 16, 48), in: arena), out = try arena.tensor(Shape(3, 16, 16))
        try Attention.window(qkv: x, heads: 2, out: out, context: ctx)
        Golden.assertClose(out.toArray(), want.values, tolerance: Self.tolerance, "window attention golden")
    }

    func testChannelAttentionGolden() throws {
        let qkv = try Golden.npy("attention/channel_qkv.npy"), want = try Golden.npy("attention/channel_out.npy")
        XCTAssertEqual(qkv.shape, [37, 48])
        let arena = Arena(capacity: 1 << 20)
        let ctx = context(threads: 2, scratchBytes: Attention.channelScratchBytes(tokens: 37, channels: 16, groups: 2, threads: 2))
        let x = try tensor(qkv.values, Shape(37, 48), in: arena), out = try arena.tensor(Shape(37, 16))
        try Attention.channel(qkv: x, groups: 2, out: out, context: ctx)
        Golden.assertClose(out.toArray(), want.values, tolerance: Self.tolerance, "channel attention golden")
    }

    func testMultiHeadGolden() throws {
        for (name, causal) in [("mha", false), ("causal", true)] {
            let q = try Golden.npy("attention/\(name)_q.npy"), k = try Golden.npy("attention/\(name)_k.npy")
            let v = try Golden.npy("attention/\(name)_v.npy"), want = try Golden.npy("attention/\(name)_out.npy")
            let tq = q.shape[0], tk = k.shape[0], d = q.shape[1]
            let arena = Arena(capacity: 1 << 20)
            let ctx = context(threads: 2, scratchBytes: Attention.multiHeadScratchBytes(queries: tq, keys: tk, threads: 2))
            let out = try arena.tensor(Shape(tq, d))
            try Attention.multiHead(q: tensor(q.values, Shape(tq, d), in: arena), k: tensor(k.values, Shape(tk, d), in: arena),
                                    v: tensor(v.values, Shape(tk, d), in: arena), heads: 4, causal: causal, out: out, context: ctx)
            Golden.assertClose(out.toArray(), want.values, tolerance: Self.tolerance, "\(name) golden")
        }
    }

    /// Seven decode steps of 3 beams with reorders (repeats, a drop to 2 rows, a swap, a merge),
    /// against the golden step outputs; then each final row's cache against full causal attention
    /// over its lineage.
    func testDecodeGoldenWithReorders() throws {
        let q = try Golden.npy("attention/decode_q.npy"), k = try Golden.npy("attention/decode_k.npy")
        let v = try Golden.npy("attention/decode_v.npy"), want = try Golden.npy("attention/decode_out.npy")
        let sources = try Golden.npy("attention/decode_sources.npy")
        let steps = q.shape[0], rows0 = q.shape[1], d = q.shape[2], heads = 4
        let arena = Arena(capacity: KVCache.bytes(rows: rows0, maxPositions: steps, d: d) + (1 << 16))
        let cache = try KVCache(rows: rows0, maxPositions: steps, d: d, arena: arena)
        let scratch = max(KVCache.reorderScratchBytes(maxPositions: steps, d: d),
                          KVCache.attendScratchBytes(maxPositions: steps, threads: 2))
        let ctx = context(threads: 2, scratchBytes: scratch)
        cache.reset(rows: rows0)
        let qt = try arena.tensor(Shape(rows0, d)), kt = try arena.tensor(Shape(rows0, d))
        let vt = try arena.tensor(Shape(rows0, d)), ot = try arena.tensor(Shape(rows0, d))
        for t in 0..<steps {
            let r = cache.rows, base = t * rows0 * d
            let (qs, ks, vs) = (qt.rows(0..<r).reshaped(Shape(r, d)), kt.rows(0..<r), vt.rows(0..<r))
            qs.copy(from: Array(q.values[base..<(base + r * d)]))
            ks.copy(from: Array(k.values[base..<(base + r * d)]))
            vs.copy(from: Array(v.values[base..<(base + r * d)]))
            cache.append(k: ks, v: vs)
            let os = ot.rows(0..<r)
            try cache.attend(q: qs, heads: heads, out: os, context: ctx)
            Golden.assertClose(os.toArray(), Array(want.values[base..<(base + r * d)]), tolerance: Self.tolerance, "decode step \(t)")
            let src = (0..<rows0).map { Int(sources.values[t * rows0 + $0]) }.filter { $0 >= 0 }
            if !src.isEmpty { try cache.reorder(src, context: ctx) }
        }
        let lq = try Golden.npy("attention/decode_lineage_q.npy"), lk = try Golden.npy("attention/decode_lineage_k.npy")
        let lv = try Golden.npy("attention/decode_lineage_v.npy"), lo = try Golden.npy("attention/decode_lineage_out.npy")
        XCTAssertEqual(cache.rows, lq.shape[0])
        XCTAssertEqual(cache.length, steps)
        let full = context(threads: 2, scratchBytes: Attention.multiHeadScratchBytes(queries: steps, keys: steps, threads: 2))
        for r in 0..<cache.rows {
            let span = (r * steps * d)..<((r + 1) * steps * d)
            XCTAssertEqual(cache.keys(row: r).toArray(), Array(lk.values[span]), "row \(r) keys are its lineage's")
            XCTAssertEqual(cache.values(row: r).toArray(), Array(lv.values[span]), "row \(r) values are its lineage's")
            let out = try arena.tensor(Shape(steps, d))
            try Attention.multiHead(q: tensor(Array(lq.values[span]), Shape(steps, d), in: arena), k: cache.keys(row: r),
                                    v: cache.values(row: r), heads: heads, causal: true, out: out, context: full)
            Golden.assertClose(out.toArray(), Array(lo.values[span]), tolerance: Self.tolerance, "row \(r) full causal")
        }
    }

    // MARK: - Random sizes against the Swift reference

    func testWindowAttentionRandomSizes() throws {
        var rng = Normal(seed: 1)
        // (windows, tokens, C, heads, threads): odd T, T = 1, one head of 32, many heads, DaViT's 144×128/4.
        for (nWin, t, c, heads, threads) in [(5, 7, 32, 1, 2), (2, 1, 64, 2, 2), (3, 49, 96, 3, 3), (2, 144, 128, 4, 2),
                                             (1, 13, 48, 12, 1), (7, 9, 64, 2, 4)] {
            let qkv = rng.array(nWin * t * 3 * c, scale: 1.5)
            let arena = Arena(capacity: (nWin * t * 4 * c) * 4 + 4096)
            let ctx = context(threads: threads, scratchBytes: Attention.windowScratchBytes(tokens: t, threads: threads))
            let out = try arena.tensor(Shape(nWin, t, c))
            try Attention.window(qkv: tensor(qkv, Shape(nWin, t, 3 * c), in: arena), heads: heads, out: out, context: ctx)
            Golden.assertClose(out.toArray(), Self.windowRef(qkv, nWin: nWin, t: t, c: c, heads: heads),
                               tolerance: Self.tolerance, "window nWin=\(nWin) T=\(t) C=\(c) heads=\(heads)")
        }
    }

    func testChannelAttentionRandomSizes() throws {
        var rng = Normal(seed: 2)
        // (tokens, C, groups, threads): one token, split reductions (N ≥ 2048 per thread), DaViT's
        // 32 per group, group widths the AVX-512 kernel handles (16, 48, 64) and ones it leaves to
        // the portable code (8, 24).
        for (n, c, groups, threads) in [(1, 8, 1, 2), (2500, 32, 1, 2), (6200, 64, 2, 3), (577, 96, 3, 2), (36, 128, 4, 2),
                                        (50, 96, 2, 2), (19, 64, 4, 1), (23, 48, 2, 2), (100, 128, 2, 2)] {
            let qkv = rng.array(n * 3 * c)
            let arena = Arena(capacity: n * 4 * c * 4 + 4096)
            let ctx = context(threads: threads, scratchBytes: Attention.channelScratchBytes(tokens: n, channels: c, groups: groups, threads: threads))
            let out = try arena.tensor(Shape(n, c))
            try Attention.channel(qkv: tensor(qkv, Shape(n, 3 * c), in: arena), groups: groups, out: out, context: ctx)
            Golden.assertClose(out.toArray(), Self.channelRef(qkv, n: n, c: c, groups: groups),
                               tolerance: Self.tolerance, "channel N=\(n) C=\(c) G=\(groups)")
        }
    }

    func testMultiHeadRandomSizes() throws {
        var rng = Normal(seed: 3)
        // (Tq, Tk, d, heads, causal, threads): T = 1, decoder-over-encoder shape, several query
        // blocks, causal with an offset, many tiny heads, one head of 32.
        for (tq, tk, d, heads, causal, threads) in [(1, 1, 32, 1, false, 2), (1, 1, 32, 1, true, 2), (3, 585, 768, 12, false, 2),
                                                     (200, 200, 64, 1, true, 2), (170, 230, 64, 2, true, 3), (3, 50, 32, 16, false, 2),
                                                     (97, 97, 32, 1, false, 1), (9, 9, 96, 3, true, 4)] {
            let q = rng.array(tq * d, scale: 1.5), k = rng.array(tk * d, scale: 1.5), v = rng.array(tk * d)
            let arena = Arena(capacity: (tq * 2 + tk * 2) * d * 4 + 4096)
            let ctx = context(threads: threads, scratchBytes: Attention.multiHeadScratchBytes(queries: tq, keys: tk, threads: threads))
            let out = try arena.tensor(Shape(tq, d))
            try Attention.multiHead(q: tensor(q, Shape(tq, d), in: arena), k: tensor(k, Shape(tk, d), in: arena),
                                    v: tensor(v, Shape(tk, d), in: arena), heads: heads, causal: causal, out: out, context: ctx)
            Golden.assertClose(out.toArray(), Self.multiHeadRef(q: q, k: k, v: v, tq: tq, tk: tk, d: d, heads: heads, causal: causal),
                               tolerance: Self.tolerance, "mha Tq=\(tq) Tk=\(tk) d=\(d) heads=\(heads) causal=\(causal)")
        }
    }

    /// Self-attention over a packed `[T, 3d]` projection equals the reference on the same columns.
    func testMultiHeadPackedQKV() throws {
        var rng = Normal(seed: 12)
        for (t, d, heads, causal) in [(1, 32, 1, true), (29, 64, 2, false), (130, 96, 3, true), (200, 768, 12, false)] {
            let qkv = rng.array(t * 3 * d, scale: 1.5)
            let arena = Arena(capacity: t * 4 * d * 4 + 4096)
            let ctx = context(threads: 2, scratchBytes: Attention.multiHeadScratchBytes(queries: t, keys: t, threads: 2))
            let out = try arena.tensor(Shape(t, d))
            try Attention.multiHead(qkv: tensor(qkv, Shape(t, 3 * d), in: arena), heads: heads, causal: causal, out: out, context: ctx)
            let want = Self.attentionRef(q: qkv, ldq: 3 * d, qo: 0, k: qkv, ldk: 3 * d, ko: d, v: qkv, ldv: 3 * d, vo: 2 * d,
                                         tq: t, d: d, heads: heads, scale: 1 / Double(d / heads).squareRoot(),
                                         visible: { causal ? $0 + 1 : t })
            Golden.assertClose(out.toArray(), want, tolerance: Self.tolerance, "packed qkv T=\(t) d=\(d) heads=\(heads) causal=\(causal)")
        }
    }

    // MARK: - KV cache

    /// Random decoding with random reorders (drops, repeats, permutations) against per-row
    /// histories kept in Swift arrays: every step's output, and the cached rows themselves.
    func testKVCacheRandomDecode() throws {
        var rng = Normal(seed: 4)
        // (rows, d, heads, steps, threads): small; BART-base width past the parallel threshold.
        for (rows0, d, heads, steps, threads) in [(4, 64, 2, 30, 2), (1, 32, 1, 5, 2), (3, 768, 12, 120, 2), (5, 48, 3, 25, 3)] {
            let arena = Arena(capacity: KVCache.bytes(rows: rows0, maxPositions: steps, d: d) + 4 * rows0 * d * 4 + 4096)
            let cache = try KVCache(rows: rows0, maxPositions: steps, d: d, arena: arena)
            let ctx = context(threads: threads, scratchBytes: max(KVCache.reorderScratchBytes(maxPositions: steps, d: d),
                                                                   KVCache.attendScratchBytes(maxPositions: steps, threads: threads)))
            let qt = try arena.tensor(Shape(rows0, d)), kt = try arena.tensor(Shape(rows0, d))
            let vt = try arena.tensor(Shape(rows0, d)), ot = try arena.tensor(Shape(rows0, d))
            cache.reset(rows: rows0)
            var histK = [[Float]](repeating: [], count: rows0), histV = histK
            for t in 0..<steps {
                let r = cache.rows
                let q = rng.array(r * d, scale: 1.5), k = rng.array(r * d, scale: 1.5), v = rng.array(r * d)
                qt.rows(0..<r).copy(from: q); kt.rows(0..<r).copy(from: k); vt.rows(0..<r).copy(from: v)
                cache.append(k: kt.rows(0..<r), v: vt.rows(0..<r))
                for i in 0..<r { histK[i] += k[(i * d)..<((i + 1) * d)]; histV[i] += v[(i * d)..<((i + 1) * d)] }
                try cache.attend(q: qt.rows(0..<r), heads: heads, out: ot.rows(0..<r), context: ctx)
                if t % 7 == 0 || t == steps - 1 || d < 768 {
                    var want = [Float]()
                    for i in 0..<r {
                        want += Self.multiHeadRef(q: Array(q[(i * d)..<((i + 1) * d)]), k: histK[i], v: histV[i],
                                                  tq: 1, tk: t + 1, d: d, heads: heads, causal: false)
                    }
                    Golden.assertClose(ot.rows(0..<r).toArray(), want, tolerance: Self.tolerance, "decode rows=\(rows0) d=\(d) step \(t)")
                }
                if t % 3 == 2 {
                    let newRows = t % 2 == 0 ? r : max(1, r - rng.int(2))
                    let src = (0..<newRows).map { _ in rng.int(r) }
                    try cache.reorder(src, context: ctx)
                    histK = src.map { histK[$0] }; histV = src.map { histV[$0] }
                }
            }
            for i in 0..<cache.rows {
                XCTAssertEqual(cache.keys(row: i).toArray(), histK[i], "rows=\(rows0) d=\(d) final keys of row \(i)")
                XCTAssertEqual(cache.values(row: i).toArray(), histV[i], "rows=\(rows0) d=\(d) final values of row \(i)")
            }
        }
    }

    /// Hand-picked reorders: identity, a 3-cycle, two 2-cycles, a chain, all-from-one, drops.
    func testKVCacheReorderPatterns() throws {
        let rows = 4, d = 8, len = 3
        let patterns: [[Int]] = [[0, 1, 2, 3], [1, 2, 0, 3], [1, 0, 3, 2], [1, 2, 3, 3], [2, 2, 2, 2], [3, 0], [2], [0, 0, 1], [3, 2, 1, 0]]
        for src in patterns {
            let arena = Arena(capacity: KVCache.bytes(rows: rows, maxPositions: len, d: d) + 4096)
            let cache = try KVCache(rows: rows, maxPositions: len, d: d, arena: arena)
            let ctx = context(threads: 1, scratchBytes: KVCache.reorderScratchBytes(maxPositions: len, d: d))
            cache.reset(rows: rows)
            let kt = try arena.tensor(Shape(rows, d)), vt = try arena.tensor(Shape(rows, d))
            for p in 0..<len {
                kt.copy(from: (0..<(rows * d)).map { Float(($0 / d) * 100 + p * 10 + $0 % d) })
                vt.copy(from: (0..<(rows * d)).map { -Float(($0 / d) * 100 + p * 10 + $0 % d) })
                cache.append(k: kt, v: vt)
            }
            try cache.reorder(src, context: ctx)
            XCTAssertEqual(cache.rows, src.count)
            XCTAssertEqual(cache.length, len)
            for (i, s) in src.enumerated() {
                let want = (0..<(len * d)).map { Float(s * 100 + ($0 / d) * 10 + $0 % d) }
                XCTAssertEqual(cache.keys(row: i).toArray(), want, "reorder \(src): keys of new row \(i)")
                XCTAssertEqual(cache.values(row: i).toArray(), want.map { -$0 }, "reorder \(src): values of new row \(i)")
            }
        }
    }

    /// A prefill of P positions appended at once, then a causal multiHead over the cached keys,
    /// equals P single steps of append + attend.
    func testKVCachePrefillMatchesSteps() throws {
        var rng = Normal(seed: 5)
        let p = 6, d = 64, heads = 2
        let q = rng.array(p * d), k = rng.array(p * d), v = rng.array(p * d)
        let arena = Arena(capacity: 2 * KVCache.bytes(rows: 1, maxPositions: p, d: d) + 8 * p * d * 4)
        let ctx = context(threads: 2, scratchBytes: max(Attention.multiHeadScratchBytes(queries: p, keys: p, threads: 2),
                                                        KVCache.attendScratchBytes(maxPositions: p, threads: 2)))
        let prefill = try KVCache(rows: 1, maxPositions: p, d: d, arena: arena)
        prefill.append(k: try tensor(k, Shape(p, d), in: arena), v: try tensor(v, Shape(p, d), in: arena))
        let full = try arena.tensor(Shape(p, d))
        try Attention.multiHead(q: tensor(q, Shape(p, d), in: arena), k: prefill.keys(row: 0), v: prefill.values(row: 0),
                                heads: heads, causal: true, out: full, context: ctx)
        let stepper = try KVCache(rows: 1, maxPositions: p, d: d, arena: arena)
        let one = try arena.tensor(Shape(1, d))
        for t in 0..<p {
            let span = (t * d)..<((t + 1) * d)
            stepper.append(k: try tensor(Array(k[span]), Shape(1, d), in: arena), v: try tensor(Array(v[span]), Shape(1, d), in: arena))
            try stepper.attend(q: tensor(Array(q[span]), Shape(1, d), in: arena), heads: heads, out: one, context: ctx)
            Golden.assertClose(one.toArray(), Array(full.toArray()[span]), tolerance: Self.tolerance, "prefill vs step \(t)")
        }
    }

    func testCrossKVAttend() throws {
        var rng = Normal(seed: 6)
        let rows = 3, s = 37, d = 96, heads = 3
        let arena = Arena(capacity: CrossKV.bytes(maxPositions: 64, d: d) + 4 * rows * d * 4)
        let cross = try CrossKV(maxPositions: 64, d: d, arena: arena)
        cross.setLength(s)
        let k = rng.array(s * d, scale: 1.5), v = rng.array(s * d), q = rng.array(rows * d, scale: 1.5)
        cross.keys.copy(from: k)
        cross.values.copy(from: v)
        let ctx = context(threads: 2, scratchBytes: CrossKV.attendScratchBytes(rows: rows, maxPositions: 64, threads: 2))
        let out = try arena.tensor(Shape(rows, d))
        try cross.attend(q: tensor(q, Shape(rows, d), in: arena), heads: heads, out: out, context: ctx)
        Golden.assertClose(out.toArray(), Self.multiHeadRef(q: q, k: k, v: v, tq: rows, tk: s, d: d, heads: heads, causal: false),
                           tolerance: Self.tolerance, "cross attention")
    }

    // MARK: - Kernel variants

    /// Each SIMD softmax this CPU runs equals the reference on ragged and causal rows, large
    /// score ranges (exp underflow) included.
    func testSoftmaxVariantsMatchReference() throws {
        var rng = Normal(seed: 7)
        typealias Fn = (UnsafeMutablePointer<Float>?, Int, Int, Int, Float, Int, Int) -> Void
        var variants: [(String, Fn)] = []
        if ock_attn_cpu_has_avx512() != 0 { variants.append(("avx512", ock_attn_softmax_f32_avx512)) }
        if ock_attn_cpu_has_avx2() != 0 { variants.append(("avx2", ock_attn_softmax_f32_avx2)) }
        XCTAssertFalse(variants.isEmpty, "this x86-64 machine should run at least the AVX2 variant")
        for (rows, cols, ld, valid0, step, spread) in [(5, 1, 1, 1, 0, Float(1)), (7, 33, 40, 33, 0, 3), (16, 16, 16, 1, 1, 3),
                                                      (9, 100, 100, 95, 1, 2), (4, 585, 600, 585, 0, 40), (3, 17, 17, 17, 0, 1000)] {
            let input = rng.array(rows * ld, scale: spread)
            var want = input, got = input
            ock_attn_softmax_f32_ref(&want, rows, cols, ld, 0.37, valid0, step)
            for (name, fn) in variants {
                got = input
                fn(&got, rows, cols, ld, 0.37, valid0, step)
                var worst: Float = 0
                for i in 0..<rows {
                    for j in 0..<cols { worst = max(worst, abs(got[i * ld + j] - want[i * ld + j])) }
                    for j in cols..<ld { XCTAssertEqual(got[i * ld + j], input[i * ld + j], "\(name): wrote past cols") }
                }
                XCTAssertLessThanOrEqual(worst, 1e-6, "\(name) softmax rows=\(rows) cols=\(cols) valid0=\(valid0) step=\(step)")
            }
        }
    }

    /// The channel-attention kernels (AVX-512 where the CPU has it, and the portable version)
    /// equal the reference for every group width, odd token counts and accumulation into `a`.
    func testChannelKernelVariantsMatchReference() throws {
        var rng = Normal(seed: 10)
        typealias Scores = (UnsafePointer<Float>?, UnsafePointer<Float>?, Int, Int, Int, Int, UnsafeMutablePointer<Float>?) -> Void
        typealias Apply = (UnsafePointer<Float>?, Int, Int, UnsafePointer<Float>?, Int, Int, UnsafeMutablePointer<Float>?, Int) -> Void
        var variants: [(String, Scores, Apply)] = [("generic", ock_attn_channel_scores_f32_generic, ock_attn_channel_apply_f32_generic)]
        if ock_attn_cpu_has_avx512() != 0 {
            variants.append(("avx512", ock_attn_channel_scores_f32_avx512, ock_attn_channel_apply_f32_avx512))
        }
        for (n, cg, groups) in [(1, 32, 1), (37, 8, 3), (300, 16, 2), (513, 24, 2), (77, 32, 4), (31, 48, 2), (45, 64, 2), (9, 80, 1)] {
            let c = cg * groups, ld = 3 * c + 5
            let x = rng.array(n * ld), a0 = rng.array(c * cg)
            // Transposed probabilities, as the op passes them: at[(g·cg + j)·cg + i] = A_g[i, j], rows of A summing to 1.
            var at = rng.array(c * cg).map { abs($0) }
            for g in 0..<groups {
                for i in 0..<cg {
                    let sum = (0..<cg).reduce(Float(0)) { $0 + at[(g * cg + $1) * cg + i] }
                    for j in 0..<cg { at[(g * cg + j) * cg + i] /= sum }
                }
            }
            var wantA = a0, wantOut = [Float](repeating: 0, count: n * (c + 3))
            ock_attn_channel_scores_f32_ref(x, Array(x[c...]), ld, n, cg, groups, &wantA)
            ock_attn_channel_apply_f32_ref(Array(x[(2 * c)...]), ld, n, at, cg, groups, &wantOut, c + 3)
            for (name, scores, apply) in variants {
                var gotA = a0, gotOut = [Float](repeating: 0, count: n * (c + 3))
                scores(x, Array(x[c...]), ld, n, cg, groups, &gotA)
                apply(Array(x[(2 * c)...]), ld, n, at, cg, groups, &gotOut, c + 3)
                Golden.assertClose(gotA, wantA, tolerance: 1e-5 * Float(n).squareRoot(), "\(name) scores n=\(n) cg=\(cg) G=\(groups)")
                Golden.assertClose(gotOut, wantOut, tolerance: 1e-5, "\(name) apply n=\(n) cg=\(cg) G=\(groups)")
            }
        }
    }

    /// The SIMD single-query (decode) kernels equal the reference over head sizes each accepts.
    func testQueryKernelVariantsMatchReference() throws {
        var rng = Normal(seed: 11)
        typealias Query = (UnsafePointer<Float>?, UnsafePointer<Float>?, Int, UnsafePointer<Float>?, Int, Int, Int, Int, Float,
                           UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void
        var variants: [(String, Int, Query)] = []
        if ock_attn_cpu_has_avx512() != 0 { variants.append(("avx512", 16, ock_attn_query_f32_avx512)) }
        if ock_attn_cpu_has_avx2() != 0 { variants.append(("avx2", 8, ock_attn_query_f32_avx2)) }
        XCTAssertFalse(variants.isEmpty)
        for (len, heads, hd) in [(1, 1, 16), (7, 2, 32), (20, 12, 64), (33, 3, 48), (130, 4, 8), (5, 1, 24)] {
            let d = heads * hd, ld = d + 7
            let q = rng.array(d, scale: 1.5), k = rng.array(len * ld, scale: 1.5), v = rng.array(len * ld)
            var scores = [Float](repeating: 0, count: len), want = [Float](repeating: 0, count: d)
            ock_attn_query_f32_ref(q, k, ld, v, ld, len, heads, hd, 0.2, &scores, &want)
            for (name, lanes, fn) in variants where hd % lanes == 0 {
                var got = [Float](repeating: 0, count: d)
                fn(q, k, ld, v, ld, len, heads, hd, 0.2, &scores, &got)
                Golden.assertClose(got, want, tolerance: Self.tolerance, "\(name) query len=\(len) heads=\(heads) hd=\(hd)")
            }
        }
    }

    /// The ops give the same results with the reference kernels forced.
    func testForcedReferenceKernelsAgree() throws {
        var rng = Normal(seed: 8)
        let nWin = 3, t = 20, c = 64, heads = 2
        let qkv = rng.array(nWin * t * 3 * c, scale: 1.5)
        let arena = Arena(capacity: nWin * t * 5 * c * 4 + 4096)
        let ctx = context(threads: 2, scratchBytes: Attention.windowScratchBytes(tokens: t, threads: 2))
        let x = try tensor(qkv, Shape(nWin, t, 3 * c), in: arena)
        let fast = try arena.tensor(Shape(nWin, t, c)), slow = try arena.tensor(Shape(nWin, t, c))
        let variant = Attention.kernelVariant
        try Attention.window(qkv: x, heads: heads, out: fast, context: ctx)
        Attention.forceReferenceKernels(true)
        XCTAssertEqual(Attention.kernelVariant, "reference")
        defer { Attention.forceReferenceKernels(false) }
        try Attention.window(qkv: x, heads: heads, out: slow, context: ctx)
        Attention.forceReferenceKernels(false)
        XCTAssertEqual(Attention.kernelVariant, variant)
        Golden.assertClose(fast.toArray(), slow.toArray(), tolerance: 1e-6, "window attention, \(variant) vs reference")
    }

    // MARK: - Timings (opt-in: OCELLUS_BENCH=1, threads from OCELLUS_BENCH_THREADS, default 2)

    /// Rough timings at Florence-2-base shapes; prints, asserts nothing beyond running.
    func testTimingsFlorenceShapes() throws {
        guard ProcessInfo.processInfo.environment["OCELLUS_BENCH"] == "1" else { throw XCTSkip("set OCELLUS_BENCH=1 to time") }
        var rng = Normal(seed: 9)
        let threads = Int(ProcessInfo.processInfo.environment["OCELLUS_BENCH_THREADS"] ?? "") ?? 2
        func time(_ label: String, reps: Int, _ body: () throws -> Void) rethrows {
            try body()
            var best = Double.infinity, cpu = 0.0, wall = 0.0
            for _ in 0..<reps {
                let c0 = clock(), t0 = DispatchTime.now().uptimeNanoseconds
                try body()
                let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                best = min(best, ms)
                wall += ms
                cpu += Double(clock() - c0) * 1000 / Double(CLOCKS_PER_SEC)
            }
            print("TIMING \(label) [\(Attention.kernelVariant), \(threads) threads]: best \(String(format: "%.3f", best)) ms of \(reps), process CPU/wall \(String(format: "%.2f", cpu / wall))")
        }
        do {  // stage 0 window attention: 256 windows × 144 tokens × C = 128, 4 heads
            let arena = Arena(capacity: 256 * 144 * 4 * 128 * 4 + 4096)
            let ctx = context(threads: threads, scratchBytes: Attention.windowScratchBytes(tokens: 144, threads: threads))
            let x = try tensor(rng.array(256 * 144 * 384), Shape(256, 144, 384), in: arena), out = try arena.tensor(Shape(256, 144, 128))
            try time("window 256x144x128/4", reps: 5) { try Attention.window(qkv: x, heads: 4, out: out, context: ctx) }
        }
        do {  // stage 0 channel attention: N = 36864, C = 128, G = 4
            let arena = Arena(capacity: 36864 * 4 * 128 * 4 + 4096)
            let ctx = context(threads: threads, scratchBytes: Attention.channelScratchBytes(tokens: 36864, channels: 128, groups: 4, threads: threads))
            let x = try tensor(rng.array(36864 * 384), Shape(36864, 384), in: arena), out = try arena.tensor(Shape(36864, 128))
            try time("channel 36864x128/4", reps: 5) { try Attention.channel(qkv: x, groups: 4, out: out, context: ctx) }
        }
        do {  // BART-base encoder self-attention, 585 tokens, d = 768, 12 heads
            let arena = Arena(capacity: 4 * 585 * 768 * 4 + 4096)
            let ctx = context(threads: threads, scratchBytes: Attention.multiHeadScratchBytes(queries: 585, keys: 585, threads: threads))
            let q = try tensor(rng.array(585 * 768), Shape(585, 768), in: arena), k = try tensor(rng.array(585 * 768), Shape(585, 768), in: arena)
            let v = try tensor(rng.array(585 * 768), Shape(585, 768), in: arena), out = try arena.tensor(Shape(585, 768))
            try time("encoder mha 585x768/12", reps: 5) { try Attention.multiHead(q: q, k: k, v: v, heads: 12, causal: false, out: out, context: ctx) }
        }
        do {  // decoder: self-attention at length 20 with 3 beams, and cross-attention over 585
            let arena = Arena(capacity: KVCache.bytes(rows: 3, maxPositions: 1024, d: 768) + CrossKV.bytes(maxPositions: 585, d: 768) + 8 * 3 * 768 * 4)
            let cache = try KVCache(rows: 3, maxPositions: 1024, d: 768, arena: arena)
            let cross = try CrossKV(maxPositions: 585, d: 768, arena: arena)
            cross.setLength(585)
            cross.keys.copy(from: rng.array(585 * 768)); cross.values.copy(from: rng.array(585 * 768))
            let ctx = context(threads: threads, scratchBytes: max(KVCache.reorderScratchBytes(maxPositions: 1024, d: 768),
                                                                  CrossKV.attendScratchBytes(rows: 3, maxPositions: 585, threads: threads)))
            let kv = try tensor(rng.array(3 * 768), Shape(3, 768), in: arena)
            for _ in 0..<20 { cache.append(k: kv, v: kv) }
            let q = try tensor(rng.array(3 * 768), Shape(3, 768), in: arena), out = try arena.tensor(Shape(3, 768))
            try time("decoder self attend len 20, 3 beams, 768/12", reps: 200) { try cache.attend(q: q, heads: 12, out: out, context: ctx) }
            try time("decoder cross attend 585, 3 beams, 768/12", reps: 200) { try cross.attend(q: q, heads: 12, out: out, context: ctx) }
            try time("decoder reorder [2,0,1] len 20", reps: 200) { try cache.reorder([2, 0, 1], context: ctx) }
        }
    }
}
