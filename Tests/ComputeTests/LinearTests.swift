// Tests of Linear (torch.nn.Linear semantics): the int8 path against the fp32 path within a stated
// bound, threads and variants giving identical bits, the embedding-row lookup, the int8 residual
// level, and the fp32 path against an obvious loop.
import CKernels
import XCTest
@testable import Compute

final class LinearTests: XCTestCase {
    /// Weights, bias and input of one layer in an arena, with fp32 and int8 layers over them.
    struct Layer {
        let arena: Arena
        let x: Tensor, w: Tensor, b: Tensor
        let fp32: Linear, int8: Linear, residual: Linear

        init(m: Int, k: Int, n: Int, seed: UInt64, bias: Bool = true) throws {
            arena = Arena(capacity: 4 * (m * k + n * k + n) + 2 * (Int8Weights.packedBytes(outFeatures: n, inFeatures: k) + 4 * n) + 1024)
            var rng = SeededRandom(seed)
            x = try arena.tensor(Shape(m, k)); w = try arena.tensor(Shape(n, k)); b = try arena.tensor(Shape(n))
            for i in 0..<x.count { x[i] = rng.gaussian() }
            for i in 0..<w.count { w[i] = rng.gaussian() * 0.04 }
            for i in 0..<b.count { b[i] = rng.float() * 0.1 }
            fp32 = Linear(weight: w, bias: bias ? b : nil)
            let q = try Int8Weights.quantizing(w, into: arena)
            int8 = Linear(int8: q, bias: bias ? b : nil)
            residual = Linear(int8: q, residual: try Int8Weights.quantizingResidual(of: w, after: q, into: arena), bias: bias ? b : nil)
        }
    }

    /// Pools live for the whole test run (their threads are not meant to come and go).
    static let pools = [WorkerPool(threads: 1), WorkerPool(threads: 2)]

    func context(threads: Int) -> ComputeContext { ComputeContext(pool: LinearTests.pools[threads - 1], scratchBytes: 8 << 20) }

    func forward(_ l: Linear, _ x: Tensor, _ ctx: ComputeContext) throws -> [Float] {
        let out = Arena(capacity: 4 * x.shape[0] * l.outFeatures + 64)
        let y = try out.tensor(Shape(x.shape[0], l.outFeatures))
        try l.forward(x, into: y, context: ctx)
        return y.toArray()
    }

    /// The fp32 (OpenBLAS) path equals an obvious double-precision loop within fp32 rounding.
    func testFp32MatchesLoop() throws {
        let l = try Layer(m: 5, k: 96, n: 33, seed: 1)
        let y = try forward(l.fp32, l.x, context(threads: 1))
        for r in 0..<5 {
            for c in 0..<33 {
                var e = Double(l.b[c]), mag = abs(Double(l.b[c]))
                for i in 0..<96 { e += Double(l.x[r * 96 + i]) * Double(l.w[c * 96 + i]); mag += abs(Double(l.x[r * 96 + i] * l.w[c * 96 + i])) }
                XCTAssertEqual(Double(y[r * 33 + c]), e, accuracy: mag * 1e-5 + 1e-6)
            }
        }
    }

    /// int8 vs fp32, per element, a rigorous bound: with x = x̂ + eₓ, w = ŵ + e_w and
    /// |eₓ| ≤ δₐ = sₐ(0.5+1e-4), |e_w| ≤ δ_w = s_w(0.5+1e-4) (the quantization bound),
    /// |y₈ − y₃₂| ≤ δₐ·Σ|w| + δ_w·Σ|x̂| (+ fp32 rounding of both paths, 1e-5·Σ|x·w|).
    /// And on this Gaussian data the relative RMS error is below 2 %: each operand's rounding error
    /// is uniform with RMS s/√12 ≈ amax/440 ≈ 0.75 % of its RMS (amax ≈ 3.3σ for K = 768), the two
    /// add in quadrature to about 1.1 %.
    func testInt8MatchesFp32WithinBound() throws {
        for (m, k, n) in [(1, 768, 300), (3, 768, 64), (40, 256, 100), (7, 772, 1009)] {
            let l = try Layer(m: m, k: k, n: n, seed: UInt64(k + n))
            let ctx = context(threads: 2)
            let y8 = try forward(l.int8, l.x, ctx), y32 = try forward(l.fp32, l.x, ctx)
            guard case .int8(let q) = l.int8.storage else { return XCTFail() }
            var errSq = 0.0, refSq = 0.0
            for r in 0..<m {
                let row = (0..<k).map { Double(l.x[r * k + $0]) }
                let amax = row.map(abs).max()!
                let sa = Double(Float(amax) / 127), inv = Float(127) / Float(amax)
                let xq = row.map { Double(max(-127, min(127, (Float($0) * inv).rounded(.toNearestOrEven)))) * sa }
                for c in 0..<n {
                    var sumW = 0.0, sumX = 0.0, mag = 0.0
                    for i in 0..<k {
                        sumW += abs(Double(l.w[c * k + i])); sumX += abs(xq[i]); mag += abs(row[i] * Double(l.w[c * k + i]))
                    }
                    let bound = sa * (0.5 + 1e-4) * sumW + Double(q.scale(c)) * (0.5 + 1e-4) * sumX + 1e-5 * mag + 1e-6
                    let d = Double(y8[r * n + c]) - Double(y32[r * n + c])
                    XCTAssertLessThanOrEqual(abs(d), bound, "m\(m) k\(k) n\(n) at \(r),\(c)")
                    errSq += d * d
                    refSq += (Double(y32[r * n + c]) - Double(l.b[c])) * (Double(y32[r * n + c]) - Double(l.b[c]))
                }
            }
            XCTAssertLessThan((errSq / refSq).squareRoot(), 0.02, "relative RMS error m\(m) k\(k) n\(n)")
        }
    }

    /// One thread and two threads, GEMV and GEMM shapes, give identical bits; so do the active
    /// variant and the forced reference; and the scratch arena is released after each call.
    func testInt8ThreadsAndVariantsIdentical() throws {
        let before = Kernels.variant
        defer { try? Kernels.select(before) }
        for (m, k, n) in [(1, 768, 1009), (3, 256, 51), (5, 132, 17), (30, 64, 700), (100, 128, 40)] {
            let l = try Layer(m: m, k: k, n: n, seed: UInt64(m * n))
            let one = context(threads: 1), two = context(threads: 2)
            let a = try forward(l.int8, l.x, one)
            let b = try forward(l.int8, l.x, two)
            XCTAssertEqual(two.scratch.used, 0, "scratch released")
            Kernels.forceReference = true
            let c = try forward(l.int8, l.x, two)
            Kernels.forceReference = false
            assertBitEqual(a, b, "1 vs 2 threads m\(m) k\(k) n\(n)")
            assertBitEqual(a, c, "\(before) vs reference m\(m) k\(k) n\(n)")
        }
    }

    /// A missing bias gives the plain product; a rank-3 input is read as rows of K.
    func testInt8NoBiasAndRank3Input() throws {
        let l = try Layer(m: 6, k: 64, n: 20, seed: 4, bias: false)
        let withBias = Linear(int8: { guard case .int8(let q) = l.int8.storage else { fatalError() }; return q }(), bias: l.b)
        let ctx = context(threads: 2)
        let y0 = try forward(l.int8, l.x, ctx)
        let y1 = try forward(withBias, l.x, ctx)
        for r in 0..<6 { for c in 0..<20 { XCTAssertEqual(y1[r * 20 + c], y0[r * 20 + c] + l.b[c]) } }
        let out = Arena(capacity: 4 * 120 + 64)
        let y3 = try out.tensor(Shape(2, 3, 20))
        try l.int8.forward(l.x.reshaped(Shape(2, 3, 64)), into: y3, context: ctx)
        assertBitEqual(y3.toArray(), y0, "rank-3 input")
    }

    /// The scratch arena too small for the quantized activations is an error, not a crash.
    func testInt8ScratchTooSmallThrows() throws {
        let l = try Layer(m: 64, k: 256, n: 16, seed: 9)
        let ctx = ComputeContext(pool: LinearTests.pools[0], scratchBytes: 1024)
        XCTAssertThrowsError(try forward(l.int8, l.x, ctx)) { XCTAssertTrue($0 is MemoryError) }
    }

    /// Embedding rows: int8 rows dequantize to q·scale exactly and stay within the quantization
    /// bound of the fp32 row; fp32 rows are copied.
    func testEmbeddingRow() throws {
        let l = try Layer(m: 1, k: 68, n: 37, seed: 12)
        guard case .int8(let q) = l.int8.storage else { return XCTFail() }
        let out = Arena(capacity: 4 * 68 + 64)
        let row = try out.tensor(Shape(68))
        for id in [0, 15, 16, 36] {
            l.int8.embeddingRow(id, into: row)
            for i in 0..<68 {
                XCTAssertEqual(row[i], Float(q.quantized(id, i)) * q.scale(id))
                XCTAssertLessThanOrEqual(abs(Double(row[i]) - Double(l.w[id * 68 + i])), Double(q.scale(id)) * (0.5 + 1e-4))
            }
            l.fp32.embeddingRow(id, into: row)
            for i in 0..<68 { XCTAssertEqual(row[i], l.w[id * 68 + i]) }
        }
    }

    // MARK: - Residual level

    /// A residual layer against the exact product x·wᵀ + b, a rigorous bound per element, with
    /// first-level activations a₁ (rounding ≤ δ₁ = sₐ(0.5+1e-4)), first-level weights W and the
    /// residual level R (rounding ≤ δᵣ), fp32 rounding of the products within 1e-5·Σ|x·w|.
    /// - Few rows (≤ `activationResidualMaxRows`): the activations' residual x − a₁ is quantized
    ///   to a₂ (δ₂) and the layer computes W·a₁ + W·a₂ + R·a₁, so x·w − y = R·a₂ + e₂·w + (a₁+a₂)·eᵣ:
    ///   |error| ≤ Σ|R|(δ₁+δ₂) + δ₂Σ|w| + δᵣΣ(|x|+δ₂). On Gaussian data the relative RMS error is
    ///   below 1e-3 and under 5 % of plain int8's.
    /// - Many rows: W·a₁ + R·a₁, so x·w − y = e₁·w + a₁·eᵣ: |error| ≤ δ₁Σ|w| + δᵣΣ|a₁|; only the
    ///   activation half of plain int8's error is left (relative RMS under 0.8 of plain int8's).
    /// GEMV, few-row GEMM, and many rows over several chunks.
    func testResidualIsCloseToFp32() throws {
        for (m, k, n) in [(1, 768, 300), (3, 256, 51), (4, 64, 700), (150, 128, 40), (70, 64, 700)] {
            let l = try Layer(m: m, k: k, n: n, seed: UInt64(3 * k + n))
            let ctx = context(threads: 2)
            let yr = try forward(l.residual, l.x, ctx), y8 = try forward(l.int8, l.x, ctx)
            XCTAssertEqual(ctx.scratch.used, 0, "scratch released")
            guard let r = l.residual.residual else { return XCTFail() }
            let twoLevels = m <= Linear.activationResidualMaxRows
            var errR = 0.0, err8 = 0.0, refSq = 0.0
            for row in 0..<m {
                let xs = (0..<k).map { l.x[row * k + $0] }
                let amax = xs.map(abs).max()!
                let sa = amax / 127, inv = 127 / amax
                let a1 = xs.map { max(-127, min(127, ($0 * inv).rounded(.toNearestOrEven))) * sa }
                let x2 = (0..<k).map { xs[$0] - a1[$0] }
                let sa2 = Double(x2.map(abs).max()! / 127)
                let d1 = Double(sa) * (0.5 + 1e-4), d2 = sa2 * (0.5 + 1e-4), dr = { (c: Int) in Double(r.scale(c)) * (0.5 + 1e-4) }
                for c in 0..<n {
                    var exact = Double(l.b[c]), sumR = 0.0, sumW = 0.0, sumX = 0.0, sumA = 0.0, mag = 0.0
                    for i in 0..<k {
                        let wi = Double(l.w[c * k + i]), xi = Double(xs[i])
                        exact += xi * wi
                        sumR += abs(Double(r.quantized(c, i)) * Double(r.scale(c)))
                        sumW += abs(wi); sumX += abs(xi) + d2; sumA += abs(Double(a1[i])); mag += abs(xi * wi)
                    }
                    let bound = twoLevels ? sumR * (d1 + d2) + d2 * sumW + dr(c) * sumX + 1e-5 * mag + 1e-6
                                          : d1 * sumW + dr(c) * sumA + 1e-5 * mag + 1e-6
                    XCTAssertLessThanOrEqual(abs(Double(yr[row * n + c]) - exact), bound, "m\(m) k\(k) n\(n) at \(row),\(c)")
                    errR += (Double(yr[row * n + c]) - exact) * (Double(yr[row * n + c]) - exact)
                    err8 += (Double(y8[row * n + c]) - exact) * (Double(y8[row * n + c]) - exact)
                    refSq += (exact - Double(l.b[c])) * (exact - Double(l.b[c]))
                }
            }
            if twoLevels {
                XCTAssertLessThan((errR / err8).squareRoot(), 0.05, "residual vs plain int8 error m\(m) k\(k) n\(n)")
                XCTAssertLessThan((errR / refSq).squareRoot(), 1e-3, "relative RMS error m\(m) k\(k) n\(n)")
            } else {
                XCTAssertLessThan((errR / err8).squareRoot(), 0.8, "residual vs plain int8 error m\(m) k\(k) n\(n)")
            }
        }
    }

    /// The residual path gives identical bits on one and two threads and with the reference
    /// variant; a view of some outputs equals those columns of the whole layer.
    func testResidualThreadsVariantsAndOutputViews() throws {
        let before = Kernels.variant
        defer { try? Kernels.select(before) }
        for (m, k, n) in [(1, 768, 1009), (3, 256, 51), (130, 128, 40)] {
            let l = try Layer(m: m, k: k, n: n, seed: UInt64(m + n))
            let one = context(threads: 1), two = context(threads: 2)
            let a = try forward(l.residual, l.x, one), b = try forward(l.residual, l.x, two)
            Kernels.forceReference = true
            let c = try forward(l.residual, l.x, two)
            Kernels.forceReference = false
            assertBitEqual(a, b, "1 vs 2 threads m\(m) k\(k) n\(n)")
            assertBitEqual(a, c, "\(before) vs reference m\(m) k\(k) n\(n)")
            guard let view = l.residual.outputs(16..<n) else { return XCTFail("no view") }
            XCTAssertNotNil(view.residual)
            let v = try forward(view, l.x, two)
            var cols: [Float] = []
            for row in 0..<m { cols += a[(row * n + 16)..<(row * n + n)] }
            assertBitEqual(v, cols, "outputs 16..<\(n)")
        }
    }

    /// The scratch a residual layer asks for is enough, and less is an error, not a crash.
    func testResidualScratch() throws {
        for (m, k, n) in [(100, 128, 300), (3, 256, 500)] {
            let l = try Layer(m: m, k: k, n: n, seed: 21)
            let exact = Linear.scratchBytes(rows: m, inFeatures: k) + Linear.residualScratchBytes(rows: m, inFeatures: k, outFeatures: n)
            let ok = ComputeContext(pool: LinearTests.pools[1], scratchBytes: exact)
            let y = try forward(l.residual, l.x, ok)
            assertBitEqual(y, try forward(l.residual, l.x, context(threads: 2)), "exact scratch m\(m)")
            let short = ComputeContext(pool: LinearTests.pools[1], scratchBytes: Linear.scratchBytes(rows: m, inFeatures: k))
            XCTAssertThrowsError(try forward(l.residual, l.x, short)) { XCTAssertTrue($0 is MemoryError) }
        }
    }

    /// Embedding rows of a residual layer: q·scale + r·rscale, within the residual's bound of the
    /// fp32 row.
    func testResidualEmbeddingRow() throws {
        let l = try Layer(m: 1, k: 68, n: 37, seed: 13)
        guard case .int8(let q) = l.residual.storage, let r = l.residual.residual else { return XCTFail() }
        let out = Arena(capacity: 4 * 68 + 64)
        let row = try out.tensor(Shape(68))
        for id in [0, 15, 16, 36] {
            l.residual.embeddingRow(id, into: row)
            for i in 0..<68 {
                XCTAssertEqual(row[i], Float(q.quantized(id, i)) * q.scale(id) + Float(r.quantized(id, i)) * r.scale(id))
                XCTAssertLessThanOrEqual(abs(Double(row[i]) - Double(l.w[id * 68 + i])), Double(r.scale(id)) * (0.5 + 1e-4) + 1e-7)
            }
        }
    }
}
