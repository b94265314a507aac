// GGUF v3 vocabulary shared by the reader and the writer: value types, metadata values, tensor
// types and the one error type. Mirrors the layout in ggml's docs/gguf.md (`gguf_type`,
// `ggml_type`); our model-file contract is Quantization/FORMAT.md.

// MARK: - Constants

/// Fixed facts of the GGUF v3 container.
public enum GGUF {
    /// "GGUF" read as a little-endian u32.
    public static let magic: UInt32 = 0x4655_4747
    /// The only version we read and write.
    public static let version: UInt32 = 3
    /// Tensor data alignment when `general.alignment` is absent.
    public static let defaultAlignment = 32
    /// The metadata key that overrides the alignment (u32, a power of two).
    public static let alignmentKey = "general.alignment"
}

// MARK: - Metadata value types

/// The type tag of a metadata value (`gguf_type`).
public enum GGUFValueType: UInt32, Sendable, CustomStringConvertible {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Encoded bytes of one value, or nil for the variable-size string and array.
    public var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    /// The smallest encoding of one value (a string is at least its u64 length).
    var minimumSize: Int { fixedSize ?? (self == .string ? 8 : 12) }

    public var description: String {
        switch self {
        case .uint8: return "u8"
        case .int8: return "i8"
        case .uint16: return "u16"
        case .int16: return "i16"
        case .uint32: return "u32"
        case .int32: return "i32"
        case .float32: return "f32"
        case .bool: return "bool"
        case .string: return "string"
        case .array: return "array"
        case .uint64: return "u64"
        case .int64: return "i64"
        case .float64: return "f64"
        }
    }
}

// MARK: - Arrays

/// A metadata array of scalars or strings, kept as its encoded little-endian bytes (in the mapped
/// file, or owned when built for the writer), so a 50 000-string tokenizer table costs nothing
/// until someone asks for its elements. Arrays of arrays are not supported.
public struct GGUFArray: @unchecked Sendable, Equatable, CustomStringConvertible {
    /// The type of every element (never `.array`).
    public let elementType: GGUFValueType
    /// The number of elements.
    public let count: Int
    /// The encoded elements (strings: u64 length + UTF-8 bytes each, already validated).
    let storage: ByteRegion

    init(elementType: GGUFValueType, count: Int, storage: ByteRegion) {
        self.elementType = elementType
        self.count = count
        self.storage = storage
    }

    // MARK: Building (writer)

    /// An array of u8.
    public static func uint8(_ v: [UInt8]) -> GGUFArray { fixed(.uint8, v) }
    /// An array of i8.
    public static func int8(_ v: [Int8]) -> GGUFArray { fixed(.int8, v) }
    /// An array of u16.
    public static func uint16(_ v: [UInt16]) -> GGUFArray { fixed(.uint16, v) }
    /// An array of i16.
    public static func int16(_ v: [Int16]) -> GGUFArray { fixed(.int16, v) }
    /// An array of u32.
    public static func uint32(_ v: [UInt32]) -> GGUFArray { fixed(.uint32, v) }
    /// An array of i32.
    public static func int32(_ v: [Int32]) -> GGUFArray { fixed(.int32, v) }
    /// An array of u64.
    public static func uint64(_ v: [UInt64]) -> GGUFArray { fixed(.uint64, v) }
    /// An array of i64.
    public static func int64(_ v: [Int64]) -> GGUFArray { fixed(.int64, v) }
    /// An array of f32.
    public static func float32(_ v: [Float]) -> GGUFArray { fixed(.float32, v.map(\.bitPattern)) }
    /// An array of f64.
    public static func float64(_ v: [Double]) -> GGUFArray { fixed(.float64, v.map(\.bitPattern)) }
    /// An array of bools (one byte each, 0 or 1).
    public static func bool(_ v: [Bool]) -> GGUFArray { fixed(.bool, v.map { $0 ? UInt8(1) : 0 }) }
    /// An array of strings.
    public static func string(_ v: [String]) -> GGUFArray {
        var bytes: [UInt8] = []
        for s in v { appendLE(UInt64(s.utf8.count), to: &bytes); bytes.append(contentsOf: s.utf8) }
        return GGUFArray(elementType: .string, count: v.count, storage: .owned(bytes))
    }

    private static func fixed<T: FixedWidthInteger>(_ type: GGUFValueType, _ v: [T]) -> GGUFArray {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(v.count * MemoryLayout<T>.size)
        for x in v { appendLE(x, to: &bytes) }
        return GGUFArray(elementType: type, count: v.count, storage: .owned(bytes))
    }

    // MARK: Reading

    /// The elements as u32, or nil if they are of another type.
    public func uint32Values() -> [UInt32]? { integers(.uint32) }
    /// The elements as i32, or nil if they are of another type.
    public func int32Values() -> [Int32]? { integers(.int32) }
    /// The elements as u64, or nil if they are of another type.
    public func uint64Values() -> [UInt64]? { integers(.uint64) }
    /// The elements as f32, or nil if they are of another type.
    public func float32Values() -> [Float]? { (integers(.float32) as [UInt32]?)?.map(Float.init(bitPattern:)) }
    /// The elements as bools, or nil if they are of another type.
    public func boolValues() -> [Bool]? { (integers(.bool) as [UInt8]?)?.map { $0 != 0 } }

    /// The elements as strings (allocates all of them), or nil if they are of another type.
    public func stringValues() -> [String]? {
        guard elementType == .string else { return nil }
        var out: [String] = []
        out.reserveCapacity(count)
        forEachString { _, s in out.append(s) }
        return out
    }

    /// Calls `body` with each string element and its index, decoding one at a time
    /// (does nothing if the elements are not strings).
    public func forEachString(_ body: (Int, String) throws -> Void) rethrows {
        guard elementType == .string else { return }
        try storage.withBytes { raw in
            var pos = 0
            for i in 0..<count {
                let n = Int(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: pos, as: UInt64.self)))
                let s = String(decoding: UnsafeRawBufferPointer(rebasing: raw[(pos + 8)..<(pos + 8 + n)]), as: UTF8.self)
                pos += 8 + n
                try body(i, s)
            }
        }
    }

    /// Element `i` as a scalar or string value (strings are found by a scan: O(i)).
    public func element(_ i: Int) -> GGUFValue {
        precondition(i >= 0 && i < count, "array index \(i) out of range 0..<\(count)")
        if elementType == .string {
            var found = GGUFValue.string("")
            storage.withBytes { raw in
                var pos = 0
                for _ in 0..<i { pos += 8 + Int(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: pos, as: UInt64.self))) }
                let n = Int(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: pos, as: UInt64.self)))
                found = .string(String(decoding: UnsafeRawBufferPointer(rebasing: raw[(pos + 8)..<(pos + 8 + n)]), as: UTF8.self))
            }
            return found
        }
        let size = elementType.fixedSize!
        return storage.withBytes { raw in GGUFValue.decodeScalar(elementType, raw, at: i * size) }
    }

    /// The first `n` elements (or all, if fewer), for display.
    public func prefix(_ n: Int) -> [GGUFValue] { (0..<min(n, count)).map(element) }

    private func integers<T: FixedWidthInteger>(_ type: GGUFValueType) -> [T]? {
        guard elementType == type else { return nil }
        return storage.withBytes { raw in
            (0..<count).map { T(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self)) }
        }
    }

    public static func == (l: GGUFArray, r: GGUFArray) -> Bool {
        l.elementType == r.elementType && l.count == r.count
            && l.storage.withBytes { a in r.storage.withBytes { b in a.elementsEqual(b) } }
    }

    public var description: String {
        let shown = prefix(8).map(\.valueDescription).joined(separator: ", ")
        return "[\(shown)\(count > 8 ? ", ..." : "")]"
    }
}

/// Bytes an array's elements live in: a region of the mapped file (kept alive by the mapping
/// object) or an owned buffer.
enum ByteRegion: @unchecked Sendable {
    case mapped(FileMapping, offset: Int, length: Int)
    case owned([UInt8])

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch self {
        case let .mapped(m, offset, length):
            return try body(UnsafeRawBufferPointer(start: m.base + offset, count: length))
        case let .owned(bytes):
            return try bytes.withUnsafeBytes(body)
        }
    }

    var length: Int {
        switch self {
        case let .mapped(_, _, length): return length
        case let .owned(bytes): return bytes.count
        }
    }
}

// MARK: - Metadata values

/// One metadata value.
public enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    case array(GGUFArray)

    /// The value's type tag.
    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .float32: return .float32
        case .bool: return .bool
        case .string: return .string
        case .uint64: return .uint64
        case .int64: return .int64
        case .float64: return .float64
        case .array: return .array
        }
    }

    /// The type as people read it: `u32`, `string`, `array[f32]`.
    public var typeName: String {
        if case let .array(a) = self { return "array[\(a.elementType)]" }
        return type.description
    }

    /// The value alone (strings quoted, arrays abbreviated).
    public var valueDescription: String {
        switch self {
        case let .uint8(v): return String(v)
        case let .int8(v): return String(v)
        case let .uint16(v): return String(v)
        case let .int16(v): return String(v)
        case let .uint32(v): return String(v)
        case let .int32(v): return String(v)
        case let .float32(v): return String(v)
        case let .bool(v): return String(v)
        case let .string(v): return quoted(v)
        case let .uint64(v): return String(v)
        case let .int64(v): return String(v)
        case let .float64(v): return String(v)
        case let .array(a): return a.description
        }
    }

    public var description: String { "\(typeName) \(valueDescription)" }

    /// Floats compare by bit pattern so NaN round-trips compare equal.
    public static func == (l: GGUFValue, r: GGUFValue) -> Bool {
        switch (l, r) {
        case let (.uint8(a), .uint8(b)): return a == b
        case let (.int8(a), .int8(b)): return a == b
        case let (.uint16(a), .uint16(b)): return a == b
        case let (.int16(a), .int16(b)): return a == b
        case let (.uint32(a), .uint32(b)): return a == b
        case let (.int32(a), .int32(b)): return a == b
        case let (.float32(a), .float32(b)): return a.bitPattern == b.bitPattern
        case let (.bool(a), .bool(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.uint64(a), .uint64(b)): return a == b
        case let (.int64(a), .int64(b)): return a == b
        case let (.float64(a), .float64(b)): return a.bitPattern == b.bitPattern
        case let (.array(a), .array(b)): return a == b
        default: return false
        }
    }

    /// Decodes one fixed-size scalar of `type` at `offset` (bounds already checked by the caller).
    static func decodeScalar(_ type: GGUFValueType, _ raw: UnsafeRawBufferPointer, at offset: Int) -> GGUFValue {
        func le<T: FixedWidthInteger>(_: T.Type) -> T { T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        switch type {
        case .uint8: return .uint8(le(UInt8.self))
        case .int8: return .int8(le(Int8.self))
        case .uint16: return .uint16(le(UInt16.self))
        case .int16: return .int16(le(Int16.self))
        case .uint32: return .uint32(le(UInt32.self))
        case .int32: return .int32(le(Int32.self))
        case .float32: return .float32(Float(bitPattern: le(UInt32.self)))
        case .bool: return .bool(le(UInt8.self) != 0)
        case .uint64: return .uint64(le(UInt64.self))
        case .int64: return .int64(le(Int64.self))
        case .float64: return .float64(Double(bitPattern: le(UInt64.self)))
        case .string, .array: preconditionFailure("decodeScalar called for \(type)")
        }
    }
}

/// A string in double quotes with control characters escaped, for messages and `inspect`.
func quoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if u.value < 0x20 || u.value == 0x7f { out += "\\u{\(String(u.value, radix: 16))}" } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// Appends `v` to `bytes` in little-endian order.
func appendLE<T: FixedWidthInteger>(_ v: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
}

// MARK: - Tensor types

/// The tensor element types we read and write (`ggml_type` numbers from ggml.h).
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, i8 = 24, i16 = 25, i32 = 26

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .i16: return 2
        case .i8: return 1
        }
    }

    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        }
    }
}

// MARK: - Errors

/// Everything that can be wrong with a model file, each message naming the file and, where it
/// applies, the tensor or metadata key. Thrown by `GGUFFile` (parsing and strict loading).
public enum GGUFError: Error, CustomStringConvertible, Equatable {
    /// Where in the file a read ran past the end.
    public enum Section: Equatable, Sendable, CustomStringConvertible {
        case header
        /// Metadata entry `index` (0-based); `key` once it has been read.
        case metadata(index: Int, key: String?)
        /// Tensor info `index` (0-based); `name` once it has been read.
        case tensorInfo(index: Int, name: String?)
        /// The data of the named tensor.
        case tensorData(String)

        public var description: String {
            switch self {
            case .header: return "header"
            case let .metadata(i, key): return "metadata key \(i)" + (key.map { " (\(quoted($0)))" } ?? "")
            case let .tensorInfo(i, name): return "tensor info \(i)" + (name.map { " ('\($0)')" } ?? "")
            case let .tensorData(name): return "tensor data '\(name)'"
            }
        }
    }

    /// The file could not be opened, sized or mapped.
    case cannotOpen(file: String, reason: String)
    /// The first four bytes are not "GGUF".
    case badMagic(file: String, found: UInt32)
    /// A GGUF version other than 3.
    case unsupportedVersion(file: String, version: UInt32)
    /// The file ends inside `section`.
    case truncated(file: String, section: Section)
    /// A count of entries or elements that no file of this size could hold.
    case countTooLarge(file: String, section: Section, what: String, count: UInt64, fileSize: Int)
    /// A metadata value (or array element) type tag outside 0...12, or an array of arrays.
    case unknownValueType(file: String, key: String, type: UInt32)
    /// A string (key, value or tensor name) that is not valid UTF-8.
    case invalidString(file: String, section: Section)
    /// A bool byte other than 0 or 1.
    case invalidBool(file: String, key: String, byte: UInt8)
    /// `general.alignment` is zero or not a power of two.
    case badAlignment(file: String, alignment: UInt32)
    /// A tensor info with bad dimensions (count outside 1...4, a zero dimension, or too many elements).
    case badDimensions(file: String, tensor: String, reason: String)
    /// A tensor type we do not read.
    case unknownTensorType(file: String, tensor: String, type: UInt32)
    /// A tensor offset that is not a multiple of the alignment.
    case misalignedOffset(file: String, tensor: String, offset: UInt64, alignment: Int)
    /// A tensor whose data starts beyond the end of the file.
    case tensorOutOfBounds(file: String, tensor: String, offset: UInt64, bytes: Int, dataBytes: Int)
    /// Two tensors whose data overlap.
    case overlappingTensors(file: String, first: String, second: String)
    /// A metadata key that appears twice.
    case duplicateKey(file: String, key: String)
    /// A tensor name that appears twice.
    case duplicateTensor(file: String, tensor: String)
    /// A required metadata key is absent.
    case missingKey(file: String, key: String)
    /// A metadata key holds another type than the loader expects.
    case wrongKeyType(file: String, key: String, expected: String, found: String)
    /// A required tensor is absent.
    case missingTensor(file: String, tensor: String)
    /// Tensors the loader never asked for (strict loading: `finish()`).
    case unexpectedTensors(file: String, tensors: [String])
    /// A tensor whose shape differs from what the loader expects (numpy order).
    case wrongShape(file: String, tensor: String, expected: Shape, found: Shape)
    /// A tensor whose element type differs from what the loader expects.
    case wrongType(file: String, tensor: String, expected: GGMLType, found: GGMLType)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason):
            return "\(file): cannot open model file: \(reason)"
        case let .badMagic(file, found):
            return "\(file): not a GGUF file (magic 0x\(String(found, radix: 16)), expected 0x\(String(GGUF.magic, radix: 16)) \"GGUF\")"
        case let .unsupportedVersion(file, version):
            return "\(file): GGUF version \(version) is not supported (only version 3); re-convert the model with Quantization/convert.py"
        case let .truncated(file, section):
            return "\(file): file is truncated in the \(section); the file is incomplete or corrupt"
        case let .countTooLarge(file, section, what, count, fileSize):
            return "\(file): \(what) \(count) in the \(section) cannot fit in a file of \(fileSize) bytes; the file is corrupt"
        case let .unknownValueType(file, key, type):
            return "\(file): metadata key \(quoted(key)) has unknown or unsupported value type \(type) (0...12 are defined; arrays of arrays are not supported)"
        case let .invalidString(file, section):
            return "\(file): invalid UTF-8 string in the \(section)"
        case let .invalidBool(file, key, byte):
            return "\(file): metadata key \(quoted(key)) holds bool byte \(byte) (must be 0 or 1)"
        case let .badAlignment(file, alignment):
            return "\(file): \(GGUF.alignmentKey) = \(alignment) is not a power of two"
        case let .badDimensions(file, tensor, reason):
            return "\(file): tensor '\(tensor)' has bad dimensions: \(reason)"
        case let .unknownTensorType(file, tensor, type):
            return "\(file): unknown tensor type \(type) for tensor '\(tensor)' (we read F32, F16, I8, I16, I32)"
        case let .misalignedOffset(file, tensor, offset, alignment):
            return "\(file): tensor '\(tensor)' data offset \(offset) is not a multiple of the alignment \(alignment)"
        case let .tensorOutOfBounds(file, tensor, offset, bytes, dataBytes):
            return "\(file): tensor '\(tensor)' (\(bytes) bytes at data offset \(offset)) lies outside the \(dataBytes) bytes of tensor data"
        case let .overlappingTensors(file, first, second):
            return "\(file): the data of tensors '\(first)' and '\(second)' overlap"
        case let .duplicateKey(file, key):
            return "\(file): metadata key \(quoted(key)) appears more than once"
        case let .duplicateTensor(file, tensor):
            return "\(file): tensor '\(tensor)' appears more than once"
        case let .missingKey(file, key):
            return "\(file): missing metadata key \(quoted(key))"
        case let .wrongKeyType(file, key, expected, found):
            return "\(file): metadata key \(quoted(key)) has type \(found), expected \(expected)"
        case let .missingTensor(file, tensor):
            return "\(file): missing tensor '\(tensor)'"
        case let .unexpectedTensors(file, tensors):
            let shown = tensors.prefix(10).map { "'\($0)'" }.joined(separator: ", ")
            return "\(file): \(tensors.count) unexpected tensor(s) not used by the model: \(shown)\(tensors.count > 10 ? ", ..." : "")"
        case let .wrongShape(file, tensor, expected, found):
            return "\(file): tensor '\(tensor)' has shape \(found), expected \(expected)"
        case let .wrongType(file, tensor, expected, found):
            return "\(file): tensor '\(tensor)' has type \(found), expected \(expected)"
        }
    }
}
