// The strict GGUF v3 reader: maps the model file read-only, checks every byte it parses against
// the file size, and hands out tensor views into the mapping. Mirrors the layout in ggml's
// docs/gguf.md; what we accept is Quantization/FORMAT.md.
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Mapping

/// The bytes of one model file: a read-only private mapping (or, for tests and tools, a
/// 64-byte-aligned heap copy). Unmapped or freed when the last reference goes.
final class FileMapping: @unchecked Sendable {
    /// The first byte.
    let base: UnsafeRawPointer
    /// Bytes mapped.
    let size: Int
    private let isMapped: Bool

    /// Maps `path` read-only (PROT_READ, MAP_PRIVATE); the descriptor is closed once mapped.
    init(path: String) throws {
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw GGUFError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw GGUFError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw GGUFError.cannotOpen(file: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        guard size > 0 else { throw GGUFError.truncated(file: path, section: .header) }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw GGUFError.cannotOpen(file: path, reason: "mmap: " + String(cString: strerror(errno))) }
        base = UnsafeRawPointer(p)
        self.size = size
        isMapped = true
    }

    /// A heap copy of `bytes`.
    init(copying bytes: [UInt8]) {
        var p: UnsafeMutableRawPointer?
        precondition(posix_memalign(&p, 64, max(bytes.count, 1)) == 0 && p != nil, "out of memory copying \(bytes.count) bytes")
        bytes.withUnsafeBytes { if let src = $0.baseAddress { p!.copyMemory(from: src, byteCount: bytes.count) } }
        base = UnsafeRawPointer(p!)
        size = bytes.count
        isMapped = false
    }

    deinit {
        if isMapped { munmap(UnsafeMutableRawPointer(mutating: base), size) } else { free(UnsafeMutableRawPointer(mutating: base)) }
    }
}

// MARK: - Tensor info

/// What the file says about one tensor.
public struct GGUFTensorInfo: Sendable, Equatable {
    /// The tensor's name.
    public let name: String
    /// Dimensions in numpy/PyTorch order (outermost first; GGUF's `ne` reversed).
    public let shape: Shape
    /// Element type.
    public let type: GGMLType
    /// Byte offset of the data from the start of the tensor data section (as stored).
    public let offset: Int
    /// Byte offset of the data from the start of the file.
    public let fileOffset: Int
    /// Bytes of data (elements × element size).
    public let byteCount: Int
}

// MARK: - Parser

/// A bounds-checked little-endian cursor over the mapping. Every read checks the bytes that
/// remain first and throws `truncated(section)` if they are too few.
private struct Parser {
    let base: UnsafeRawPointer
    let size: Int
    let file: String
    var pos = 0
    var section = GGUFError.Section.header

    var remaining: Int { size - pos }

    mutating func need(_ n: Int) throws {
        guard n >= 0, n <= remaining else { throw GGUFError.truncated(file: file, section: section) }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        try need(MemoryLayout<T>.size)
        let v = T(littleEndian: base.loadUnaligned(fromByteOffset: pos, as: T.self))
        pos += MemoryLayout<T>.size
        return v
    }

    /// Reads a u64 count of items of at least `unit` bytes each: more than the whole file could
    /// hold is corruption (`countTooLarge`), more than the rest of it is truncation.
    mutating func count(_ what: String, unit: Int) throws -> Int {
        let n = try read(UInt64.self)
        guard n <= UInt64(size / unit) else {
            throw GGUFError.countTooLarge(file: file, section: section, what: what, count: n, fileSize: size)
        }
        guard n <= UInt64(remaining / unit) else { throw GGUFError.truncated(file: file, section: section) }
        return Int(n)
    }

    /// Skips a string (u64 length + UTF-8 bytes), validating it, and returns where its bytes are.
    mutating func skipString() throws -> (offset: Int, length: Int) {
        let n = try read(UInt64.self)
        guard n <= UInt64(remaining) else { throw GGUFError.truncated(file: file, section: section) }
        let start = pos
        guard isValidUTF8(base + start, Int(n)) else { throw GGUFError.invalidString(file: file, section: section) }
        pos += Int(n)
        return (start, Int(n))
    }

    mutating func string() throws -> String {
        let (start, n) = try skipString()
        return String(decoding: UnsafeRawBufferPointer(start: base + start, count: n), as: UTF8.self)
    }
}

/// True if the `n` bytes at `p` are well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
func isValidUTF8(_ p: UnsafeRawPointer, _ n: Int) -> Bool {
    let b = p.assumingMemoryBound(to: UInt8.self)
    var i = 0
    while i < n {
        let c = b[i]
        if c < 0x80 { i += 1; continue }
        let len: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        switch c {
        case 0xC2...0xDF: len = 2
        case 0xE0: len = 3; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: len = 3
        case 0xED: len = 3; hi = 0x9F
        case 0xF0: len = 4; lo = 0x90
        case 0xF1...0xF3: len = 4
        case 0xF4: len = 4; hi = 0x8F
        default: return false
        }
        guard n - i >= len else { return false }
        guard b[i + 1] >= lo && b[i + 1] <= hi else { return false }
        for j in 2..<len where b[i + j] < 0x80 || b[i + j] > 0xBF { return false }
        i += len
    }
    return true
}

// MARK: - GGUFFile

/// One GGUF v3 model file, mapped read-only for the object's lifetime.
///
/// Opening parses and checks the header, all metadata and all tensor infos; nothing is read
/// past the end of the file, and corrupt input throws a `GGUFError` naming the file (and the
/// key or tensor). Loaders then take what they need strictly: typed metadata accessors throw
/// `missingKey`/`wrongKeyType`; tensor accessors check shape and type and mark the tensor
/// consumed; `finish()` throws if any tensor was never asked for.
///
/// Tensor views point into the mapping: keep the `GGUFFile` alive as long as they are used,
/// and never write through them (the pages are mapped PROT_READ; a write crashes).
public final class GGUFFile: @unchecked Sendable {
    /// The path it was opened from (or the name given for in-memory bytes); used in every error.
    public let path: String
    /// Bytes in the file.
    public let fileSize: Int
    /// The GGUF version (always 3).
    public let version: UInt32
    /// Tensor data alignment (`general.alignment` or 32).
    public let alignment: Int
    /// Absolute offset of the tensor data section.
    public let dataOffset: Int
    /// Every metadata entry, in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    /// Every tensor, in file order.
    public let tensorInfos: [GGUFTensorInfo]

    let mapping: FileMapping
    private let keyIndex: [String: Int]
    private let tensorIndex: [String: Int]
    private var consumed: [Bool]
    private let lock = NSLock()

    /// Opens and maps `path` and checks its structure.
    public convenience init(path: String) throws {
        try self.init(mapping: FileMapping(path: path), name: path)
    }

    /// Parses a copy of `bytes` as if it were a file called `name` (tests and tools).
    public convenience init(bytes: [UInt8], name: String) throws {
        guard !bytes.isEmpty else { throw GGUFError.truncated(file: name, section: .header) }
        try self.init(mapping: FileMapping(copying: bytes), name: name)
    }

    private init(mapping: FileMapping, name: String) throws {
        self.mapping = mapping
        path = name
        fileSize = mapping.size
        var p = Parser(base: mapping.base, size: mapping.size, file: name)

        // Header: magic, version, tensor_count, metadata_kv_count.
        let magic = try p.read(UInt32.self)
        guard magic == GGUF.magic else { throw GGUFError.badMagic(file: name, found: magic) }
        version = try p.read(UInt32.self)
        guard version == GGUF.version else { throw GGUFError.unsupportedVersion(file: name, version: version) }
        let tensorCount = try p.read(UInt64.self)
        let kvCount = try p.read(UInt64.self)
        // Counts no file of this size could hold are corruption. Smaller ones are read entry by
        // entry; each entry takes at least 13 (metadata) or 32 (tensor info) bytes, so a count that
        // is merely too large for a truncated file ends in `truncated` after bounded work.
        guard kvCount <= UInt64(p.size / 13) else {
            throw GGUFError.countTooLarge(file: name, section: .header, what: "metadata_kv_count", count: kvCount, fileSize: p.size)
        }
        guard tensorCount <= UInt64(p.size / 32) else {
            throw GGUFError.countTooLarge(file: name, section: .header, what: "tensor_count", count: tensorCount, fileSize: p.size)
        }

        // Metadata.
        var entries: [(key: String, value: GGUFValue)] = []
        var keys: [String: Int] = [:]
        entries.reserveCapacity(min(Int(kvCount), 4096))  // no trust in counts beyond a small reserve
        for i in 0..<Int(kvCount) {
            p.section = .metadata(index: i, key: nil)
            let key = try p.string()
            p.section = .metadata(index: i, key: key)
            let tag = try p.read(UInt32.self)
            guard let type = GGUFValueType(rawValue: tag) else { throw GGUFError.unknownValueType(file: name, key: key, type: tag) }
            let value = try Self.parseValue(type, key: key, &p, mapping)
            guard keys[key] == nil else { throw GGUFError.duplicateKey(file: name, key: key) }
            keys[key] = entries.count
            entries.append((key, value))
        }
        metadata = entries
        keyIndex = keys

        var align = GGUF.defaultAlignment
        if let i = keys[GGUF.alignmentKey] {
            guard case let .uint32(a) = entries[i].value else {
                throw GGUFError.wrongKeyType(file: name, key: GGUF.alignmentKey, expected: "u32", found: entries[i].value.typeName)
            }
            guard a != 0, a & (a - 1) == 0 else { throw GGUFError.badAlignment(file: name, alignment: a) }
            align = Int(a)
        }
        alignment = align

        // Tensor infos.
        struct Raw { let name: String; let shape: Shape; let type: GGMLType; let offset: UInt64; let bytes: Int }
        var raws: [Raw] = []
        var names: [String: Int] = [:]
        raws.reserveCapacity(min(Int(tensorCount), 4096))
        for i in 0..<Int(tensorCount) {
            p.section = .tensorInfo(index: i, name: nil)
            let tname = try p.string()
            p.section = .tensorInfo(index: i, name: tname)
            let nDims = try p.read(UInt32.self)
            guard (1...4).contains(nDims) else {
                throw GGUFError.badDimensions(file: name, tensor: tname, reason: "\(nDims) dimensions (we read 1 to 4)")
            }
            var ne: [Int] = []
            var elements = 1
            for _ in 0..<Int(nDims) {
                let d = try p.read(UInt64.self)
                guard d >= 1, d <= UInt64(Int.max) else {
                    throw GGUFError.badDimensions(file: name, tensor: tname, reason: "dimension \(d) (each must be at least 1)")
                }
                let (e, overflow) = elements.multipliedReportingOverflow(by: Int(d))
                guard !overflow else { throw GGUFError.badDimensions(file: name, tensor: tname, reason: "the element count overflows") }
                elements = e
                ne.append(Int(d))
            }
            let tag = try p.read(UInt32.self)
            guard let type = GGMLType(rawValue: tag) else { throw GGUFError.unknownTensorType(file: name, tensor: tname, type: tag) }
            let offset = try p.read(UInt64.self)
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: type.size)
            guard !overflow else { throw GGUFError.badDimensions(file: name, tensor: tname, reason: "the byte count overflows") }
            guard names[tname] == nil else { throw GGUFError.duplicateTensor(file: name, tensor: tname) }
            names[tname] = raws.count
            raws.append(Raw(name: tname, shape: Shape(ne.reversed()), type: type, offset: offset, bytes: bytes))
        }
        tensorIndex = names

        // Tensor data: starts at the first multiple of the alignment after the infos.
        let start = (p.pos + align - 1) / align * align
        dataOffset = start
        let dataBytes = max(0, mapping.size - start)
        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(raws.count)
        for r in raws {
            guard r.offset % UInt64(align) == 0 else {
                throw GGUFError.misalignedOffset(file: name, tensor: r.name, offset: r.offset, alignment: align)
            }
            guard r.offset <= UInt64(dataBytes) else {
                throw GGUFError.tensorOutOfBounds(file: name, tensor: r.name, offset: r.offset, bytes: r.bytes, dataBytes: dataBytes)
            }
            let off = Int(r.offset)
            guard r.bytes <= dataBytes - off else { throw GGUFError.truncated(file: name, section: .tensorData(r.name)) }
            infos.append(GGUFTensorInfo(name: r.name, shape: r.shape, type: r.type, offset: off,
                                        fileOffset: start + off, byteCount: r.bytes))
        }
        let byOffset = infos.indices.sorted { infos[$0].offset < infos[$1].offset }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where infos[a].offset + infos[a].byteCount > infos[b].offset {
            throw GGUFError.overlappingTensors(file: name, first: infos[a].name, second: infos[b].name)
        }
        tensorInfos = infos
        consumed = Array(repeating: false, count: infos.count)
    }

    /// Parses one value of `type` at the cursor. Arrays keep a region of the mapping, not their elements.
    private static func parseValue(_ type: GGUFValueType, key: String, _ p: inout Parser, _ mapping: FileMapping) throws -> GGUFValue {
        switch type {
        case .string:
            return .string(try p.string())
        case .array:
            let tag = try p.read(UInt32.self)
            guard let element = GGUFValueType(rawValue: tag), element != .array else {
                throw GGUFError.unknownValueType(file: p.file, key: key, type: tag)
            }
            let count = try p.count("array count", unit: element.minimumSize)
            let start = p.pos
            if let size = element.fixedSize {
                let bytes = count * size  // cannot overflow: count ≤ remaining / size
                if element == .bool {
                    for i in 0..<count {
                        let b = p.base.load(fromByteOffset: start + i, as: UInt8.self)
                        guard b <= 1 else { throw GGUFError.invalidBool(file: p.file, key: key, byte: b) }
                    }
                }
                p.pos += bytes
            } else {
                for _ in 0..<count { _ = try p.skipString() }
            }
            return .array(GGUFArray(elementType: element, count: count, storage: .mapped(mapping, offset: start, length: p.pos - start)))
        default:
            let size = type.fixedSize!
            try p.need(size)
            let v = GGUFValue.decodeScalar(type, UnsafeRawBufferPointer(start: p.base, count: p.size), at: p.pos)
            if type == .bool {
                let b = p.base.load(fromByteOffset: p.pos, as: UInt8.self)
                guard b <= 1 else { throw GGUFError.invalidBool(file: p.file, key: key, byte: b) }
            }
            p.pos += size
            return v
        }
    }

    // MARK: - Metadata access

    /// The value of `key`, if present.
    public func value(_ key: String) -> GGUFValue? { keyIndex[key].map { metadata[$0].value } }

    /// True if `key` is present.
    public func hasKey(_ key: String) -> Bool { keyIndex[key] != nil }

    private func typed<T>(_ key: String, _ expected: String, _ extract: (GGUFValue) -> T?) throws -> T? {
        guard let v = value(key) else { return nil }
        guard let t = extract(v) else { throw GGUFError.wrongKeyType(file: path, key: key, expected: expected, found: v.typeName) }
        return t
    }

    private func required<T>(_ key: String, _ t: T?) throws -> T {
        guard let t else { throw GGUFError.missingKey(file: path, key: key) }
        return t
    }

    private func array<T>(_ key: String, _ element: GGUFValueType, _ extract: (GGUFArray) -> [T]?) throws -> [T]? {
        try typed(key, "array[\(element)]") { if case let .array(a) = $0 { return extract(a) } else { return nil } }
    }

    /// A u32 value, nil if absent; throws `wrongKeyType` for another type.
    public func u32IfPresent(_ key: String) throws -> UInt32? { try typed(key, "u32") { if case let .uint32(x) = $0 { x } else { nil } } }
    /// An f32 value, nil if absent; throws `wrongKeyType` for another type.
    public func f32IfPresent(_ key: String) throws -> Float? { try typed(key, "f32") { if case let .float32(x) = $0 { x } else { nil } } }
    /// A bool value, nil if absent; throws `wrongKeyType` for another type.
    public func boolIfPresent(_ key: String) throws -> Bool? { try typed(key, "bool") { if case let .bool(x) = $0 { x } else { nil } } }
    /// A string value, nil if absent; throws `wrongKeyType` for another type.
    public func stringIfPresent(_ key: String) throws -> String? { try typed(key, "string") { if case let .string(x) = $0 { x } else { nil } } }
    /// An array value of any element type (not materialized), nil if absent.
    public func arrayIfPresent(_ key: String) throws -> GGUFArray? { try typed(key, "array") { if case let .array(a) = $0 { a } else { nil } } }
    /// A u32 array, nil if absent.
    public func u32ArrayIfPresent(_ key: String) throws -> [UInt32]? { try array(key, .uint32) { $0.uint32Values() } }
    /// An i32 array, nil if absent.
    public func i32ArrayIfPresent(_ key: String) throws -> [Int32]? { try array(key, .int32) { $0.int32Values() } }
    /// An f32 array, nil if absent.
    public func f32ArrayIfPresent(_ key: String) throws -> [Float]? { try array(key, .float32) { $0.float32Values() } }
    /// A bool array, nil if absent.
    public func boolArrayIfPresent(_ key: String) throws -> [Bool]? { try array(key, .bool) { $0.boolValues() } }
    /// A string array (materialized), nil if absent.
    public func stringArrayIfPresent(_ key: String) throws -> [String]? { try array(key, .string) { $0.stringValues() } }

    /// A required u32 value.
    public func u32(_ key: String) throws -> UInt32 { try required(key, u32IfPresent(key)) }
    /// A required f32 value.
    public func f32(_ key: String) throws -> Float { try required(key, f32IfPresent(key)) }
    /// A required bool value.
    public func bool(_ key: String) throws -> Bool { try required(key, boolIfPresent(key)) }
    /// A required string value.
    public func string(_ key: String) throws -> String { try required(key, stringIfPresent(key)) }
    /// A required array (not materialized; see `GGUFArray.forEachString`).
    public func array(_ key: String) throws -> GGUFArray { try required(key, arrayIfPresent(key)) }
    /// A required u32 array.
    public func u32Array(_ key: String) throws -> [UInt32] { try required(key, u32ArrayIfPresent(key)) }
    /// A required i32 array.
    public func i32Array(_ key: String) throws -> [Int32] { try required(key, i32ArrayIfPresent(key)) }
    /// A required f32 array.
    public func f32Array(_ key: String) throws -> [Float] { try required(key, f32ArrayIfPresent(key)) }
    /// A required bool array.
    public func boolArray(_ key: String) throws -> [Bool] { try required(key, boolArrayIfPresent(key)) }
    /// A required string array (materialized).
    public func stringArray(_ key: String) throws -> [String] { try required(key, stringArrayIfPresent(key)) }

    /// A required u32 array of exactly `count` elements (throws `wrongKeyType` naming the count otherwise).
    public func u32Array(_ key: String, count: Int) throws -> [UInt32] {
        let a = try u32Array(key)
        guard a.count == count else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "array[u32] of \(count)", found: "array[u32] of \(a.count)") }
        return a
    }

    // MARK: - Tensor access

    /// What the file says about tensor `name`, if present (does not consume it).
    public func info(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensorInfos[$0] } }

    /// True if tensor `name` is present.
    public func hasTensor(_ name: String) -> Bool { tensorIndex[name] != nil }

    /// The bytes of tensor `name` after checking its shape and type; marks it consumed.
    /// Reading a tensor twice is allowed (tied weights).
    func bytes(_ name: String, shape: Shape, type: GGMLType) throws -> UnsafeRawBufferPointer {
        guard let i = tensorIndex[name] else { throw GGUFError.missingTensor(file: path, tensor: name) }
        let t = tensorInfos[i]
        guard t.type == type else { throw GGUFError.wrongType(file: path, tensor: name, expected: type, found: t.type) }
        guard t.shape == shape else { throw GGUFError.wrongShape(file: path, tensor: name, expected: shape, found: t.shape) }
        let p = mapping.base + t.fileOffset
        guard Int(bitPattern: p) % type.size == 0 else {
            throw GGUFError.misalignedOffset(file: path, tensor: name, offset: UInt64(t.offset), alignment: type.size)
        }
        lock.lock()
        consumed[i] = true
        lock.unlock()
        return UnsafeRawBufferPointer(start: p, count: t.byteCount)
    }

    /// F32 tensor `name` of exactly `shape`, as a view into the read-only mapping (never write to it).
    public func tensor(_ name: String, shape: Shape) throws -> Tensor {
        let b = try bytes(name, shape: shape, type: .f32)
        let f = UnsafeMutableRawPointer(mutating: b.baseAddress!).assumingMemoryBound(to: Float.self)
        return Tensor(base: f, shape: shape)
    }

    /// I8 tensor `name` of exactly `shape`, as a pointer into the read-only mapping.
    func int8Pointer(_ name: String, shape: Shape) throws -> UnsafePointer<Int8> {
        try bytes(name, shape: shape, type: .i8).baseAddress!.assumingMemoryBound(to: Int8.self)
    }

    /// A copy of I8 tensor `name` (small tables and tests).
    public func int8Values(_ name: String, shape: Shape) throws -> [Int8] { Array(try bytes(name, shape: shape, type: .i8).bindMemory(to: Int8.self)) }
    /// A copy of I16 tensor `name` (small tables and tests).
    public func int16Values(_ name: String, shape: Shape) throws -> [Int16] { Array(try bytes(name, shape: shape, type: .i16).bindMemory(to: Int16.self)) }
    /// A copy of I32 tensor `name` (small tables and tests).
    public func int32Values(_ name: String, shape: Shape) throws -> [Int32] { Array(try bytes(name, shape: shape, type: .i32).bindMemory(to: Int32.self)) }
    /// A copy of F16 tensor `name` as raw half-precision bit patterns.
    public func float16Bits(_ name: String, shape: Shape) throws -> [UInt16] { Array(try bytes(name, shape: shape, type: .f16).bindMemory(to: UInt16.self)) }

    /// Linear layer `<base>` `[N, K]` stored either way FORMAT.md allows: `<base>.weight` F32
    /// `[N, K]`, or `<base>.qweight` I8 `[ceil(N/16), K·16]` (panel16x4) with `<base>.scale` F32
    /// `[N]`, optionally with a residual level `<base>.qresidual` I8 (same shape) and `<base>.rscale`
    /// F32 `[N]`; plus `<base>.bias` F32 `[N]` when `bias` is true. If both forms are present the
    /// unused one is left unconsumed, so `finish()` reports it.
    public func linear(_ base: String, outFeatures n: Int, inFeatures k: Int, bias: Bool) throws -> Linear {
        let b = bias ? try tensor(base + ".bias", shape: Shape(n)) : nil
        if hasTensor(base + ".weight") {
            return Linear(weight: try tensor(base + ".weight", shape: Shape(n, k)), bias: b)
        }
        guard hasTensor(base + ".qweight") else {
            throw GGUFError.missingTensor(file: path, tensor: "\(base).weight' (or '\(base).qweight' with '\(base).scale")
        }
        let qshape = Shape((n + 15) / 16, k * 16)
        guard k % 4 == 0 else {
            let found = info(base + ".qweight")!.shape
            throw GGUFError.badDimensions(file: path, tensor: base + ".qweight",
                                          reason: "int8 weights need K to be a multiple of 4, K = \(k) (shape \(found))")
        }
        let q = try int8Pointer(base + ".qweight", shape: qshape)
        let s = try tensor(base + ".scale", shape: Shape(n))
        var residual: Int8Weights?
        if hasTensor(base + ".qresidual") || hasTensor(base + ".rscale") {
            guard hasTensor(base + ".qresidual") else { throw GGUFError.missingTensor(file: path, tensor: base + ".qresidual") }
            guard hasTensor(base + ".rscale") else { throw GGUFError.missingTensor(file: path, tensor: base + ".rscale") }
            let rq = try int8Pointer(base + ".qresidual", shape: qshape)
            let rs = try tensor(base + ".rscale", shape: Shape(n))
            residual = Int8Weights(outFeatures: n, inFeatures: k, packed: rq, scales: UnsafePointer(rs.base))
        }
        return Linear(int8: Int8Weights(outFeatures: n, inFeatures: k, packed: q, scales: UnsafePointer(s.base)),
                      residual: residual, bias: b)
    }

    // MARK: - Strict loading

    /// Names of tensors not yet consumed, in file order.
    public var unconsumedTensors: [String] {
        lock.lock()
        defer { lock.unlock() }
        return tensorInfos.indices.filter { !consumed[$0] }.map { tensorInfos[$0].name }
    }

    /// Throws `unexpectedTensors` if any tensor in the file was never asked for.
    public func finish() throws {
        let left = unconsumedTensors
        guard left.isEmpty else { throw GGUFError.unexpectedTensors(file: path, tensors: left) }
    }
}
