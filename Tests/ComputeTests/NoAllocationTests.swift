// After a warm-up, an inference-shaped sequence of every engine op (int8 GEMM and GEMV, layer
// norm, GELU, softmax, convolutions, window and channel attention, BART attention, the KV cache
// with a beam reorder, cross-attention, embedding rows) makes no heap allocation at all.
import CMallocCounter
import XCTest
@testable import Compute

final class NoAllocationTests: XCTestCase {
    /// The buffers and layers of a small DaViT-plus-BART-shaped pass.
    private final class MiniModel {
        let ctx: ComputeContext
        let arena = Arena(capacity: 16 << 20)
        let weights = Arena(capacity: 16 << 20)
        let h = 13, w = 11, c = 32, heads = 2, groups = 2, ws = 6, d = 64, beams = 3, vocab = 97, positions = 8, enc = 29
        let conv: (Tensor, Tensor), dw: (Tensor, Tensor), ln: (Tensor, Tensor)
        let qkv: Linear, proj: Linear, fc1: Linear, fc2: Linear, q: Linear, embed: Linear
        let cache: KVCache, cross: CrossKV
        let source = [2, 0, 0]
        init(pool: WorkerPool) throws {
            ctx = ComputeContext(pool: pool, scratchBytes: 4 << 20)
            let weights = self.weights
            var rng: UInt64 = 0x9E3779B97F4A7C15
            func rand() -> Float {
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int64(bitPattern: rng >> 11) % 2001 - 1000) / 1000
            }
            func tensor(_ s: Shape, scale: Float = 0.2) throws -> Tensor {
                let t = try weights.tensor(s)
                for i in 0..<t.count { t[i] = rand() * scale }
                return t
            }
            func int8(_ n: Int, _ k: Int, bias: Bool = true) throws -> Linear {
                Linear(int8: try Int8Weights.quantizing(tensor(Shape(n, k)), into: weights), bias: bias ? try tensor(Shape(n)) : nil)
            }
            let c = 32, d = 64, vocab = 97, beams = 3, positions = 8, enc = 29
            conv = (try tensor(Shape(c, 3, 7, 7)), try tensor(Shape(c)))
            dw = (try tensor(Shape(c, 1, 3, 3)), try tensor(Shape(c)))
            ln = (try tensor(Shape(c), scale: 1), try tensor(Shape(c)))
            qkv = try int8(3 * c, c)
            proj = try int8(c, c)
            fc1 = try int8(4 * c, c)
            fc2 = try int8(c, 4 * c)
            q = try int8(d, d)
            embed = try int8(vocab, d, bias: false)
            cache = try KVCache(rows: beams, maxPositions: positions, d: d, arena: weights)
            cross = try CrossKV(maxPositions: enc, d: d, arena: weights)
            cross.setLength(enc)
            for i in 0..<cross.keys.count { cross.keys[i] = rand(); cross.values[i] = rand() }
        }

        /// One pass; every temporary comes from `arena` and is released at the end.
        func run() throws {
            let mark = arena.mark()
            defer { arena.reset(to: mark) }
            let pixels = try arena.tensor(Shape(4 * h, 4 * w, 3))
            for i in 0..<pixels.count { pixels[i] = Float(i % 17) / 17 - 0.5 }
            let x = try arena.tensor(Shape(h, w, c)), y = try arena.tensor(Shape(h, w, c))
            try Ops.conv2d(pixels, weight: conv.0, bias: conv.1, stride: 4, padding: 3, into: x, context: ctx)
            Ops.layerNorm(x, weight: ln.0, bias: ln.1, eps: 1e-5, into: x, context: ctx)
            try Ops.depthwiseConv3x3(x, weight: dw.0, bias: dw.1, into: y, residual: true, context: ctx)
            // Window attention over all windows in one batch, added back into y.
            let n = Ops.windowCount(height: h, width: w, window: ws), t = ws * ws
            let win = try arena.tensor(Shape(n * t, c)), wqkv = try arena.tensor(Shape(n * t, 3 * c))
            let wout = try arena.tensor(Shape(n, t, c))
            Ops.layerNorm(y, weight: ln.0, bias: ln.1, eps: 1e-5, into: x, context: ctx)
            Ops.windowGather(x, window: ws, windows: 0..<n, into: win, context: ctx)
            try qkv.forward(win, into: wqkv, context: ctx)
            try Attention.window(qkv: wqkv.reshaped(Shape(n, t, 3 * c)), heads: heads, out: wout, context: ctx)
            try proj.forward(wout, into: win, context: ctx)
            Ops.windowScatterAdd(win, window: ws, windows: 0..<n, into: y, context: ctx)
            // MLP and channel attention on the tokens.
            let tokens = y.reshaped(Shape(h * w, c))
            let hidden = try arena.tensor(Shape(h * w, 4 * c)), tmp = try arena.tensor(Shape(h * w, c))
            try fc1.forward(tokens, into: hidden, context: ctx)
            Ops.gelu(hidden, context: ctx)
            try fc2.forward(hidden, into: tmp, context: ctx)
            Ops.addInPlace(tokens, tmp, context: ctx)
            let cq = try arena.tensor(Shape(h * w, 3 * c))
            try qkv.forward(tokens, into: cq, context: ctx)
            try Attention.channel(qkv: cq, groups: groups, out: tmp, context: ctx)
            let pooled = try arena.tensor(Shape(c))
            Ops.meanRows(tmp, into: pooled)
            // BART-shaped attention: bidirectional over 29 rows of d = 64.
            let e = try arena.tensor(Shape(enc, d)), eo = try arena.tensor(Shape(enc, d))
            for i in 0..<e.count { e[i] = Float(i % 13) / 13 - 0.5 }
            try q.forward(e, into: eo, context: ctx)
            try Attention.multiHead(q: eo, k: e, v: e, heads: 4, causal: false, out: e, context: ctx)
            // Decoder steps for 3 beams: GEMV-sized linears, cache, reorder, cross-attention, logits.
            cache.reset(rows: beams)
            let row = try arena.tensor(Shape(beams, d)), qr = try arena.tensor(Shape(beams, d))
            let a = try arena.tensor(Shape(beams, d)), logits = try arena.tensor(Shape(beams, vocab))
            for step in 0..<4 {
                for b in 0..<beams { embed.embeddingRow((step * 7 + b) % vocab, into: row.rows(b..<(b + 1)).reshaped(Shape(d))) }
                try q.forward(row, into: qr, context: ctx)
                cache.append(k: qr, v: row)
                try cache.attend(q: qr, heads: 4, out: a, context: ctx)
                try cross.attend(q: a, heads: 4, out: qr, context: ctx)
                try embed.forward(qr, into: logits, context: ctx)
                Ops.softmax(logits, context: ctx)
                try cache.reorder(source, context: ctx)
            }
        }
    }

    func testAnInferenceAllocatesNothingAfterWarmUp() throws {
        for threads in [1, 2] {
            let pool = WorkerPool(threads: threads)
            let model = try MiniModel(pool: pool)
            try model.run()  // warm-up: kernel selection, logger, lazy metadata
            try model.run()
            omc_start()
            for _ in 0..<3 { try model.run() }
            let n = omc_stop()
            XCTAssertEqual(n, 0, "\(threads) thread(s): \(n) heap allocations in 3 inference-shaped passes after warm-up")
            XCTAssertEqual(model.arena.used, 0)
        }
    }
}
