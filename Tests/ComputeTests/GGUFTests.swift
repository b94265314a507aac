// Tests of the GGUF v3 reader and writer (Compute/GGUF*.swift): round trips, strict loading, and
// corrupt input (every truncation, crafted bad headers and infos, seeded random byte flips).
import Foundation
import XCTest
@testable import Compute

final class GGUFTests: XCTestCase {
    // MARK: - Helpers

    private static let tempDir = FileManager.default.temporaryDirectory.appendingPathComponent("ocellus-gguf-tests-\(getpid())")

    /// A path under this run's temporary directory (removed after the class's tests).
    private func tempPath(_ name: String) -> String {
        try? FileManager.default.createDirectory(at: Self.tempDir, withIntermediateDirectories: true)
        return Self.tempDir.appendingPathComponent(name).path
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: tempDir)
        super.tearDown()
    }

    /// Asserts that `body` throws a `GGUFError` accepted by `match`, and returns it.
    @discardableResult
    private func assertGGUFError(_ body: @autoclosure () throws -> Any, file: StaticString = #filePath, line: UInt = #line,
                                 _ match: (GGUFError) -> Bool) -> GGUFError? {
        do {
            _ = try body()
            XCTFail("expected a GGUFError, nothing was thrown", file: file, line: line)
        } catch let e as GGUFError {
            XCTAssertTrue(match(e), "unexpected error: \(e)", file: file, line: line)
            return e
        } catch {
            XCTFail("expected a GGUFError, got \(error)", file: file, line: line)
        }
        return nil
    }

    /// Every metadata value type, scalars and arrays (strings include multi-byte UTF-8 and an empty one).
    private static let sampleMetadata: [(String, GGUFValue)] = [
        ("general.architecture", .string("florence2")),
        ("t.u8", .uint8(200)), ("t.i8", .int8(-100)), ("t.u16", .uint16(60000)), ("t.i16", .int16(-30000)),
        ("t.u32", .uint32(4_000_000_000)), ("t.i32", .int32(-2_000_000_000)), ("t.f32", .float32(-1.5e-5)),
        ("t.bool", .bool(true)), ("t.bool2", .bool(false)), ("t.string", .string("Ġhello wörld ✓")), ("t.empty", .string("")),
        ("t.u64", .uint64(UInt64.max - 1)), ("t.i64", .int64(Int64.min + 1)), ("t.f64", .float64(3.141592653589793)),
        ("a.u8", .array(.uint8([0, 1, 255]))), ("a.i8", .array(.int8([-128, 0, 127]))),
        ("a.u16", .array(.uint16([1, 65535]))), ("a.i16", .array(.int16([-32768, 32767]))),
        ("a.u32", .array(.uint32([1, 2, 3, 4]))), ("a.i32", .array(.int32([1, -1, 3, 4]))),
        ("a.f32", .array(.float32([0.5, -2, 1e-5]))), ("a.bool", .array(.bool([true, false, true, true]))),
        ("a.string", .array(.string(["Ġthe", "", "ĠÃ©", "left right", "日本"]))),
        ("a.u64", .array(.uint64([UInt64.max]))), ("a.i64", .array(.int64([-5, 5]))),
        ("a.f64", .array(.float64([1e300, -0.25]))), ("a.empty", .array(.uint32([]))),
    ]

    private static let f32Values: [Float] = (0..<12).map { Float($0) * 0.25 - 1 }
    private static let i8Values: [Int8] = (0..<40).map { Int8(truncatingIfNeeded: $0 * 7 - 100) }
    private static let i32Values: [Int32] = [7, -7, Int32.max, Int32.min, 0, 1]
    private static let lastValues: [Float] = (0..<8).map { Float($0) }  // 32 bytes: the file ends with this data

    /// A writer holding the sample metadata and F32, I8, I16, F16 and I32 tensors (the last is
    /// exactly 32 bytes, so the file has no trailing padding and every shorter prefix is truncated).
    private func sampleWriter() -> GGUFWriter {
        var w = GGUFWriter()
        for (k, v) in Self.sampleMetadata { w.add(k, v) }
        w.addTensor("w.f32", shape: Shape(3, 4), floats: Self.f32Values)
        w.addTensor("w.i8", shape: Shape(2, 4, 5), int8: Self.i8Values)
        w.addTensor("w.i16", shape: Shape(3), int16: [-1, 2, -3])
        w.addTensor("w.f16", shape: Shape(1, 1, 1, 2), float16Bits: [0x3C00, 0xC000])
        w.addTensor("w.i32", shape: Shape(6), int32: Self.i32Values)
        w.addTensor("w.last", shape: Shape(2, 4), floats: Self.lastValues)
        return w
    }

    /// A GGUF byte builder that can also write what the real writer refuses to.
    private struct Raw {
        var b: [UInt8] = []
        mutating func u32(_ v: UInt32) { appendLE(v, to: &b) }
        mutating func u64(_ v: UInt64) { appendLE(v, to: &b) }
        mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); b += Array(s.utf8) }
        mutating func header(version: UInt32 = 3, tensors: UInt64, kvs: UInt64) {
            u32(GGUF.magic); u32(version); u64(tensors); u64(kvs)
        }
        /// A tensor info with `ne` innermost first.
        mutating func info(_ name: String, ne: [UInt64], type: UInt32, offset: UInt64) {
            str(name); u32(UInt32(ne.count)); for d in ne { u64(d) }; u32(type); u64(offset)
        }
        mutating func pad(_ align: Int = 32) { while b.count % align != 0 { b.append(0) } }
        mutating func zeros(_ n: Int) { b += [UInt8](repeating: 0, count: n) }
    }

    // MARK: - Round trip

    func testRoundTripEveryValueTypeAndTensorType() throws {
        let w = sampleWriter()
        let path = tempPath("roundtrip.gguf")
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 32)
        XCTAssertEqual(f.fileSize, w.bytes().count)
        XCTAssertEqual(f.metadata.count, Self.sampleMetadata.count)
        for ((k, v), e) in zip(Self.sampleMetadata, f.metadata) {
            XCTAssertEqual(e.key, k)
            XCTAssertEqual(e.value, v, k)
        }
        XCTAssertEqual(f.tensorInfos.map(\.name), ["w.f32", "w.i8", "w.i16", "w.f16", "w.i32", "w.last"])
        XCTAssertEqual(f.tensorInfos.map(\.type), [.f32, .i8, .i16, .f16, .i32, .f32])
        XCTAssertEqual(f.tensorInfos.map(\.shape), [Shape(3, 4), Shape(2, 4, 5), Shape(3), Shape(1, 1, 1, 2), Shape(6), Shape(2, 4)])
        XCTAssertEqual(f.tensorInfos.map(\.byteCount), [48, 40, 6, 4, 24, 32])
        for t in f.tensorInfos {
            XCTAssertEqual(t.offset % 32, 0)
            XCTAssertEqual(t.fileOffset, f.dataOffset + t.offset)
        }
        XCTAssertEqual(f.dataOffset % 32, 0)
        XCTAssertEqual(f.tensorInfos.last!.fileOffset + 32, f.fileSize, "sample file ends with the last tensor's data")

        XCTAssertEqual(try f.tensor("w.f32", shape: Shape(3, 4)).toArray(), Self.f32Values)
        XCTAssertEqual(try f.int8Values("w.i8", shape: Shape(2, 4, 5)), Self.i8Values)
        XCTAssertEqual(try f.int16Values("w.i16", shape: Shape(3)), [-1, 2, -3])
        XCTAssertEqual(try f.float16Bits("w.f16", shape: Shape(1, 1, 1, 2)), [0x3C00, 0xC000])
        XCTAssertEqual(try f.int32Values("w.i32", shape: Shape(6)), Self.i32Values)
        let p = try f.int8Pointer("w.i8", shape: Shape(2, 4, 5))
        XCTAssertEqual((0..<40).map { p[$0] }, Self.i8Values)
        XCTAssertEqual(try f.tensor("w.last", shape: Shape(2, 4)).toArray(), Self.lastValues)
        XCTAssertNoThrow(try f.finish())

        // Typed accessors.
        XCTAssertEqual(try f.string("general.architecture"), "florence2")
        XCTAssertEqual(try f.u32("t.u32"), 4_000_000_000)
        XCTAssertEqual(try f.f32("t.f32"), -1.5e-5)
        XCTAssertEqual(try f.bool("t.bool"), true)
        XCTAssertEqual(try f.u32Array("a.u32"), [1, 2, 3, 4])
        XCTAssertEqual(try f.u32Array("a.u32", count: 4), [1, 2, 3, 4])
        XCTAssertEqual(try f.i32Array("a.i32"), [1, -1, 3, 4])
        XCTAssertEqual(try f.f32Array("a.f32"), [0.5, -2, 1e-5])
        XCTAssertEqual(try f.boolArray("a.bool"), [true, false, true, true])
        XCTAssertEqual(try f.stringArray("a.string"), ["Ġthe", "", "ĠÃ©", "left right", "日本"])
        XCTAssertEqual(try f.u32Array("a.empty"), [])
        XCTAssertNil(try f.u32IfPresent("no.such.key"))
        XCTAssertNil(try f.stringArrayIfPresent("no.such.key"))
    }

    func testWriterIsDeterministicAndHonoursAlignment() throws {
        XCTAssertEqual(sampleWriter().bytes(), sampleWriter().bytes())
        var w = GGUFWriter()
        w.add(GGUF.alignmentKey, .uint32(64))
        w.addTensor("a", shape: Shape(3), floats: [1, 2, 3])
        w.addTensor("b", shape: Shape(5), int8: [1, 2, 3, 4, 5])
        w.addTensor("c", shape: Shape(1), int32: [9])
        let f = try GGUFFile(bytes: w.bytes(), name: "aligned.gguf")
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(f.dataOffset % 64, 0)
        XCTAssertEqual(f.tensorInfos.map(\.offset), [0, 64, 128])
        XCTAssertEqual(try f.int32Values("c", shape: Shape(1)), [9])
    }

    func testStringArrayIsReadLazily() throws {
        var w = GGUFWriter()
        let tokens = (0..<2000).map { "tok\($0)" }
        w.add("tokenizer.ggml.tokens", .array(.string(tokens)))
        let f = try GGUFFile(bytes: w.bytes(), name: "tok.gguf")
        let a = try f.array("tokenizer.ggml.tokens")
        guard case .mapped = a.storage else { return XCTFail("a parsed array should stay in the mapping") }
        XCTAssertEqual(a.elementType, .string)
        XCTAssertEqual(a.count, 2000)
        XCTAssertEqual(a.element(1234), .string("tok1234"))
        XCTAssertEqual(a.prefix(2), [.string("tok0"), .string("tok1")])
        var seen = 0
        a.forEachString { i, s in XCTAssertEqual(s, tokens[i]); seen += 1 }
        XCTAssertEqual(seen, 2000)
        XCTAssertEqual(try f.stringArray("tokenizer.ggml.tokens"), tokens)
        XCTAssertNil(a.uint32Values())
    }

    /// The reference writer's file (Fixtures/gguf/python-writer.gguf, PyPI `gguf`): we read it, and
    /// our writer given the same content produces the same bytes.
    func testReadsAndMatchesThePythonGGUFWriter() throws {
        let url = try Golden.url("gguf/python-writer.gguf")
        let f = try GGUFFile(path: url.path)
        XCTAssertEqual(f.metadata.map(\.key), [
            "general.architecture", "ocellus.format_version", "ocellus.precision", "florence2.layer_norm_eps",
            "florence2.text.scale_embedding", "florence2.vision.depths", "tokenizer.ggml.tokens",
            "florence2.image.mean", "florence2.vision.embed_dim",
        ])
        XCTAssertEqual(try f.string("general.architecture"), "florence2")
        XCTAssertEqual(try f.u32("ocellus.format_version"), 1)
        XCTAssertEqual(try f.f32("florence2.layer_norm_eps"), 1e-5)
        XCTAssertEqual(try f.bool("florence2.text.scale_embedding"), false)
        XCTAssertEqual(try f.i32Array("florence2.vision.depths"), [1, 1, 9, 1])
        XCTAssertEqual(try f.stringArray("tokenizer.ggml.tokens"), ["<s>", "Ġthe", "</s>"])
        XCTAssertEqual(try f.f32Array("florence2.image.mean"), [0.485, 0.456, 0.406])
        XCTAssertEqual(try f.u32Array("florence2.vision.embed_dim"), [128, 256, 512, 1024])
        let bias: [Float] = [-2, -1, 0, 1, 2]
        let q: [Int8] = (0..<128).map { Int8($0 % 255 - 127) }
        let ids: [Int32] = [1, -2, 3, 4, 5, -6]
        XCTAssertEqual(try f.tensor("v.conv0.b", shape: Shape(5)).toArray(), bias)
        XCTAssertEqual(try f.int8Values("t.q.qweight", shape: Shape(2, 64)), q)
        XCTAssertEqual(try f.int32Values("ids", shape: Shape(2, 3)), ids)
        XCTAssertNoThrow(try f.finish())

        var w = GGUFWriter()
        w.add("general.architecture", .string("florence2"))
        w.add("ocellus.format_version", .uint32(1))
        w.add("ocellus.precision", .string("int8"))
        w.add("florence2.layer_norm_eps", .float32(1e-5))
        w.add("florence2.text.scale_embedding", .bool(false))
        w.add("florence2.vision.depths", .array(.int32([1, 1, 9, 1])))
        w.add("tokenizer.ggml.tokens", .array(.string(["<s>", "Ġthe", "</s>"])))
        w.add("florence2.image.mean", .array(.float32([0.485, 0.456, 0.406])))
        w.add("florence2.vision.embed_dim", .array(.uint32([128, 256, 512, 1024])))
        w.addTensor("v.conv0.b", shape: Shape(5), floats: bias)
        w.addTensor("t.q.qweight", shape: Shape(2, 64), int8: q)
        w.addTensor("ids", shape: Shape(2, 3), int32: ids)
        XCTAssertEqual(w.bytes(), [UInt8](try Data(contentsOf: url)))
    }

    // MARK: - Strict loading

    func testStrictLoadingErrorsNameFileAndTensorOrKey() throws {
        let path = tempPath("strict.gguf")
        try sampleWriter().write(to: path)
        let f = try GGUFFile(path: path)

        var e = assertGGUFError(try f.tensor("w.nope", shape: Shape(3, 4))) { $0 == .missingTensor(file: path, tensor: "w.nope") }
        XCTAssertTrue(e?.description.contains(path) == true && e?.description.contains("'w.nope'") == true, "\(e!)")

        e = assertGGUFError(try f.tensor("w.f32", shape: Shape(4, 3))) {
            $0 == .wrongShape(file: path, tensor: "w.f32", expected: Shape(4, 3), found: Shape(3, 4))
        }
        XCTAssertEqual(e?.description, "\(path): tensor 'w.f32' has shape [3, 4], expected [4, 3]")

        e = assertGGUFError(try f.tensor("w.i8", shape: Shape(2, 4, 5))) {
            $0 == .wrongType(file: path, tensor: "w.i8", expected: .f32, found: .i8)
        }
        XCTAssertEqual(e?.description, "\(path): tensor 'w.i8' has type I8, expected F32")

        e = assertGGUFError(try f.u32("no.key")) { $0 == .missingKey(file: path, key: "no.key") }
        XCTAssertTrue(e?.description.contains("\"no.key\"") == true && e?.description.contains(path) == true)

        e = assertGGUFError(try f.u32("t.f32")) { $0 == .wrongKeyType(file: path, key: "t.f32", expected: "u32", found: "f32") }
        XCTAssertEqual(e?.description, "\(path): metadata key \"t.f32\" has type f32, expected u32")
        assertGGUFError(try f.u32Array("a.f32")) { $0 == .wrongKeyType(file: path, key: "a.f32", expected: "array[u32]", found: "array[f32]") }
        assertGGUFError(try f.stringArray("t.string")) { $0 == .wrongKeyType(file: path, key: "t.string", expected: "array[string]", found: "string") }
        assertGGUFError(try f.u32Array("a.u32", count: 3)) {
            $0 == .wrongKeyType(file: path, key: "a.u32", expected: "array[u32] of 3", found: "array[u32] of 4")
        }

        // Failed requests consume nothing; finish() lists what is left, in file order.
        _ = try f.tensor("w.f32", shape: Shape(3, 4))
        _ = try f.int32Values("w.i32", shape: Shape(6))
        e = assertGGUFError(try f.finish()) { $0 == .unexpectedTensors(file: path, tensors: ["w.i8", "w.i16", "w.f16", "w.last"]) }
        XCTAssertTrue(e?.description.contains("'w.i16'") == true && e?.description.contains(path) == true)
        _ = try f.int8Values("w.i8", shape: Shape(2, 4, 5))
        _ = try f.int16Values("w.i16", shape: Shape(3))
        _ = try f.float16Bits("w.f16", shape: Shape(1, 1, 1, 2))
        _ = try f.tensor("w.last", shape: Shape(2, 4))
        XCTAssertNoThrow(try f.finish())
    }

    func testLinearLoadsFP32AndInt8Forms() throws {
        let n = 20, k = 8
        let wf: [Float] = (0..<(n * k)).map { Float(($0 * 37) % 11) - 5 }
        // int8 panel16x4: N padded to 32 rows; byte (r, c) at ((r/16)·(K/4) + c/4)·64 + (r%16)·4 + c%4.
        var packed = [Int8](repeating: 0, count: 32 * k)
        var q = [[Int8]](repeating: [Int8](repeating: 0, count: k), count: n)
        for r in 0..<n { for c in 0..<k {
            q[r][c] = Int8((r * 3 + c * 5) % 255 - 127)
            packed[((r / 16) * (k / 4) + c / 4) * 64 + (r % 16) * 4 + c % 4] = q[r][c]
        } }
        let scales: [Float] = (0..<n).map { Float($0 + 1) / 64 }
        let bias: [Float] = (0..<n).map { Float($0) }
        var w = GGUFWriter()
        w.addTensor("fp.weight", shape: Shape(n, k), floats: wf)
        w.addTensor("fp.bias", shape: Shape(n), floats: bias)
        w.addTensor("q.qweight", shape: Shape(2, k * 16), int8: packed)
        w.addTensor("q.scale", shape: Shape(n), floats: scales)
        let f = try GGUFFile(bytes: w.bytes(), name: "linear.gguf")

        let fp = try f.linear("fp", outFeatures: n, inFeatures: k, bias: true)
        guard case let .fp32(t) = fp.storage else { return XCTFail("expected fp32 storage") }
        XCTAssertEqual(t.toArray(), wf)
        XCTAssertEqual(fp.bias?.toArray(), bias)

        let ql = try f.linear("q", outFeatures: n, inFeatures: k, bias: false)
        guard case let .int8(iw) = ql.storage else { return XCTFail("expected int8 storage") }
        XCTAssertNil(ql.bias)
        for r in 0..<n { for c in 0..<k {
            XCTAssertEqual(iw.packed[Int8Weights.offset(n: r, k: c, inFeatures: k)], q[r][c], "(\(r), \(c))")
        } }
        XCTAssertEqual((0..<n).map { iw.scales[$0] }, scales)
        XCTAssertNoThrow(try f.finish())

        assertGGUFError(try f.linear("none", outFeatures: n, inFeatures: k, bias: false)) {
            if case let .missingTensor(_, t) = $0 { return t.contains("none.weight") && t.contains("none.qweight") } else { return false }
        }
        assertGGUFError(try f.linear("q", outFeatures: n, inFeatures: k + 4, bias: false)) {
            $0 == .wrongShape(file: "linear.gguf", tensor: "q.qweight", expected: Shape(2, (k + 4) * 16), found: Shape(2, k * 16))
        }
    }

    /// An int8 linear with a residual level loads both levels; half a residual (either tensor
    /// alone) or a residual of the wrong shape is an error naming the tensor.
    func testLinearLoadsTheResidualLevel() throws {
        let n = 20, k = 8
        let packed: [Int8] = (0..<(32 * k)).map { Int8($0 % 200 - 100) }
        let rpacked: [Int8] = (0..<(32 * k)).map { Int8(($0 * 7) % 200 - 100) }
        let scales: [Float] = (0..<n).map { Float($0 + 1) / 64 }
        let rscales: [Float] = (0..<n).map { Float($0 + 1) / 16384 }
        var w = GGUFWriter()
        w.addTensor("r.qweight", shape: Shape(2, k * 16), int8: packed)
        w.addTensor("r.scale", shape: Shape(n), floats: scales)
        w.addTensor("r.qresidual", shape: Shape(2, k * 16), int8: rpacked)
        w.addTensor("r.rscale", shape: Shape(n), floats: rscales)
        w.addTensor("half.qweight", shape: Shape(2, k * 16), int8: packed)
        w.addTensor("half.scale", shape: Shape(n), floats: scales)
        w.addTensor("half.rscale", shape: Shape(n), floats: rscales)
        w.addTensor("bad.qweight", shape: Shape(2, k * 16), int8: packed)
        w.addTensor("bad.scale", shape: Shape(n), floats: scales)
        w.addTensor("bad.qresidual", shape: Shape(1, k * 16), int8: Array(rpacked[0..<(16 * k)]))
        w.addTensor("bad.rscale", shape: Shape(n), floats: rscales)
        let f = try GGUFFile(bytes: w.bytes(), name: "residual.gguf")
        let l = try f.linear("r", outFeatures: n, inFeatures: k, bias: false)
        guard case let .int8(iw) = l.storage, let r = l.residual else { return XCTFail("expected int8 storage with a residual") }
        XCTAssertEqual((0..<(32 * k)).map { iw.packed[$0] }, packed)
        XCTAssertEqual((0..<(32 * k)).map { r.packed[$0] }, rpacked)
        XCTAssertEqual((0..<n).map { r.scales[$0] }, rscales)
        assertGGUFError(try f.linear("half", outFeatures: n, inFeatures: k, bias: false)) {
            $0 == .missingTensor(file: "residual.gguf", tensor: "half.qresidual")
        }
        assertGGUFError(try f.linear("bad", outFeatures: n, inFeatures: k, bias: false)) {
            $0 == .wrongShape(file: "residual.gguf", tensor: "bad.qresidual", expected: Shape(2, k * 16), found: Shape(1, k * 16))
        }
    }

    // MARK: - Corrupt input

    func testEveryTruncationThrows() throws {
        let bytes = sampleWriter().bytes()
        let path = tempPath("truncated.gguf")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertNoThrow(try GGUFFile(path: path))
        // Cut the same file down one byte at a time (through the mmap path), then every prefix in memory.
        let fd = open(path, O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        func isTruncation(_ e: GGUFError, _ name: String) -> Bool {
            switch e {
            case .truncated(let file, _), .countTooLarge(let file, _, _, _, _), .tensorOutOfBounds(let file, _, _, _, _): return file == name
            default: return false
            }
        }
        for n in stride(from: bytes.count - 1, through: 0, by: -1) {
            XCTAssertEqual(ftruncate(fd, off_t(n)), 0)
            assertGGUFError(try GGUFFile(path: path)) { isTruncation($0, path) }
            assertGGUFError(try GGUFFile(bytes: Array(bytes[0..<n]), name: "mem.gguf")) { isTruncation($0, "mem.gguf") }
        }
    }

    func testTruncationSectionsAreNamed() {
        var w = GGUFWriter()
        w.add("general.architecture", .string("florence2"))
        w.addTensor("t.w", shape: Shape(8), floats: Array(repeating: 1, count: 8))
        let bytes = w.bytes()  // header 24, key 8+20, type 4, value 8+9 = 73, info 8+3+4+8+4+8 = 35 → 108, data at 128
        XCTAssertEqual(bytes.count, 160)
        func cut(_ n: Int) -> [UInt8] { Array(bytes[0..<n]) }
        assertGGUFError(try GGUFFile(bytes: cut(10), name: "x.gguf")) { $0 == .truncated(file: "x.gguf", section: .header) }
        assertGGUFError(try GGUFFile(bytes: cut(40), name: "x.gguf")) {
            $0 == .truncated(file: "x.gguf", section: .metadata(index: 0, key: nil))
        }
        let e = assertGGUFError(try GGUFFile(bytes: cut(60), name: "x.gguf")) {
            $0 == .truncated(file: "x.gguf", section: .metadata(index: 0, key: "general.architecture"))
        }
        XCTAssertEqual(e?.description, "x.gguf: file is truncated in the metadata key 0 (\"general.architecture\"); the file is incomplete or corrupt")
        assertGGUFError(try GGUFFile(bytes: cut(80), name: "x.gguf")) { $0 == .truncated(file: "x.gguf", section: .tensorInfo(index: 0, name: nil)) }
        assertGGUFError(try GGUFFile(bytes: cut(100), name: "x.gguf")) { $0 == .truncated(file: "x.gguf", section: .tensorInfo(index: 0, name: "t.w")) }
        assertGGUFError(try GGUFFile(bytes: cut(159), name: "x.gguf")) { $0 == .truncated(file: "x.gguf", section: .tensorData("t.w")) }
        XCTAssertNoThrow(try GGUFFile(bytes: bytes, name: "x.gguf"))
    }

    func testBadMagicAndVersions() {
        var bytes = sampleWriter().bytes()
        bytes[0] = UInt8(ascii: "X")
        let e = assertGGUFError(try GGUFFile(bytes: bytes, name: "m.gguf")) { if case .badMagic(file: "m.gguf", _) = $0 { true } else { false } }
        XCTAssertTrue(e?.description.hasPrefix("m.gguf: not a GGUF file") == true)
        for v: UInt32 in [2, 4] {
            var r = Raw()
            r.header(version: v, tensors: 0, kvs: 0)
            assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) { $0 == .unsupportedVersion(file: "v.gguf", version: v) }
        }
        assertGGUFError(try GGUFFile(path: tempPath("does-not-exist.gguf"))) { if case .cannotOpen = $0 { true } else { false } }
        let empty = tempPath("empty.gguf")
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        assertGGUFError(try GGUFFile(path: empty)) { $0 == .truncated(file: empty, section: .header) }
    }

    func testHugeCountsThrowWithoutAllocating() {
        let big: UInt64 = 1 << 62
        var r = Raw(); r.header(tensors: big, kvs: 0); r.zeros(64)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "h.gguf")) {
            if case .countTooLarge(_, .header, "tensor_count", big, _) = $0 { true } else { false }
        }
        r = Raw(); r.header(tensors: 0, kvs: big); r.zeros(64)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "h.gguf")) {
            if case .countTooLarge(_, .header, "metadata_kv_count", big, _) = $0 { true } else { false }
        }
        r = Raw(); r.header(tensors: 0, kvs: 1); r.u64(big); r.zeros(64)  // key length 2^62
        assertGGUFError(try GGUFFile(bytes: r.b, name: "h.gguf")) { $0 == .truncated(file: "h.gguf", section: .metadata(index: 0, key: nil)) }
        r = Raw(); r.header(tensors: 0, kvs: 1); r.str("k"); r.u32(GGUFValueType.string.rawValue); r.u64(big); r.zeros(64)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "h.gguf")) { $0 == .truncated(file: "h.gguf", section: .metadata(index: 0, key: "k")) }
        for element in [GGUFValueType.uint8, .uint64, .string] {
            r = Raw(); r.header(tensors: 0, kvs: 1); r.str("k"); r.u32(GGUFValueType.array.rawValue); r.u32(element.rawValue); r.u64(big); r.zeros(64)
            assertGGUFError(try GGUFFile(bytes: r.b, name: "h.gguf")) {
                if case .countTooLarge(_, .metadata(0, "k"), "array count", big, _) = $0 { true } else { false }
            }
        }
        // A tensor name of length 2^62, and ne values whose product overflows.
        r = Raw(); r.header(tensors: 1, kvs: 0); r.u64(big); r.zeros(64)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "h.gguf")) { $0 == .truncated(file: "h.gguf", section: .tensorInfo(index: 0, name: nil)) }
        r = Raw(); r.header(tensors: 1, kvs: 0); r.info("t", ne: [1 << 32, 1 << 32], type: 0, offset: 0); r.pad(); r.zeros(64)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "h.gguf")) { if case .badDimensions(_, "t", _) = $0 { true } else { false } }
        r = Raw(); r.header(tensors: 1, kvs: 0); r.info("t", ne: [1 << 61, 2], type: 0, offset: 0); r.pad(); r.zeros(64)  // bytes overflow
        assertGGUFError(try GGUFFile(bytes: r.b, name: "h.gguf")) { if case .badDimensions(_, "t", _) = $0 { true } else { false } }
        r = Raw(); r.header(tensors: 1, kvs: 0); r.info("t", ne: [UInt64.max], type: 0, offset: 0); r.pad(); r.zeros(64)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "h.gguf")) { if case .badDimensions(_, "t", _) = $0 { true } else { false } }
    }

    func testBadTensorInfos() {
        func file(_ ne: [UInt64], type: UInt32 = 0, offset: UInt64 = 0, dataBytes: Int = 64) -> [UInt8] {
            var r = Raw(); r.header(tensors: 1, kvs: 0); r.info("t.x", ne: ne, type: type, offset: offset); r.pad(); r.zeros(dataBytes)
            return r.b
        }
        XCTAssertNoThrow(try GGUFFile(bytes: file([4, 2]), name: "ok.gguf"))
        assertGGUFError(try GGUFFile(bytes: file([]), name: "d.gguf")) { if case .badDimensions(_, "t.x", _) = $0 { true } else { false } }
        assertGGUFError(try GGUFFile(bytes: file([1, 1, 1, 1, 1]), name: "d.gguf")) { if case .badDimensions(_, "t.x", _) = $0 { true } else { false } }
        assertGGUFError(try GGUFFile(bytes: file([4, 0]), name: "d.gguf")) { if case .badDimensions(_, "t.x", _) = $0 { true } else { false } }
        let e = assertGGUFError(try GGUFFile(bytes: file([4], type: 2), name: "d.gguf")) { $0 == .unknownTensorType(file: "d.gguf", tensor: "t.x", type: 2) }
        XCTAssertTrue(e?.description.contains("unknown tensor type 2 for tensor 't.x'") == true)
        assertGGUFError(try GGUFFile(bytes: file([4], type: 27), name: "d.gguf")) { $0 == .unknownTensorType(file: "d.gguf", tensor: "t.x", type: 27) }
        assertGGUFError(try GGUFFile(bytes: file([4], offset: 4), name: "d.gguf")) { $0 == .misalignedOffset(file: "d.gguf", tensor: "t.x", offset: 4, alignment: 32) }
        assertGGUFError(try GGUFFile(bytes: file([4], offset: 96), name: "d.gguf")) {
            $0 == .tensorOutOfBounds(file: "d.gguf", tensor: "t.x", offset: 96, bytes: 16, dataBytes: 64)
        }
        assertGGUFError(try GGUFFile(bytes: file([4], offset: 1 << 63), name: "d.gguf")) { if case .tensorOutOfBounds = $0 { true } else { false } }
        assertGGUFError(try GGUFFile(bytes: file([20], offset: 0), name: "d.gguf")) {  // 80 bytes, 64 present
            $0 == .truncated(file: "d.gguf", section: .tensorData("t.x"))
        }
        assertGGUFError(try GGUFFile(bytes: file([8], offset: 32, dataBytes: 48), name: "d.gguf")) {
            $0 == .truncated(file: "d.gguf", section: .tensorData("t.x"))
        }
    }

    func testDuplicatesAndOverlaps() {
        var r = Raw(); r.header(tensors: 0, kvs: 2)
        r.str("k"); r.u32(4); r.u32(1)
        r.str("k"); r.u32(4); r.u32(2)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "dup.gguf")) { $0 == .duplicateKey(file: "dup.gguf", key: "k") }

        r = Raw(); r.header(tensors: 2, kvs: 0)
        r.info("t", ne: [4], type: 0, offset: 0); r.info("t", ne: [4], type: 0, offset: 32); r.pad(); r.zeros(64)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "dup.gguf")) { $0 == .duplicateTensor(file: "dup.gguf", tensor: "t") }

        r = Raw(); r.header(tensors: 2, kvs: 0)
        r.info("b", ne: [16], type: 0, offset: 32); r.info("a", ne: [16], type: 0, offset: 0); r.pad(); r.zeros(128)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "ov.gguf")) { $0 == .overlappingTensors(file: "ov.gguf", first: "a", second: "b") }

        r = Raw(); r.header(tensors: 2, kvs: 0)  // the same offset twice
        r.info("a", ne: [4], type: 0, offset: 0); r.info("b", ne: [4], type: 24, offset: 0); r.pad(); r.zeros(64)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "ov.gguf")) { if case .overlappingTensors = $0 { true } else { false } }
    }

    func testBadMetadataValues() {
        var r = Raw(); r.header(tensors: 0, kvs: 1); r.str("k"); r.u32(13); r.zeros(8)
        var e = assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) { $0 == .unknownValueType(file: "v.gguf", key: "k", type: 13) }
        XCTAssertTrue(e?.description.contains("\"k\"") == true)
        r = Raw(); r.header(tensors: 0, kvs: 1); r.str("k"); r.u32(9); r.u32(77); r.u64(0)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) { $0 == .unknownValueType(file: "v.gguf", key: "k", type: 77) }
        r = Raw(); r.header(tensors: 0, kvs: 1); r.str("k"); r.u32(9); r.u32(9); r.u64(1); r.u32(4); r.u64(1); r.u32(5)  // array of arrays
        assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) { $0 == .unknownValueType(file: "v.gguf", key: "k", type: 9) }
        r = Raw(); r.header(tensors: 0, kvs: 1); r.str("k"); r.u32(7); r.b.append(2)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) { $0 == .invalidBool(file: "v.gguf", key: "k", byte: 2) }
        r = Raw(); r.header(tensors: 0, kvs: 1); r.str("k"); r.u32(9); r.u32(7); r.u64(3); r.b += [1, 0, 5]
        assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) { $0 == .invalidBool(file: "v.gguf", key: "k", byte: 5) }
        r = Raw(); r.header(tensors: 0, kvs: 1); r.u64(2); r.b += [0xC3, 0x28]; r.u32(4); r.u32(1)  // invalid UTF-8 key
        assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) { $0 == .invalidString(file: "v.gguf", section: .metadata(index: 0, key: nil)) }
        r = Raw(); r.header(tensors: 0, kvs: 1); r.str("k"); r.u32(9); r.u32(8); r.u64(2); r.str("ok"); r.u64(3); r.b += [0xED, 0xA0, 0x80]  // surrogate
        assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) { $0 == .invalidString(file: "v.gguf", section: .metadata(index: 0, key: "k")) }
        r = Raw(); r.header(tensors: 0, kvs: 1); r.str(GGUF.alignmentKey); r.u32(4); r.u32(24)
        e = assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) { $0 == .badAlignment(file: "v.gguf", alignment: 24) }
        r = Raw(); r.header(tensors: 0, kvs: 1); r.str(GGUF.alignmentKey); r.u32(10); r.u64(32)
        assertGGUFError(try GGUFFile(bytes: r.b, name: "v.gguf")) {
            $0 == .wrongKeyType(file: "v.gguf", key: GGUF.alignmentKey, expected: "u32", found: "u64")
        }
    }

    func testUTF8ValidatorAgreesWithTheStandardLibrary() {
        var rng = SplitMix64(seed: 7)
        // Random short sequences biased toward lead and continuation bytes, plus known edge cases.
        var cases: [[UInt8]] = [[], [0xC0, 0x80], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                                [0xF0, 0x9F, 0x98, 0x80], [0xEF, 0xBF, 0xBF], [0xC2], [0x7F, 0x80]]
        let pool: [UInt8] = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF]
        for _ in 0..<20000 { cases.append((0..<Int(rng.next() % 6)).map { _ in pool[Int(rng.next() % UInt64(pool.count))] }) }
        for c in cases {
            let ours = c.withUnsafeBytes { isValidUTF8($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, c.count) }
            XCTAssertEqual(ours, String(validating: c, as: UTF8.self) != nil, "\(c.map { String($0, radix: 16) })")
        }
    }

    func testRandomByteFlipsParseOrThrow() throws {
        let valid = sampleWriter().bytes()
        var rng = SplitMix64(seed: 20_261_201)
        var parsed = 0, rejected = 0
        for _ in 0..<4000 {
            var b = valid
            for _ in 0...Int(rng.next() % 4) {
                // Bias toward the header and infos, where the structure lives.
                let i = Int(rng.next() % UInt64(rng.next() % 2 == 0 ? min(b.count, 700) : b.count))
                b[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            }
            do {
                let f = try GGUFFile(bytes: b, name: "flip.gguf")
                parsed += 1
                // Touch everything a parsed file offers: every value and every tensor's bytes.
                for e in f.metadata {
                    _ = e.value.description
                    if case let .array(a) = e.value { _ = a.stringValues(); _ = a.prefix(3) }
                }
                for t in f.tensorInfos {
                    if let raw = try? f.bytes(t.name, shape: t.shape, type: t.type) { _ = raw.reduce(0) { $0 &+ Int($1) } }
                }
            } catch is GGUFError {
                rejected += 1
            }
        }
        XCTAssertEqual(parsed + rejected, 4000)
        XCTAssertGreaterThan(rejected, 500, "most flips in the structure should be caught")
        XCTAssertGreaterThan(parsed, 100, "flips in tensor data or values should still parse")
    }
}

