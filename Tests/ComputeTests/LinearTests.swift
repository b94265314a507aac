// Tests of Linear (torch.nn.Linear semantics): the int8 path against the fp32 path within a stated
// bound, threads and variants giving identical bits, the embedding-row lookup, and the fp32 path
// against an obvious loop.
import CKernels
import XCTest
@testable import Compute

final class LinearTests: XCTestCase {
    /// Weights, bias and input of one layer in an arena, with fp32 and int8 layers over them.
    struct Layer {
        let arena: Arena
        let x: Tensor, w: Tensor, b: Tensor
        let fp32: Linear, int8: Linear

        init(m: Int, k: Int, n: Int, seed: UInt64, bias: Bool = true) throws {
            arena = Arena(capacity: 4 * (m * k + n * k + n) + Int8Weights.packedBytes(outFeatures: n, inFeatures: k) + 4 * n + 1024)
            var rng = SeededRandom(seed)
            x = try arena.tensor(Shape(m, k)); w = try arena.tensor(Shape(n, k)); b = try arena.tensor(Shape(n))
            for i in 0..<x.count { x[i] = rng.gaussian() }
            for i in 0..<w.count { w[i] = rng.gaussian() * 0.04 }
            for i in 0..<b.count { b[i] = rng.float() * 0.1 }
            fp32 = Linear(weight: w, bias: bias ? b : nil)
            int8 = Linear(int8: try Int8Weights.quantizing(w, into: arena), bias: bias ? b : nil)
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
}
