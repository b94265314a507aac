// The GGUF v3 writer for tests and tools: metadata of every value type, tensors of our element
// types, aligned data, deterministic bytes. Mirrors the layout in ggml's docs/gguf.md (the same
// layout the PyPI `gguf` package's GGUFWriter produces); the converter proper is Python.
import Foundation

// MARK: - Writer

/// Builds one GGUF v3 file in memory. Entries and tensors are written in the order they were
/// added; the alignment is `general.alignment` if that key was added (u32, a power of two),
/// else 32. Each tensor's data starts at a multiple of the alignment and is followed by zero
/// padding to the next multiple, so the same inputs always give the same bytes.
public struct GGUFWriter {
    private var entries: [(key: String, value: GGUFValue)] = []
    private var tensors: [(name: String, shape: Shape, type: GGMLType, data: [UInt8])] = []

    /// An empty file.
    public init() {}

    /// The alignment the file will use.
    public var alignment: Int {
        for e in entries where e.key == GGUF.alignmentKey {
            if case let .uint32(a) = e.value { return Int(a) }
        }
        return GGUF.defaultAlignment
    }

    /// Adds metadata entry `key` (each key once; arrays of arrays are not supported).
    public mutating func add(_ key: String, _ value: GGUFValue) {
        precondition(!entries.contains { $0.key == key }, "duplicate metadata key '\(key)'")
        if key == GGUF.alignmentKey {
            guard case let .uint32(a) = value, a != 0, a & (a - 1) == 0 else {
                preconditionFailure("\(GGUF.alignmentKey) must be a u32 power of two, got \(value)")
            }
        }
        entries.append((key, value))
    }

    /// Adds tensor `name` of numpy-order `shape` (rank 1 to 4) with its raw little-endian bytes.
    public mutating func addTensor(_ name: String, shape: Shape, type: GGMLType, bytes: [UInt8]) {
        precondition(!tensors.contains { $0.name == name }, "duplicate tensor '\(name)'")
        precondition(shape.rank >= 1 && shape.rank <= 4 && shape.array.allSatisfy { $0 >= 1 }, "bad shape \(shape) for '\(name)'")
        precondition(bytes.count == shape.count * type.size,
                     "tensor '\(name)' \(type)\(shape) needs \(shape.count * type.size) bytes, got \(bytes.count)")
        tensors.append((name, shape, type, bytes))
    }

    /// Adds an F32 tensor.
    public mutating func addTensor(_ name: String, shape: Shape, floats: [Float]) {
        addTensor(name, shape: shape, type: .f32, bytes: Self.le(floats.map(\.bitPattern)))
    }

    /// Adds an I8 tensor.
    public mutating func addTensor(_ name: String, shape: Shape, int8: [Int8]) {
        addTensor(name, shape: shape, type: .i8, bytes: int8.map { UInt8(bitPattern: $0) })
    }

    /// Adds an I16 tensor.
    public mutating func addTensor(_ name: String, shape: Shape, int16: [Int16]) {
        addTensor(name, shape: shape, type: .i16, bytes: Self.le(int16))
    }

    /// Adds an I32 tensor.
    public mutating func addTensor(_ name: String, shape: Shape, int32: [Int32]) {
        addTensor(name, shape: shape, type: .i32, bytes: Self.le(int32))
    }

    /// Adds an F16 tensor from raw half-precision bit patterns.
    public mutating func addTensor(_ name: String, shape: Shape, float16Bits: [UInt16]) {
        addTensor(name, shape: shape, type: .f16, bytes: Self.le(float16Bits))
    }

    private static func le<T: FixedWidthInteger>(_ v: [T]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(v.count * MemoryLayout<T>.size)
        for x in v { appendLE(x, to: &out) }
        return out
    }

    // MARK: - Encoding

    /// The complete file.
    public func bytes() -> [UInt8] {
        let align = alignment
        var out: [UInt8] = []
        appendLE(GGUF.magic, to: &out)
        appendLE(GGUF.version, to: &out)
        appendLE(UInt64(tensors.count), to: &out)
        appendLE(UInt64(entries.count), to: &out)
        for e in entries {
            Self.appendString(e.key, to: &out)
            appendLE(e.value.type.rawValue, to: &out)
            Self.appendValue(e.value, to: &out)
        }
        var offset = 0
        for t in tensors {
            Self.appendString(t.name, to: &out)
            appendLE(UInt32(t.shape.rank), to: &out)
            for d in t.shape.array.reversed() { appendLE(UInt64(d), to: &out) }  // ne: innermost first
            appendLE(t.type.rawValue, to: &out)
            appendLE(UInt64(offset), to: &out)
            offset += Self.padded(t.data.count, align)
        }
        if !tensors.isEmpty {
            out.append(contentsOf: repeatElement(0, count: Self.padded(out.count, align) - out.count))
            for t in tensors {
                out.append(contentsOf: t.data)
                out.append(contentsOf: repeatElement(0, count: Self.padded(t.data.count, align) - t.data.count))
            }
        }
        return out
    }

    /// The complete file as `Data`.
    public func data() -> Data { Data(bytes()) }

    /// Writes the file to `path` (atomically: a temporary file renamed into place).
    public func write(to path: String) throws {
        try data().write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    private static func padded(_ n: Int, _ align: Int) -> Int { (n + align - 1) / align * align }

    private static func appendString(_ s: String, to out: inout [UInt8]) {
        appendLE(UInt64(s.utf8.count), to: &out)
        out.append(contentsOf: s.utf8)
    }

    private static func appendValue(_ v: GGUFValue, to out: inout [UInt8]) {
        switch v {
        case let .uint8(x): appendLE(x, to: &out)
        case let .int8(x): appendLE(x, to: &out)
        case let .uint16(x): appendLE(x, to: &out)
        case let .int16(x): appendLE(x, to: &out)
        case let .uint32(x): appendLE(x, to: &out)
        case let .int32(x): appendLE(x, to: &out)
        case let .float32(x): appendLE(x.bitPattern, to: &out)
        case let .bool(x): out.append(x ? 1 : 0)
        case let .string(s): appendString(s, to: &out)
        case let .uint64(x): appendLE(x, to: &out)
        case let .int64(x): appendLE(x, to: &out)
        case let .float64(x): appendLE(x.bitPattern, to: &out)
        case let .array(a):
            appendLE(a.elementType.rawValue, to: &out)
            appendLE(UInt64(a.count), to: &out)
            a.storage.withBytes { out.append(contentsOf: $0) }
        }
    }
}
