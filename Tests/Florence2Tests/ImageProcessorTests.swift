// The image processor against Pillow and transformers: bit-exact uint8 resizes (goldens from
// Quantization/goldens_image.py), the fast kernel against the reference one, the fp32
// normalisation, allocation-free steady state, config errors, and a rough timing.
import CMallocCounter
import Foundation
import XCTest
@testable import Compute
@testable import Florence2

// MARK: - Test pictures (the same bytes as goldens_image.py's `picture`)

/// `lcg_bytes` of goldens_image.py.
func lcgBytes(_ n: Int, seed: Int) -> [UInt8] {
    var s = UInt32(seed & 0x7FFF_FFFF)
    var out = [UInt8](repeating: 0, count: n)
    for i in 0..<n {
        s = (s &* 1_103_515_245 &+ 12345) & 0x7FFF_FFFF
        out[i] = UInt8((s >> 16) & 0xFF)
    }
    return out
}

/// `picture(kind, w, h, seed)` of goldens_image.py: [h, w, 3] bytes.
func testPicture(_ kind: String, _ w: Int, _ h: Int, seed: Int) -> [UInt8] {
    let noise = lcgBytes(w * h * 3, seed: seed)
    if kind == "noise" { return noise }
    var out = [UInt8](repeating: 0, count: w * h * 3)
    for y in 0..<h {
        for x in 0..<w {
            for c in 0..<3 {
                let i = (y * w + x) * 3 + c
                var v = ((x * 251) / w + (y * 127) / h + c * 85) & 255
                v ^= Int(noise[i]) & 31
                let band = y >= h / 4 && y < h / 2
                if band { v = 0 }
                if band && x >= w / 3 && x < w / 3 + max(1, w / 5) { v = 255 }
                out[i] = UInt8(v)
            }
        }
    }
    return out
}

/// FNV-1a 64 of `bytes`, as hex (goldens_image.py's `fnv1a64`).
func fnv1a64(_ bytes: [UInt8]) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

private struct Case: Decodable {
    let name: String, kind: String, seed: Int, width: Int, height: Int
    let out_width: Int, out_height: Int, filter: Int, fnv1a64: String
    let rows: [Int]?
}

private struct Pair: Decodable {
    let width: Int, height: Int, out_width: Int, out_height: Int, filter: Int, seed: Int, fnv1a64: String
}

private struct Manifest: Decodable {
    let pillow: String
    let cases: [Case]
    let random_pairs: [Pair]
    let processed_rows: [Int]
}

/// A picture in the processor's input protocol.
private struct Pixels: RGBPixels {
    let width: Int, height: Int, bytes: [UInt8]
    func withRGBBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R { try bytes.withUnsafeBufferPointer(body) }
}

private func imageConfig(width: Int, height: Int, resample: Int = 3) -> Florence2ImageConfig {
    Florence2ImageConfig(height: height, width: width, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225],
                         rescaleFactor: Float(1.0 / 255.0), resample: resample, seqLength: 577)
}

final class ImageProcessorTests: XCTestCase {
    private func manifest() throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: Golden.url("image/manifest.json")))
    }

    /// Resizes with the uint8 kernel (`reference` picks the plain one).
    private func resize(_ src: [UInt8], _ w: Int, _ h: Int, _ ow: Int, _ oh: Int, _ filter: ResampleFilter,
                        reference: Bool = false) throws -> [UInt8] {
        let arena = Arena(capacity: ImageResample.scratchBytes(inWidth: w, inHeight: h, outWidth: ow, outHeight: oh, filter: filter))
        var out = [UInt8](repeating: 0, count: ow * oh * 3)
        try src.withUnsafeBufferPointer { s in
            try out.withUnsafeMutableBufferPointer { o in
                try ImageResample.resize(rgb: s, width: w, height: h, into: o, outWidth: ow, outHeight: oh,
                                         filter: filter, scratch: arena, reference: reference)
            }
        }
        XCTAssertEqual(arena.used, 0, "scratch released")
        return out
    }

    // MARK: - Against Pillow

    /// Every golden case, fast and reference kernels: the bytes equal Pillow's (max error 0),
    /// whole-image hash included for the cases stored as rows only.
    func testResizeMatchesPillowExactly() throws {
        let m = try manifest()
        XCTAssertEqual(m.cases.count, 16)
        for c in m.cases {
            let src = testPicture(c.kind, c.width, c.height, seed: c.seed)
            if c.rows == nil, c.width * c.height <= 64 * 64 {
                let stored = try Golden.npy("image/\(c.name).input.npy")
                XCTAssertEqual(stored.values, src.map(Float.init), "\(c.name): the test picture generator differs from the script's")
            }
            let filter = try XCTUnwrap(ResampleFilter(rawValue: c.filter))
            for reference in [false, true] {
                let out = try resize(src, c.width, c.height, c.out_width, c.out_height, filter, reference: reference)
                let what = "\(c.name) (\(reference ? "reference" : "fast"))"
                XCTAssertEqual(fnv1a64(out), c.fnv1a64, "\(what): hash of the whole output")
                let rowBytes = c.out_width * 3
                var got: [UInt8] = []
                let golden: NPYArray
                if let rows = c.rows {
                    golden = try Golden.npy("image/\(c.name).rows.npy")
                    for r in rows { got += out[(r * rowBytes)..<((r + 1) * rowBytes)] }
                } else {
                    golden = try Golden.npy("image/\(c.name).npy")
                    got = out
                }
                Golden.assertClose(got.map(Float.init), golden.values, tolerance: 0, what)
            }
        }
    }

    /// 80 seeded random size pairs (1..60, both filters, either pass order): whole-output hashes
    /// equal Pillow's, for the fast kernel and the reference.
    func testRandomSizesMatchPillow() throws {
        let m = try manifest()
        XCTAssertEqual(m.random_pairs.count, 80)
        var vfirst = 0
        for p in m.random_pairs {
            let src = testPicture("noise", p.width, p.height, seed: p.seed)
            let filter = try XCTUnwrap(ResampleFilter(rawValue: p.filter))
            let what = "\(p.width)x\(p.height) -> \(p.out_width)x\(p.out_height) filter \(p.filter)"
            XCTAssertEqual(fnv1a64(try resize(src, p.width, p.height, p.out_width, p.out_height, filter)), p.fnv1a64, what)
            XCTAssertEqual(fnv1a64(try resize(src, p.width, p.height, p.out_width, p.out_height, filter, reference: true)), p.fnv1a64, what)
            let dh = p.height - p.out_height, dw = p.width - p.out_width
            if dh > 0 && dh > 2 * dw && p.width != p.out_width { vfirst += 1 }
        }
        XCTAssertGreaterThan(vfirst, 10, "the random pairs exercise the vertical-first order")
    }

    /// The fast kernel (AVX2 and generic) equals the reference on seeded random sizes, up and down,
    /// noise (which makes bicubic overshoot clip) and edge-to-edge sizes of 1.
    func testFastKernelEqualsReference() throws {
        var rng = SplitMix64(seed: 7)
        let variants = [false, true]
        defer { ImageResample.forceGeneric(false) }
        for forceGeneric in variants {
            ImageResample.forceGeneric(forceGeneric)
            if forceGeneric { XCTAssertEqual(ImageResample.variant, "generic") }
            for trial in 0..<60 {
                let w = 1 + rng.below(90), h = 1 + rng.below(70)
                let ow = 1 + rng.below(90), oh = 1 + rng.below(70)
                let filter: ResampleFilter = trial % 3 == 0 ? .bilinear : .bicubic
                let src = testPicture(trial % 2 == 0 ? "noise" : "scene", w, h, seed: trial + 100)
                let fast = try resize(src, w, h, ow, oh, filter)
                let ref = try resize(src, w, h, ow, oh, filter, reference: true)
                XCTAssertEqual(fast, ref, "\(w)x\(h) -> \(ow)x\(oh) \(filter) generic=\(forceGeneric)")
            }
        }
    }

    // MARK: - Processor

    /// The fp32 output equals transformers' rescale + normalise of Pillow's resize (channels-last),
    /// for a whole 16x16 image and rows of a 768x768 one.
    func testProcessorMatchesTransformers() throws {
        let small = try Florence2ImageProcessor(config: imageConfig(width: 16, height: 16))
        let arena = Arena(capacity: small.arenaBytes(inputWidth: 37, inputHeight: 23))
        let t = try small.process(Pixels(width: 37, height: 23, bytes: testPicture("noise", 37, 23, seed: 1)), arena: arena)
        XCTAssertEqual(t.shape, Shape(16, 16, 3))
        let g = try Golden.npy("image/processed_37x23_16x16.npy")
        XCTAssertEqual(g.shape, [16, 16, 3])
        Golden.assertClose(t.toArray(), g.values, tolerance: 0, "processed 37x23 -> 16x16")

        let m = try manifest()
        let big = try Florence2ImageProcessor(config: imageConfig(width: 768, height: 768))
        let arena2 = Arena(capacity: big.arenaBytes(inputWidth: 300, inputHeight: 200))
        let t2 = try big.process(Pixels(width: 300, height: 200, bytes: testPicture("scene", 300, 200, seed: 11)), arena: arena2)
        let g2 = try Golden.npy("image/processed_300x200_768x768.rows.npy")
        var rows: [Float] = []
        let all = t2.toArray()
        for r in m.processed_rows { rows += all[(r * 768 * 3)..<((r + 1) * 768 * 3)] }
        Golden.assertClose(rows, g2.values, tolerance: 0, "processed 300x200 -> 768x768 rows \(m.processed_rows)")
        XCTAssertEqual(arena2.used, Arena.aligned(768 * 768 * 3 * 4), "only the output stays allocated")
    }

    /// Bilinear (resample 2) through the processor equals Pillow's bilinear bytes mapped by the table.
    func testProcessorBilinear() throws {
        let p = try Florence2ImageProcessor(config: imageConfig(width: 16, height: 16, resample: 2))
        XCTAssertEqual(p.filter, .bilinear)
        let arena = Arena(capacity: p.arenaBytes(inputWidth: 37, inputHeight: 23))
        let t = try p.process(Pixels(width: 37, height: 23, bytes: testPicture("noise", 37, 23, seed: 1)), arena: arena)
        let u8 = try Golden.npy("image/bilinear_37x23_16x16.npy").values
        let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        let want = u8.enumerated().map { i, v in (Float(Double(v) * (1.0 / 255.0)) - mean[i % 3]) / std[i % 3] }
        Golden.assertClose(t.toArray(), want, tolerance: 0, "bilinear processed")
    }

    /// After one warm-up call, processing a camera-sized frame allocates nothing on the heap.
    func testNoHeapAllocationAfterWarmUp() throws {
        let p = try Florence2ImageProcessor(config: imageConfig(width: 768, height: 768))
        let frame = Pixels(width: 1280, height: 720, bytes: testPicture("scene", 1280, 720, seed: 12))
        let arena = Arena(capacity: p.arenaBytes(inputWidth: 1280, inputHeight: 720))
        _ = try p.process(frame, arena: arena)
        arena.reset()
        omc_start()
        let t = try p.process(frame, arena: arena)
        let n = omc_stop()
        XCTAssertEqual(n, 0, "heap allocations in a steady-state process call")
        XCTAssertEqual(t.shape, Shape(768, 768, 3))
    }

    /// Unusable settings throw naming the key; a short buffer throws `badInput`.
    func testConfigAndInputErrors() throws {
        XCTAssertThrowsError(try Florence2ImageProcessor(config: imageConfig(width: 768, height: 768, resample: 1))) { e in
            XCTAssertTrue("\(e)".contains("florence2.image.resample"), "\(e)")
        }
        var c = imageConfig(width: 768, height: 768)
        c.std = [0.229, 0, 0.225]
        XCTAssertThrowsError(try Florence2ImageProcessor(config: c)) { e in XCTAssertTrue("\(e)".contains("florence2.image.std"), "\(e)") }
        c = imageConfig(width: 0, height: 768)
        XCTAssertThrowsError(try Florence2ImageProcessor(config: c))
        let p = try Florence2ImageProcessor(config: imageConfig(width: 8, height: 8))
        let arena = Arena(capacity: 1 << 20)
        XCTAssertThrowsError(try p.process(Pixels(width: 4, height: 4, bytes: [UInt8](repeating: 0, count: 47)), arena: arena)) { e in
            XCTAssertEqual(e as? ImageProcessorError, .badInput(width: 4, height: 4, bytes: 47))
        }
        XCTAssertThrowsError(try p.process(Pixels(width: 64, height: 64, bytes: [UInt8](repeating: 0, count: 64 * 64 * 3)), arena: Arena(capacity: 256))) { e in
            XCTAssertTrue(e is MemoryError, "\(e)")
        }
    }

    // MARK: - Timing (rough: the machine is shared)

    /// 1280x720 -> 768x768 bicubic + normalise; prints the best of a few runs per variant.
    func testTimingCameraFrame() throws {
        let p = try Florence2ImageProcessor(config: imageConfig(width: 768, height: 768))
        let frame = Pixels(width: 1280, height: 720, bytes: testPicture("scene", 1280, 720, seed: 12))
        let arena = Arena(capacity: p.arenaBytes(inputWidth: 1280, inputHeight: 720))
        defer { ImageResample.forceGeneric(false) }
        for forceGeneric in [false, true] {
            ImageResample.forceGeneric(forceGeneric)
            let name = ImageResample.variant
            var best = Double.infinity
            for _ in 0..<8 {
                arena.reset()
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try p.process(frame, arena: arena)
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            print("image processor 1280x720 -> 768x768 bicubic + normalise [\(name)]: best \(String(format: "%.2f", best)) ms")
        }
    }
}

