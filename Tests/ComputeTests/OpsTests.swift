// Tests for Sources/Compute/Ops.swift against the numpy goldens in Fixtures/ops (made by
// Quantization/goldens_ops.py) and against slow plain-Swift references on random shapes.
// Every golden and reference check runs for each kernel variant the CPU has (generic, AVX2, AVX-512).
import CKernels
import COpenBLAS
import Foundation
import XCTest
@testable import Compute

final class OpsTests: XCTestCase {
    // MARK: - Fixtures

    /// Test-owned memory for inputs and outputs (the context has its own scratch).
    private var arena: Arena!
    private var context: ComputeContext!
    /// Pools live for the whole run (one per thread count), as in the engine.
    private static let pools = [1: WorkerPool(threads: 1), 2: WorkerPool(threads: 2)]

    override func setUp() {
        arena = Arena(capacity: 64 << 20)
        context = ComputeContext(pool: Self.pools[2]!, scratchBytes: 16 << 20)
    }

    override func tearDown() { ock_ops_force_isa(-1) }

    private func tensor(_ values: [Float], _ shape: Shape) throws -> Tensor {
        let t = try arena.tensor(shape)
        t.copy(from: values)
        return t
    }

    private func golden(_ name: String) throws -> (Tensor, [Float]) {
        let a = try Golden.npy("ops/\(name).npy")
        return (try tensor(a.values, Shape(a.shape)), a.values)
    }

    /// Runs `body` once per kernel variant this CPU supports, naming it.
    private func forEachVariant(_ body: (String) throws -> Void) rethrows {
        ock_ops_force_isa(-1)
        let best = ock_ops_isa()
        defer { ock_ops_force_isa(-1) }
        for level in 0...best {
            ock_ops_force_isa(Int32(level))
            XCTAssertEqual(ock_ops_isa(), Int32(level))
            try body(String(cString: ock_ops_isa_name(Int32(level))))
        }
    }

    // MARK: - Layer norm

    // Tolerance 1e-5: outputs reach about 5 in magnitude (fp32 ulp 5e-7); mean and variance of
    // 40 fp32 values carry a few ulp of relative error, so about 10 ulp of the output.
    func testLayerNormGolden() throws {
        let (x, _) = try golden("layernorm_x"), (w, _) = try golden("layernorm_w"), (b, _) = try golden("layernorm_b")
        let (_, want) = try golden("layernorm_y")
        try forEachVariant { v in
            let out = try arena.tensor(x.shape)
            Ops.layerNorm(x, weight: w, bias: b, eps: 1e-5, into: out, context: context)
            Golden.assertClose(out.toArray(), want, tolerance: 1e-5, "layerNorm \(v)")
            // In place (out aliases x).
            let y = try tensor(x.toArray(), x.shape)
            Ops.layerNorm(y, weight: w, bias: b, eps: 1e-5, into: y, context: context)
            Golden.assertClose(y.toArray(), want, tolerance: 1e-5, "layerNorm in place \(v)")
        }
    }

    // Random shapes against a float64 reference; rows large enough to be split over threads.
    // Tolerance 2e-5: inputs up to ±4 with an offset, C up to 1030.
    func testLayerNormRandomShapes() throws {
        var rng = SplitMix64(seed: 1)
        for (rows, c) in [(1, 1), (3, 15), (5, 16), (2, 17), (300, 130), (64, 1030)] {
            let xs = rng.array(rows * c, 4).map { $0 + 2 }, ws = rng.array(c, 1), bs = rng.array(c, 0.5)
            var want = [Float](repeating: 0, count: rows * c)
            for r in 0..<rows {
                let row = xs[(r * c)..<(r * c + c)].map(Double.init)
                let mean = row.reduce(0, +) / Double(c)
                let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
                for j in 0..<c { want[r * c + j] = Float((row[j] - mean) / (v + 1e-5).squareRoot() * Double(ws[j]) + Double(bs[j])) }
            }
            let x = try tensor(xs, Shape(rows, c)), w = try tensor(ws, Shape(c)), b = try tensor(bs, Shape(c))
            try forEachVariant { v in
                let out = try arena.tensor(x.shape)
                Ops.layerNorm(x, weight: w, bias: b, eps: 1e-5, into: out, context: context)
                Golden.assertClose(out.toArray(), want, tolerance: 2e-5, "layerNorm \(rows)x\(c) \(v)")
            }
        }
    }

    // MARK: - GELU and erf

    // Tolerance 1e-6: the stated accuracy of the GELU approximation (in practice the fp32 rounding
    // of the result, ≤ 2.4e-7 for |x| < 4, and exact limits beyond 10).
    func testGeluGolden() throws {
        let (x, xs) = try golden("gelu_x")
        let (_, want) = try golden("gelu_y")
        try forEachVariant { v in
            let y = try tensor(xs, x.shape)
            Ops.gelu(y, context: context)
            Golden.assertClose(y.toArray(), want, tolerance: 1e-6, "gelu \(v)")
        }
    }

    /// GELU against double precision on a dense sweep of [-10, 10] (every 2⁻¹⁴) and every
    /// 997th float bit pattern, plus the limits beyond ±10, ±inf, NaN and signed zeros.
    func testGeluSweepAndLimits() throws {
        var xs: [Float] = stride(from: -10.0, through: 10.0, by: 1.0 / 16384).map { Float($0) }
        for bits in stride(from: UInt32(0), to: UInt32.max - 997, by: 997) { xs.append(Float(bitPattern: bits)) }
        let specials: [Float] = [.infinity, -.infinity, .nan, 0, -0.0, 10.0001, -10.0001, 1e30, -1e30,
                                 .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude]
        xs += specials
        try forEachVariant { v in
            let y = try tensor(xs, Shape(xs.count))
            Ops.gelu(y, context: context)
            let got = y.toArray()
            var worst = 0.0
            for (i, x) in xs.enumerated() {
                let g = got[i]
                if x.isNaN { XCTAssertTrue(g.isNaN, "gelu(NaN) \(v)"); continue }
                if x > 10 { XCTAssertEqual(g, x, "gelu(\(x)) \(v)"); continue }
                if x < -10 { XCTAssertTrue(g == 0 && g.sign == .minus, "gelu(\(x)) = \(g) \(v)"); continue }
                let ref = 0.5 * Double(x) * erfc(-Double(x) / 2.0.squareRoot())
                worst = max(worst, abs(Double(g) - ref))
            }
            XCTAssertLessThanOrEqual(worst, 1e-6, "gelu max abs error for |x| <= 10 \(v)")
            XCTAssertEqual(got[xs.count - specials.count + 3].sign, .plus, "gelu(+0) \(v)")
            XCTAssertEqual(got[xs.count - specials.count + 4].sign, .minus, "gelu(-0) \(v)")
        }
    }

    /// erf against double precision: a dense sweep of [-6, 6] (every 2⁻¹⁴), every 1021st float
    /// bit pattern (4.2 M values, all magnitudes), and ±inf, NaN, ±0. Bound 1e-6 (the brief);
    /// measured about 1.4e-7 (exhaustively over all 2³² floats in the report).
    func testErfSweep() throws {
        let n = 1 << 16
        let xs = try arena.tensor(Shape(n)), ys = try arena.tensor(Shape(n))
        try forEachVariant { v in
            var worst = 0.0, worstAt: Float = 0
            func check(_ count: Int) {
                ock_erf_f32(xs.base, ys.base, count)
                for i in 0..<count {
                    let x = xs.base[i], y = ys.base[i]
                    if x.isNaN { XCTAssertTrue(y.isNaN, "erf(NaN) \(v)"); continue }
                    let d = abs(Double(y) - erf(Double(x)))
                    if !(d <= worst) { worst = d; worstAt = x }
                }
            }
            var k = 0
            for d in stride(from: -6.0, through: 6.0, by: 1.0 / 16384) {
                xs.base[k] = Float(d); k += 1
                if k == n { check(k); k = 0 }
            }
            for bits in stride(from: UInt32(0), to: UInt32.max - 1021, by: 1021) {
                xs.base[k] = Float(bitPattern: bits); k += 1
                if k == n { check(k); k = 0 }
            }
            for s: Float in [.infinity, -.infinity, .nan, 0, -0.0] { xs.base[k] = s; k += 1 }
            check(k)
            XCTAssertLessThanOrEqual(worst, 1e-6, "erf max abs error at \(worstAt) \(v)")
            let special = try tensor([.infinity, -.infinity, 0, -0.0], Shape(4))
            ock_erf_f32(special.base, special.base, 4)
            XCTAssertEqual(special.toArray(), [1, -1, 0, -0], "erf limits \(v)")
            XCTAssertEqual(special[3].sign, .minus, "erf(-0) \(v)")
        }
    }

    /// exp against double precision on [-87, 88]: relative error ≤ 3e-7 (about 2.5 ulp);
    /// 0 below the fp32 range, inf above it, NaN stays NaN.
    func testExp() throws {
        let xs: [Float] = stride(from: -87.0, through: 88.0, by: 1.0 / 1024).map { Float($0) }
        try forEachVariant { v in
            let y = try arena.tensor(Shape(xs.count))
            let x = try tensor(xs, Shape(xs.count))
            ock_exp_f32(x.base, y.base, xs.count)
            var worst = 0.0
            for i in 0..<xs.count { let r = exp(Double(xs[i])); worst = max(worst, abs(Double(y[i]) - r) / r) }
            XCTAssertLessThanOrEqual(worst, 3e-7, "exp max relative error \(v)")
            let s = try tensor([-.infinity, -100, 100, .infinity, .nan, 0], Shape(6))
            ock_exp_f32(s.base, s.base, 6)
            XCTAssertEqual(Array(s.toArray()[0..<4]), [0, 0, .infinity, .infinity], "exp limits \(v)")
            XCTAssertTrue(s[4].isNaN, "exp(NaN) \(v)")
            XCTAssertEqual(s[5], 1, "exp(0) \(v)")
        }
    }

    // MARK: - Softmax

    // Tolerance 1e-6: probabilities ≤ 1; exp has ≤ 3e-7 relative error and the sum of 37 terms
    // a few ulp more. Row 2 has a +80 offset (max subtraction), row 4 a -inf entry (gives 0).
    func testSoftmaxGolden() throws {
        let (x, xs) = try golden("softmax_x")
        let (_, want) = try golden("softmax_y")
        try forEachVariant { v in
            let y = try tensor(xs, x.shape)
            Ops.softmax(y, context: context)
            Golden.assertClose(y.toArray(), want, tolerance: 1e-6, "softmax \(v)")
        }
    }

    func testSoftmaxRandomShapes() throws {
        var rng = SplitMix64(seed: 2)
        for (rows, n) in [(1, 1), (3, 5), (2, 16), (4, 33), (700, 144), (5, 577)] {
            let xs = rng.array(rows * n, 12)
            var want = [Float](repeating: 0, count: rows * n)
            for r in 0..<rows {
                let row = xs[(r * n)..<(r * n + n)].map(Double.init)
                let m = row.max()!
                let e = row.map { exp($0 - m) }
                let s = e.reduce(0, +)
                for j in 0..<n { want[r * n + j] = Float(e[j] / s) }
            }
            try forEachVariant { v in
                let y = try tensor(xs, Shape(rows, n))
                Ops.softmax(y, context: context)
                Golden.assertClose(y.toArray(), want, tolerance: 1e-6, "softmax \(rows)x\(n) \(v)")
            }
        }
        let dead = try tensor([-.infinity, -.infinity], Shape(1, 2))
        Ops.softmax(dead, context: context)
        XCTAssertTrue(dead[0].isNaN && dead[1].isNaN, "a row of -inf becomes NaN, as in PyTorch")
    }

    // MARK: - Convolution

    /// Plain convolution with float64 accumulation: x [H, W, Cin], w [Cout, Cin, k, k].
    private func convReference(_ x: [Float], h: Int, w: Int, cin: Int, weight: [Float], bias: [Float]?, cout: Int,
                               k: Int, stride s: Int, pad p: Int) -> [Float] {
        let ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1
        var out = [Float](repeating: 0, count: ho * wo * cout)
        for oy in 0..<ho {
            for ox in 0..<wo {
                for o in 0..<cout {
                    var acc = Double(bias?[o] ?? 0)
                    for ci in 0..<cin {
                        for ky in 0..<k {
                            let iy = oy * s + ky - p
                            if iy < 0 || iy >= h { continue }
                            for kx in 0..<k {
                                let ix = ox * s + kx - p
                                if ix < 0 || ix >= w { continue }
                                acc += Double(x[(iy * w + ix) * cin + ci]) * Double(weight[((o * cin + ci) * k + ky) * k + kx])
                            }
                        }
                    }
                    out[(oy * wo + ox) * cout + o] = Float(acc)
                }
            }
        }
        return out
    }

    // Tolerance 2e-6: outputs are sums of 147 (7x7) or 54 (3x3) products of magnitude ≤ 0.5 and
    // reach about 3; fp32 accumulation in sgemm adds a few ulp of the partial sums.
    func testConv2dGolden() throws {
        for (name, s, p) in [("conv7", 4, 3), ("conv3", 2, 1)] {
            let (x, _) = try golden("\(name)_x"), (w, _) = try golden("\(name)_w"), (b, _) = try golden("\(name)_b")
            let (yg, want) = try golden("\(name)_y")
            XCTAssertEqual(Ops.convOutputSize(x.shape[0], kernel: w.shape[2], stride: s, padding: p), yg.shape[0])
            XCTAssertEqual(Ops.convOutputSize(x.shape[1], kernel: w.shape[2], stride: s, padding: p), yg.shape[1])
            let out = try arena.tensor(yg.shape)
            try Ops.conv2d(x, weight: w, bias: b, stride: s, padding: p, into: out, context: context)
            Golden.assertClose(out.toArray(), want, tolerance: 2e-6, name)
            XCTAssertEqual(context.scratch.used, 0, "\(name): scratch reset")
        }
    }

    /// Many shapes against the plain reference, each with a scratch arena of exactly
    /// `conv2dScratchBytes` (so the formula is proven sufficient) and a 1- and 2-thread pool.
    /// The shapes cover several im2col chunks, the channel-split and pixel-split GEMM paths,
    /// no bias, 1x1 kernels and outputs of one pixel.
    func testConv2dRandomShapes() throws {
        var rng = SplitMix64(seed: 3)
        let cases: [(h: Int, w: Int, cin: Int, cout: Int, k: Int, s: Int, p: Int, bias: Bool)] = [
            (29, 31, 3, 8, 7, 4, 3, true), (7, 5, 4, 6, 3, 2, 1, true), (9, 9, 5, 64, 3, 2, 1, true),
            (4, 6, 3, 70, 3, 1, 1, false), (1, 1, 2, 3, 3, 1, 1, true), (6, 6, 8, 5, 1, 1, 0, true),
            (3, 3, 2, 4, 3, 2, 0, true), (100, 80, 64, 8, 3, 2, 1, true), (12, 14, 16, 96, 3, 2, 1, true),
        ]
        for c in cases {
            let xs = rng.array(c.h * c.w * c.cin), ws = rng.array(c.cout * c.cin * c.k * c.k, 0.3)
            let bs: [Float]? = c.bias ? rng.array(c.cout, 0.5) : nil
            let want = convReference(xs, h: c.h, w: c.w, cin: c.cin, weight: ws, bias: bs, cout: c.cout, k: c.k, stride: c.s, pad: c.p)
            let x = try tensor(xs, Shape(c.h, c.w, c.cin)), w = try tensor(ws, Shape(c.cout, c.cin, c.k, c.k))
            let b = try bs.map { try tensor($0, Shape(c.cout)) }
            let ho = Ops.convOutputSize(c.h, kernel: c.k, stride: c.s, padding: c.p)
            let wo = Ops.convOutputSize(c.w, kernel: c.k, stride: c.s, padding: c.p)
            let bytes = Ops.conv2dScratchBytes(height: c.h, width: c.w, inChannels: c.cin, kernel: c.k, stride: c.s, padding: c.p)
            for threads in [1, 2] {
                let ctx = ComputeContext(pool: Self.pools[threads]!, scratchBytes: bytes)
                let out = try arena.tensor(Shape(ho, wo, c.cout))
                try Ops.conv2d(x, weight: w, bias: b, stride: c.s, padding: c.p, into: out, context: ctx)
                // K up to 576 products of magnitude ≤ 0.3: sums up to about 5.
                Golden.assertClose(out.toArray(), want, tolerance: 1e-5, "conv2d \(c) threads \(threads)")
                XCTAssertEqual(ctx.scratch.used, 0, "conv2d \(c): scratch reset")
            }
        }
    }

    // MARK: - Depthwise 3x3

    private func depthwiseReference(_ x: [Float], h: Int, w: Int, c: Int, weight: [Float], bias: [Float], residual: Bool) -> [Float] {
        var out = [Float](repeating: 0, count: h * w * c)
        for y in 0..<h {
            for xx in 0..<w {
                for ch in 0..<c {
                    var acc = Double(bias[ch]) + (residual ? Double(x[(y * w + xx) * c + ch]) : 0)
                    for ky in 0..<3 {
                        for kx in 0..<3 {
                            let iy = y + ky - 1, ix = xx + kx - 1
                            if iy < 0 || iy >= h || ix < 0 || ix >= w { continue }
                            acc += Double(x[(iy * w + ix) * c + ch]) * Double(weight[ch * 9 + ky * 3 + kx])
                        }
                    }
                    out[(y * w + xx) * c + ch] = Float(acc)
                }
            }
        }
        return out
    }

    // Tolerance 1e-6: each output is x + b + 9 products (magnitudes ≤ 4 in total): a few ulp.
    func testDepthwiseGolden() throws {
        let (x, _) = try golden("dwconv_x"), (w, _) = try golden("dwconv_w"), (b, _) = try golden("dwconv_b")
        let (_, want) = try golden("dwconv_y")
        try forEachVariant { v in
            let ctx = ComputeContext(pool: Self.pools[2]!, scratchBytes: Ops.depthwiseConv3x3ScratchBytes(channels: x.shape[2]))
            let out = try arena.tensor(x.shape)
            try Ops.depthwiseConv3x3(x, weight: w, bias: b, into: out, residual: true, context: ctx)
            Golden.assertClose(out.toArray(), want, tolerance: 1e-6, "depthwise \(v)")
            XCTAssertEqual(ctx.scratch.used, 0)
        }
    }

    func testDepthwiseRandomShapes() throws {
        var rng = SplitMix64(seed: 4)
        for (h, w, c) in [(1, 1, 1), (1, 5, 3), (4, 1, 17), (2, 2, 16), (7, 9, 33), (24, 24, 130)] {
            let xs = rng.array(h * w * c, 2), ws = rng.array(c * 9, 0.5), bs = rng.array(c, 0.2)
            let x = try tensor(xs, Shape(h, w, c)), wt = try tensor(ws, Shape(c, 1, 3, 3)), b = try tensor(bs, Shape(c))
            for residual in [false, true] {
                let want = depthwiseReference(xs, h: h, w: w, c: c, weight: ws, bias: bs, residual: residual)
                try forEachVariant { v in
                    let out = try arena.tensor(x.shape)
                    try Ops.depthwiseConv3x3(x, weight: wt, bias: b, into: out, residual: residual, context: context)
                    Golden.assertClose(out.toArray(), want, tolerance: 2e-6, "depthwise \(h)x\(w)x\(c) residual \(residual) \(v)")
                }
            }
        }
    }

    // MARK: - Windows

    // Exact: the partition only moves values and writes zeros.
    func testWindowPartitionGolden() throws {
        let (x, _) = try golden("window_x")
        let (yg, want) = try golden("window_y")
        XCTAssertEqual(Ops.windowCount(height: 13, width: 17, window: 6), 9)
        XCTAssertEqual(yg.shape, Shape(9, 36, 5))
        let out = try arena.tensor(yg.shape)
        out.fill(.nan)
        Ops.windowPartition(x, window: 6, into: out, context: context)
        Golden.assertClose(out.toArray(), want, tolerance: 0, "windowPartition")
    }

    /// windowMerge ∘ windowPartition is the identity on random shapes, the padding is zeros and
    /// the token order matches a plain index computation.
    func testWindowRoundTrip() throws {
        var rng = SplitMix64(seed: 5)
        for (h, w, c, ws) in [(1, 1, 1, 1), (12, 12, 4, 12), (13, 17, 5, 6), (5, 3, 2, 7), (24, 25, 3, 12), (96, 96, 8, 12)] {
            let xs = rng.array(h * w * c)
            let x = try tensor(xs, Shape(h, w, c))
            let n = Ops.windowCount(height: h, width: w, window: ws)
            let win = try arena.tensor(Shape(n, ws * ws, c))
            win.fill(.nan)
            Ops.windowPartition(x, window: ws, into: win, context: context)
            let nbw = (w + ws - 1) / ws
            var ok = true
            for wi in 0..<n {
                for t in 0..<(ws * ws) {
                    let y = (wi / nbw) * ws + t / ws, xx = (wi % nbw) * ws + t % ws
                    for ch in 0..<c {
                        let want: Float = (y < h && xx < w) ? xs[(y * w + xx) * c + ch] : 0
                        if win[(wi * ws * ws + t) * c + ch] != want { ok = false }
                    }
                }
            }
            XCTAssertTrue(ok, "windowPartition \(h)x\(w)x\(c) ws \(ws) matches the index formula")
            let back = try arena.tensor(Shape(h, w, c))
            back.fill(.nan)
            Ops.windowMerge(win, height: h, width: w, into: back, context: context)
            XCTAssertEqual(back.toArray(), xs, "windowMerge ∘ windowPartition \(h)x\(w)x\(c) ws \(ws)")
        }
    }

    // MARK: - Pooling and element-wise

    // Tolerance 1e-6: the mean of 50 fp32 values of magnitude ≤ 4 (fp32 accumulation).
    func testMeanRowsGolden() throws {
        let (x, _) = try golden("meanrows_x")
        let (yg, want) = try golden("meanrows_y")
        let out = try arena.tensor(yg.shape)
        Ops.meanRows(x, into: out)
        Golden.assertClose(out.toArray(), want, tolerance: 1e-6, "meanRows")
    }

    /// add, addInPlace and addRowBroadcast are exact fp32 additions; checked element by element.
    func testAdditions() throws {
        var rng = SplitMix64(seed: 6)
        let t = 577, c = 200
        let a = rng.array(t * c), b = rng.array(t * c), row = rng.array(c)
        let ta = try tensor(a, Shape(t, c)), tb = try tensor(b, Shape(t, c)), out = try arena.tensor(Shape(t, c))
        Ops.add(ta, tb, into: out, context: context)
        XCTAssertEqual(out.toArray(), zip(a, b).map { $0 + $1 })
        Ops.addInPlace(ta, tb, context: context)
        XCTAssertEqual(ta.toArray(), zip(a, b).map { $0 + $1 })
        let tr = try tensor(row, Shape(c))
        Ops.addRowBroadcast(tb, row: tr)
        XCTAssertEqual(tb.toArray(), b.enumerated().map { $0.element + row[$0.offset % c] })
        let pool = try arena.tensor(Shape(c))
        Ops.meanRows(out, into: pool)
        var want = [Float](repeating: 0, count: c)
        for i in 0..<c { var s = 0.0; for r in 0..<t { s += Double(out[r * c + i]) }; want[i] = Float(s / Double(t)) }
        Golden.assertClose(pool.toArray(), want, tolerance: 1e-6, "meanRows 577x200")
    }

    // MARK: - Timings (opt-in: OCELLUS_OPS_BENCH=1)

    /// Prints rough timings of the Florence-2-base shapes; skipped unless OCELLUS_OPS_BENCH is set.
    func testTimings() throws {
        guard ProcessInfo.processInfo.environment["OCELLUS_OPS_BENCH"] != nil else { throw XCTSkip("set OCELLUS_OPS_BENCH=1 to time the ops") }
        openblas_set_num_threads(1)  // the engine default: the pool supplies the parallelism
        let big = Arena(capacity: 400 << 20)
        let ctx = ComputeContext(pool: Self.pools[2]!, scratchBytes: 32 << 20)
        func time(_ what: String, _ reps: Int = 3, _ body: () throws -> Void) rethrows {
            try body()
            var best = Double.infinity
            for _ in 0..<reps {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try body()
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            print(String(format: "ops timing [%@] %@: %.2f ms", Ops.kernelVariant, what, best))
        }
        var rng = SplitMix64(seed: 7)
        func rand(_ s: Shape, _ scale: Float = 1) throws -> Tensor {
            let t = try big.tensor(s)
            for i in 0..<t.count { t[i] = rng.float(scale) }
            return t
        }
        let g = try rand(Shape(36864, 512), 3)
        time("gelu 36864x512") { Ops.gelu(g, context: ctx) }
        let ln = try rand(Shape(36864, 128)), w = try rand(Shape(128)), b = try rand(Shape(128))
        time("layerNorm 36864x128") { Ops.layerNorm(ln, weight: w, bias: b, eps: 1e-5, into: ln, context: ctx) }
        let sm = try rand(Shape(256 * 4 * 144, 144), 4)
        time("softmax 147456x144") { Ops.softmax(sm, context: ctx) }
        let cx = try rand(Shape(96, 96, 256)), cw = try rand(Shape(512, 256, 3, 3), 0.05), cb = try rand(Shape(512))
        let co = try big.tensor(Shape(48, 48, 512))
        try time("conv2d 3x3 s2 256->512 96²->48²") { try Ops.conv2d(cx, weight: cw, bias: cb, stride: 2, padding: 1, into: co, context: ctx) }
        let sx = try rand(Shape(768, 768, 3)), sw = try rand(Shape(128, 3, 7, 7), 0.1), sb = try rand(Shape(128))
        let so = try big.tensor(Shape(192, 192, 128))
        try time("conv2d 7x7 s4 3->128 768²->192²") { try Ops.conv2d(sx, weight: sw, bias: sb, stride: 4, padding: 3, into: so, context: ctx) }
        let ex = try rand(Shape(48, 48, 512)), ew = try rand(Shape(1024, 512, 3, 3), 0.02), eb = try rand(Shape(1024))
        let eo = try big.tensor(Shape(24, 24, 1024))
        try time("conv2d 3x3 s2 512->1024 48²->24²") { try Ops.conv2d(ex, weight: ew, bias: eb, stride: 2, padding: 1, into: eo, context: ctx) }
        let dw = try rand(Shape(128, 1, 3, 3)), dwo = try big.tensor(Shape(192, 192, 128))
        try time("depthwise 192²x128 residual") { try Ops.depthwiseConv3x3(so, weight: dw, bias: sb, into: dwo, residual: true, context: ctx) }
        let win = try big.tensor(Shape(256, 144, 128))
        time("windowPartition 192²x128 ws12") { Ops.windowPartition(so, window: 12, into: win, context: ctx) }
        time("windowMerge 192²x128 ws12") { Ops.windowMerge(win, height: 192, width: 192, into: dwo, context: ctx) }
        time("add 192²x128") { Ops.addInPlace(so, dwo, context: ctx) }
    }
}

final class WindowBatchTests: XCTestCase {
    /// A gathered batch equals the same windows of the full partition; scatter-add of every batch
    /// adds the un-padded windows back (x + x), for sizes that need padding and that do not.
    func testGatherAndScatterAddAgreeWithTheFullPartition() throws {
        let pool = WorkerPool(threads: 2)
        let ctx = ComputeContext(pool: pool, scratchBytes: 1 << 16)
        for (h, w, c, ws) in [(13, 17, 3, 6), (12, 12, 4, 6), (5, 7, 2, 3), (1, 1, 1, 2)] {
            let arena = Arena(capacity: 1 << 20)
            let x = try arena.tensor(Shape(h, w, c))
            for i in 0..<x.count { x[i] = Float(i % 97) - 40 }
            let n = Ops.windowCount(height: h, width: w, window: ws)
            let full = try arena.tensor(Shape(n, ws * ws, c))
            Ops.windowPartition(x, window: ws, into: full, context: ctx)
            let batch = try arena.tensor(Shape(2, ws * ws, c))
            let y = try arena.tensor(Shape(h, w, c))
            y.copy(from: x)
            var w0 = 0
            while w0 < n {
                let r = w0..<min(n, w0 + 2)
                Ops.windowGather(x, window: ws, windows: r, into: batch, context: ctx)
                for e in 0..<(r.count * ws * ws * c) {
                    XCTAssertEqual(batch[e], full[w0 * ws * ws * c + e], "\(h)x\(w)x\(c) ws \(ws) window batch \(r) element \(e)")
                }
                Ops.windowScatterAdd(batch, window: ws, windows: r, into: y, context: ctx)
                w0 += 2
            }
            for i in 0..<x.count { XCTAssertEqual(y[i], 2 * x[i], "\(h)x\(w)x\(c) ws \(ws) element \(i)") }
        }
    }
}
