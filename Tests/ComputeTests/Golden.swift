// Test fixtures: reading numpy `.npy` goldens (little-endian float32/int32/int8, C order) that
// the scripts in Quantization/ write into Tests/ComputeTests/Fixtures/.
import Foundation
import XCTest

/// One array read from a `.npy` file.
struct NPYArray {
    /// Dimensions, outermost first.
    let shape: [Int]
    /// The elements as Float (int arrays are converted).
    let values: [Float]
}

enum Golden {
    /// The URL of `Fixtures/<relativePath>` in the test bundle.
    static func url(_ relativePath: String) throws -> URL {
        guard let base = Bundle.module.resourceURL?.appendingPathComponent("Fixtures") else {
            throw NSError(domain: "Golden", code: 1, userInfo: [NSLocalizedDescriptionKey: "no Fixtures folder in the test bundle"])
        }
        let u = base.appendingPathComponent(relativePath)
        guard FileManager.default.fileExists(atPath: u.path) else {
            throw NSError(domain: "Golden", code: 2, userInfo: [NSLocalizedDescriptionKey: "missing fixture \(relativePath)"])
        }
        return u
    }

    /// Reads `Fixtures/<relativePath>` (a version 1.0 `.npy` of `<f4`, `<i4`, `|i1` or `|u1`).
    static func npy(_ relativePath: String) throws -> NPYArray {
        let data = try Data(contentsOf: url(relativePath))
        let bytes = [UInt8](data)
        func fail(_ why: String) -> Error {
            NSError(domain: "Golden", code: 3, userInfo: [NSLocalizedDescriptionKey: "\(relativePath): \(why)"])
        }
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else { throw fail("not an .npy file") }
        let major = bytes[6]
        let headerLen: Int
        let headerStart: Int
        if major == 1 {
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw fail("truncated header") }
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard headerStart + headerLen <= bytes.count,
              let header = String(bytes: bytes[headerStart..<(headerStart + headerLen)], encoding: .ascii) else { throw fail("bad header") }
        guard !header.contains("'fortran_order': True") else { throw fail("Fortran order is not supported") }
        guard let d0 = header.range(of: "'descr': '")?.upperBound,
              let d1 = header[d0...].firstIndex(of: "'") else { throw fail("no descr") }
        let descr = String(header[d0..<d1])
        guard let s0 = header.range(of: "'shape': (")?.upperBound,
              let s1 = header[s0...].firstIndex(of: ")") else { throw fail("no shape") }
        let shape = header[s0..<s1].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let body = headerStart + headerLen
        var values = [Float](repeating: 0, count: count)
        switch descr {
        case "<f4":
            guard bytes.count - body >= count * 4 else { throw fail("truncated data") }
            for i in 0..<count {
                let o = body + 4 * i
                let u = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
                values[i] = Float(bitPattern: u)
            }
        case "<i4":
            guard bytes.count - body >= count * 4 else { throw fail("truncated data") }
            for i in 0..<count {
                let o = body + 4 * i
                let u = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
                values[i] = Float(Int32(bitPattern: u))
            }
        case "|i1":
            guard bytes.count - body >= count else { throw fail("truncated data") }
            for i in 0..<count { values[i] = Float(Int8(bitPattern: bytes[body + i])) }
        case "|u1":
            guard bytes.count - body >= count else { throw fail("truncated data") }
            for i in 0..<count { values[i] = Float(bytes[body + i]) }
        default:
            throw fail("dtype \(descr) is not supported")
        }
        return NPYArray(shape: shape, values: values)
    }

    /// Asserts `|actual - expected| ≤ tolerance + relative·|expected|` everywhere (`relative` is 0
    /// unless a caller states why fp32 cannot resolve an absolute bound), and reports the
    /// normalized mean squared error `Σ(a-e)² / Σe²`. Returns (max abs error, NMSE).
    static func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float, relative: Float = 0, _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, "\(what): element count", file: file, line: line)
        guard actual.count == expected.count else { return }
        var worst: Float = 0, worstAt = 0, worstExcess: Float = 0, excessAt = -1
        var num: Double = 0, den: Double = 0
        for i in 0..<actual.count {
            let d = abs(actual[i] - expected[i])
            if !(d <= worst) { worst = d; worstAt = i }
            let excess = d - (tolerance + relative * abs(expected[i]))
            if !(excess <= worstExcess) { worstExcess = excess; excessAt = i }
            num += Double(d) * Double(d)
            den += Double(expected[i]) * Double(expected[i])
        }
        let nmse = den > 0 ? num / den : num
        if excessAt >= 0 || worst.isNaN {
            let at = excessAt >= 0 ? excessAt : worstAt
            XCTFail("\(what): |error| \(abs(actual[at] - expected[at])) at \(at) (got \(actual[at]), want \(expected[at])) exceeds \(tolerance) + \(relative)·|want|; max |error| \(worst); NMSE \(nmse)",
                    file: file, line: line)
        }
        if ProcessInfo.processInfo.environment["OCELLUS_REPORT_ERRORS"] != nil {
            print("golden \(what): max |error| \(worst), NMSE \(nmse)")
        }
    }
}

/// The tests' one seeded generator (SplitMix64), so random cases are reproducible. This file is
/// shared by the ComputeTests, Florence2Tests and CaptureTests targets.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A value in 0..<n.
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// A float in [-scale, scale).
    mutating func float(_ scale: Float = 1) -> Float { (Float(next() >> 40) / Float(1 << 24) * 2 - 1) * scale }
    /// `n` floats in [-scale, scale).
    mutating func array(_ n: Int, _ scale: Float = 1) -> [Float] { (0..<n).map { _ in float(scale) } }
    /// A value in `range`.
    mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
}
