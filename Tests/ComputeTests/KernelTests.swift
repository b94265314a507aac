// Tests of the int8 kernels (ckernels.h): every SIMD variant this CPU runs must equal the plain
// reference bit for bit, the reference must equal an obvious Swift loop, and the quantization
// error must stay within its stated bound.
import CKernels
import XCTest
@testable import Compute

// MARK: - Helpers

/// A small deterministic generator (SplitMix64), so failures reproduce.
typealias SeededRandom = SplitMix64

extension SplitMix64 {
    init(_ seed: UInt64) { self.init(seed: seed) }
    /// Roughly normal (sum of 4 uniforms), unit variance.
    mutating func gaussian() -> Float { (float() + float() + float() + float()) * 0.866 }
}

/// One variant's table plus its name.
struct Variant {
    let name: String
    let table: UnsafePointer<ock_kernels>
    var offset: Bool { table.pointee.act_offset != 0 }
}

/// Every variant this CPU supports, reference first.
func supportedVariants() -> [Variant] {
    Kernels.supported.map { Variant(name: $0, table: Kernels.table($0)!) }
}

/// Quantized activations and packed weights of one problem, with a reference result.
final class Problem {
    let m: Int, k: Int, n: Int
    var x: [Float]
    var w: [Float]
    var bias: [Float]?
    var packed: [Int8]
    var sw: [Float]

    init(m: Int, k: Int, n: Int, bias: Bool, seed: UInt64, fill: ((inout SeededRandom, Int, Int) -> (Float, Float))? = nil) {
        self.m = m; self.k = k; self.n = n
        var rng = SeededRandom(seed)
        x = (0..<(m * k)).map { _ in rng.gaussian() * 3 }
        w = (0..<(n * k)).map { _ in rng.gaussian() * 0.05 }
        if let f = fill {
            for i in 0..<max(m * k, n * k) {
                let (xv, wv) = f(&rng, i / k, i % k)
                if i < m * k { x[i] = xv }
                if i < n * k { w[i] = wv }
            }
        }
        self.bias = bias ? (0..<n).map { _ in rng.float() } : nil
        packed = [Int8](repeating: 0, count: Int(ock_packed_bytes(n, k)))
        sw = [Float](repeating: 0, count: n)
        ock_pack_weights(w, n, k, &packed, &sw)
    }

    /// Quantizes x with variant `v` (in its own form) and returns (stored bytes, scales).
    func quantize(_ v: Variant) -> ([Int8], [Float]) {
        var q = [Int8](repeating: 0, count: m * k)
        var s = [Float](repeating: -1, count: m)
        q.withUnsafeMutableBufferPointer { qp in
            s.withUnsafeMutableBufferPointer { sp in
                x.withUnsafeBufferPointer { xp in
                    Kernels.quantize(v.table, xp.baseAddress!, ldx: k, k: k, rows: 0..<m, into: qp.baseAddress!, ldq: k, scale: sp.baseAddress!)
                }
            }
        }
        return (q, s)
    }

    /// y from variant `v`'s quantize and GEMM over rows/panels (default: all); `y` starts as `fill`.
    func run(_ v: Variant, rows: Range<Int>? = nil, panels: Range<Int>? = nil, fill: Float = .nan,
             qOverride: [Int8]? = nil, saOverride: [Float]? = nil) -> [Float] {
        var (q, sa) = quantize(v)
        if let qo = qOverride { q = v.offset ? qo.map { Int8(bitPattern: UInt8(bitPattern: $0) ^ 0x80) } : qo }
        if let so = saOverride { sa = so }
        var y = [Float](repeating: fill, count: m * n)
        q.withUnsafeBufferPointer { qp in
            sa.withUnsafeBufferPointer { sap in
                packed.withUnsafeBufferPointer { wp in
                    sw.withUnsafeBufferPointer { swp in
                        y.withUnsafeMutableBufferPointer { yp in
                          (bias ?? [0]).withUnsafeBufferPointer { bp in
                            let b = bias == nil ? nil : bp.baseAddress
                            var args = ock_gemm_args(m: m, k: k, n: n, qa: qp.baseAddress!, lda: k, sa: sap.baseAddress!,
                                                     qw: wp.baseAddress!, sw: swp.baseAddress!, bias: b,
                                                     y: yp.baseAddress!, ldy: n)
                            Kernels.gemm(v.table, &args, rows: rows ?? 0..<m, panels: panels ?? 0..<((n + 15) / 16))
                          }
                        }
                    }
                }
            }
        }
        return y
    }
}

/// Asserts two fp32 arrays are identical bit for bit, naming the first difference.
func assertBitEqual(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, what, file: file, line: line)
    for i in 0..<min(a.count, b.count) where a[i].bitPattern != b[i].bitPattern {
        XCTFail("\(what): element \(i) differs: \(a[i]) vs \(b[i]) (and maybe more)", file: file, line: line)
        return
    }
}

// MARK: - Tests

final class KernelTests: XCTestCase {
    let reference = Variant(name: "reference", table: Kernels.table("reference")!)

    /// The reference GEMM equals an obvious Swift loop over the packed bytes, bit for bit.
    func testReferenceEqualsPlainSwiftLoop() {
        for (m, k, n) in [(1, 4, 1), (3, 12, 17), (5, 68, 33), (2, 260, 16)] {
            let p = Problem(m: m, k: k, n: n, bias: true, seed: UInt64(m * 1000 + k + n))
            let (q, sa) = p.quantize(reference)
            let y = p.run(reference)
            for r in 0..<m {
                for c in 0..<n {
                    var acc: Int32 = 0
                    for i in 0..<k {
                        acc &+= Int32(q[r * k + i]) * Int32(p.packed[Int8Weights.offset(n: c, k: i, inFeatures: k)])
                    }
                    var e = Float(acc) * sa[r]
                    e = e * p.sw[c]
                    e = e + p.bias![c]
                    XCTAssertEqual(y[r * n + c].bitPattern, e.bitPattern, "reference m\(m) k\(k) n\(n) at \(r),\(c)")
                }
            }
        }
    }

    /// The reference quantizer follows the documented rule, and the error bound holds:
    /// |x − q·s| ≤ s·(0.5 + 1e-4); a zero row gives s = 0 and q = 0.
    func testQuantizeRuleAndBound() {
        let k = 100
        var rng = SeededRandom(7)
        var x = (0..<(4 * k)).map { _ in rng.gaussian() }
        for i in 0..<k { x[k + i] = 0 }                          // row 1: zeros
        for i in 0..<k { x[2 * k + i] = i % 2 == 0 ? 5 : -5 }    // row 2: ±amax everywhere
        x[3 * k + 10] = 1e-38                                    // row 3: subnormal-ish amax counts as zero
        for i in 0..<k where i != 10 { x[3 * k + i] = 0 }
        let p = Problem(m: 4, k: k, n: 1, bias: false, seed: 1)
        p.x = x
        let (q, s) = p.quantize(reference)
        XCTAssertEqual(s[1], 0); XCTAssertTrue(q[k..<(2 * k)].allSatisfy { $0 == 0 })
        XCTAssertEqual(s[3], 0); XCTAssertTrue(q[(3 * k)..<(4 * k)].allSatisfy { $0 == 0 })
        XCTAssertTrue(q[(2 * k)..<(3 * k)].allSatisfy { $0 == 127 || $0 == -127 })
        for r in [0, 2] {
            let amax = x[(r * k)..<((r + 1) * k)].map(abs).max()!
            XCTAssertEqual(s[r], amax / 127)
            let inv: Float = 127 / amax
            for i in 0..<k {
                let expect = max(-127, min(127, (x[r * k + i] * inv).rounded(.toNearestOrEven)))
                XCTAssertEqual(Float(q[r * k + i]), expect, "rule at \(r),\(i)")
                let err = abs(Double(x[r * k + i]) - Double(q[r * k + i]) * Double(s[r]))
                XCTAssertLessThanOrEqual(err, Double(s[r]) * (0.5 + 1e-4), "bound at \(r),\(i)")
            }
        }
        // Weights follow the same rule per output channel.
        let wp = Problem(m: 1, k: 64, n: 37, bias: false, seed: 11)
        for c in 0..<37 {
            let s = wp.sw[c]
            for i in 0..<64 {
                let qv = wp.packed[Int8Weights.offset(n: c, k: i, inFeatures: 64)]
                let err = abs(Double(wp.w[c * 64 + i]) - Double(qv) * Double(s))
                XCTAssertLessThanOrEqual(err, Double(s) * (0.5 + 1e-4), "weight bound at \(c),\(i)")
            }
        }
        // Padding rows of the last panel are zero.
        for c in 37..<48 { for i in 0..<64 { XCTAssertEqual(wp.packed[Int8Weights.offset(n: c, k: i, inFeatures: 64)], 0) } }
    }

    /// Every variant's quantizer stores the reference's q (in its own form) and the same scales.
    func testVariantQuantizeEqualsReference() {
        for v in supportedVariants() {
            for k in [4, 8, 12, 20, 68, 772, 3072] {
                let p = Problem(m: 5, k: k, n: 1, bias: false, seed: UInt64(k))
                for i in 0..<k { p.x[k + i] = 0 }                       // a zero row
                for i in 0..<k { p.x[2 * k + i] = i % 3 == 0 ? -2 : 2 }  // amax everywhere
                let (q0, s0) = p.quantize(reference)
                let (q1, s1) = p.quantize(v)
                let decoded = v.offset ? q1.map { Int8(bitPattern: UInt8(bitPattern: $0) ^ 0x80) } : q1
                XCTAssertEqual(decoded, q0, "\(v.name) q, k=\(k)")
                assertBitEqual(s1, s0, "\(v.name) scales, k=\(k)")
            }
        }
    }

    /// Every variant's GEMM equals the reference bit for bit over awkward shapes: M = 1, small M,
    /// odd N (1, 17, 1009), K not a multiple of any SIMD block, with and without bias.
    func testVariantsEqualReferenceBitForBit() {
        let shapes = [(1, 4, 1), (1, 768, 17), (2, 12, 33), (3, 132, 100), (5, 68, 1009), (7, 256, 64),
                      (13, 772, 50), (37, 260, 129), (64, 3072, 20), (1, 768, 1009)]
        for v in supportedVariants() where v.name != "reference" {
            for (i, (m, k, n)) in shapes.enumerated() {
                for bias in [false, true] {
                    let p = Problem(m: m, k: k, n: n, bias: bias, seed: UInt64(i * 2 + (bias ? 1 : 0)))
                    assertBitEqual(p.run(v), p.run(reference), "\(v.name) m\(m) k\(k) n\(n) bias \(bias)")
                }
            }
        }
    }

    /// Outputs too big for the caches take the streaming-store path (VNNI), and many rows with a
    /// deep K are cut into row blocks: both still equal the reference.
    func testLargeOutputsAndRowBlocks() {
        for v in supportedVariants() where v.name != "reference" {
            for (m, k, n) in [(600, 64, 1800), (200, 3072, 20), (577, 128, 96)] {
                let p = Problem(m: m, k: k, n: n, bias: true, seed: UInt64(m + n))
                assertBitEqual(p.run(v), p.run(reference), "\(v.name) m\(m) k\(k) n\(n)")
            }
        }
    }

    /// The int32 accumulation itself is exact: with unit scales and no bias y = Float(acc), which
    /// every variant must give equal to the exact sums (|acc| < 2^24 here, so the conversion is exact).
    func testAccumulatorsExact() {
        for v in supportedVariants() {
            let p = Problem(m: 6, k: 516, n: 40, bias: false, seed: 99)
            let (q, _) = p.quantize(reference)
            let ones = [Float](repeating: 1, count: p.m)
            p.sw = [Float](repeating: 1, count: p.n)
            let y = p.run(v, qOverride: q, saOverride: ones)
            var acc = [Int32](repeating: 0, count: p.m * p.n)
            q.withUnsafeBufferPointer { qp in
                p.packed.withUnsafeBufferPointer { wp in
                    var args = ock_gemm_args(m: p.m, k: p.k, n: p.n, qa: qp.baseAddress!, lda: p.k, sa: nil,
                                             qw: wp.baseAddress!, sw: nil, bias: nil, y: nil, ldy: p.n)
                    ock_gemm_acc_ref(&args, &acc, p.n)
                }
            }
            XCTAssertEqual(y.map { Int32($0) }, acc, "\(v.name) accumulators")
        }
    }

    /// Extreme values: ±127 everywhere (products that would saturate vpmaddubsw without the sign
    /// trick), all-equal signs, large K, zero activation rows and zero weight rows.
    func testExtremeValues() {
        let patterns: [(String, (inout SeededRandom, Int, Int) -> (Float, Float))] = [
            ("all +", { _, _, _ in (1, 1) }),
            ("x + w -", { _, _, _ in (1, -1) }),
            ("x - w -", { _, _, _ in (-1, -1) }),
            ("alternating", { _, r, c in ((r + c) % 2 == 0 ? 1 : -1, c % 3 == 0 ? -1 : 1) }),
            ("random signs", { rng, _, _ in (rng.float() < 0 ? -1 : 1, rng.float() < 0 ? -1 : 1) }),
        ]
        for v in supportedVariants() where v.name != "reference" {
            for (name, f) in patterns {
                for (m, k, n) in [(1, 4096, 33), (3, 4096, 16), (8, 2052, 40)] {
                    let p = Problem(m: m, k: k, n: n, bias: true, seed: 5, fill: f)
                    XCTAssertTrue(p.packed.allSatisfy { $0 == 127 || $0 == -127 || $0 == 0 })
                    assertBitEqual(p.run(v), p.run(reference), "\(v.name) \(name) m\(m) k\(k) n\(n)")
                }
            }
            // Zero rows of x and zero rows of w (scale 0).
            let p = Problem(m: 9, k: 100, n: 35, bias: true, seed: 3)
            for i in 0..<100 { p.x[4 * 100 + i] = 0; p.w[17 * 100 + i] = 0 }
            ock_pack_weights(p.w, p.n, p.k, &p.packed, &p.sw)
            XCTAssertEqual(p.sw[17], 0)
            let y = p.run(v)
            assertBitEqual(y, p.run(reference), "\(v.name) zero rows")
            for c in 0..<35 { XCTAssertEqual(y[4 * 35 + c], p.bias![c], "zero activation row gives the bias") }
        }
    }

    /// Sub-ranges of rows and panels compute exactly their outputs and touch nothing else.
    func testRowAndPanelRanges() {
        for v in supportedVariants() {
            let p = Problem(m: 11, k: 132, n: 70, bias: true, seed: 21)
            let full = p.run(reference)
            for (rows, panels) in [(1..<4, 1..<3), (0..<11, 4..<5), (10..<11, 0..<5), (2..<9, 0..<1)] {
                let y = p.run(v, rows: rows, panels: panels, fill: 12345)
                for r in 0..<11 {
                    for c in 0..<70 {
                        let inside = rows.contains(r) && panels.contains(c / 16)
                        let expect = inside ? full[r * 70 + c] : 12345
                        XCTAssertEqual(y[r * 70 + c].bitPattern, expect.bitPattern, "\(v.name) rows \(rows) panels \(panels) at \(r),\(c)")
                    }
                }
            }
        }
    }

    /// The selection rule: the reference is always available; a known variant is honoured where
    /// supported; unknown names and unsupported variants fall back to the best with a status.
    func testSelectionRule() {
        XCTAssertEqual(Kernels.choose(request: nil).variant, Kernels.best)
        XCTAssertEqual(Kernels.choose(request: "reference").variant, "reference")
        XCTAssertEqual(Kernels.choose(request: "reference").status, 0)
        let bogus = Kernels.choose(request: "no-such-variant")
        XCTAssertEqual(bogus.status, 1); XCTAssertEqual(bogus.variant, Kernels.best)
        for name in Kernels.compiled {
            let c = Kernels.choose(request: name)
            if Kernels.supported.contains(name) { XCTAssertEqual(c.variant, name); XCTAssertEqual(c.status, 0) }
            else { XCTAssertEqual(c.status, 2); XCTAssertEqual(c.variant, Kernels.best) }
        }
        XCTAssertEqual(Kernels.compiled.first, "reference")
        XCTAssertEqual(Kernels.supported.first, "reference")
        #if arch(x86_64)
        XCTAssertEqual(Kernels.compiled, ["reference", "avx2", "avx512vnni"])
        let unsupported = Kernels.choose(request: "neon")
        XCTAssertEqual(unsupported.status, 1, "neon is not compiled on x86-64")
        #endif
    }

    /// The Swift flag switches the active table (and its name) and back.
    func testForceReferenceFlag() throws {
        let before = Kernels.variant
        defer { try? Kernels.select(before) }
        Kernels.forceReference = true
        XCTAssertEqual(Kernels.variant, "reference")
        XCTAssertEqual(String(cString: ock_kernels_active()!.pointee.name), "reference")
        XCTAssertTrue(Kernels.forceReference)
        Kernels.forceReference = false
        XCTAssertEqual(Kernels.variant, Kernels.best)
        XCTAssertThrowsError(try Kernels.select("no-such-variant")) {
            XCTAssertEqual($0 as? KernelError, .unknownVariant("no-such-variant", known: Kernels.compiled))
        }
        // Unless the environment asked for one, the process starts on the best variant.
        if ProcessEnvironment.value("OCELLUS_KERNELS") == nil { XCTAssertEqual(before, Kernels.best) }
    }

    /// Splitting kernel work over the pool many times with tiny tasks: `run`
    /// must not return while a worker still holds the task closure (before the fix in WorkerPool
    /// .drain this trapped in withoutActuallyEscaping about one run in three).
    func testPoolSplitsRepeatedly() {
        let pool = LinearTests.pools[1]
        let peak = Kernels.table("reference")!.pointee.peak!
        var total = 0.0
        for _ in 0..<100_000 {
            var rates = (0.0, 0.0)
            pool.run(2) { i in let r = peak(100); if i == 0 { rates.0 = r } else { rates.1 = r } }
            total += rates.0 + rates.1
        }
        XCTAssertGreaterThan(total, 0)
    }

    /// The peak microbenchmark of each variant returns a positive, finite rate.
    func testPeakRuns() {
        for v in supportedVariants() {
            let g = v.table.pointee.peak!(20_000)
            XCTAssertTrue(g.isFinite && g > 0, "\(v.name) peak \(g)")
        }
    }
}
