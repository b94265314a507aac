// Tensor views: shapes without heap storage, and fp32 views into memory owned elsewhere
// (the arena or the mapped model file). Unsafe pointers stay inside this module.

// MARK: - Shape

/// The dimensions of a dense row-major tensor, rank 0 to 4, stored inline (no heap allocation).
public struct Shape: Equatable, Sendable, CustomStringConvertible {
    /// Dimensions, outermost first; unused trailing entries are 1.
    public private(set) var dims: (Int, Int, Int, Int)
    /// The number of dimensions in use.
    public let rank: Int

    /// A scalar shape.
    public init() { dims = (1, 1, 1, 1); rank = 0 }
    /// A vector of `a` elements.
    public init(_ a: Int) { dims = (a, 1, 1, 1); rank = 1 }
    /// A matrix of `a` rows and `b` columns.
    public init(_ a: Int, _ b: Int) { dims = (a, b, 1, 1); rank = 2 }
    /// A rank-3 shape.
    public init(_ a: Int, _ b: Int, _ c: Int) { dims = (a, b, c, 1); rank = 3 }
    /// A rank-4 shape (for images: N, C, H, W).
    public init(_ a: Int, _ b: Int, _ c: Int, _ d: Int) { dims = (a, b, c, d); rank = 4 }
    /// A shape from an array of at most 4 dimensions (allocates nothing beyond the argument).
    public init(_ array: [Int]) {
        precondition(array.count <= 4, "Shape supports at most 4 dimensions, got \(array)")
        var d = (1, 1, 1, 1)
        if array.count > 0 { d.0 = array[0] }
        if array.count > 1 { d.1 = array[1] }
        if array.count > 2 { d.2 = array[2] }
        if array.count > 3 { d.3 = array[3] }
        dims = d; rank = array.count
    }

    /// Dimension `i` (0-based, outermost first).
    public subscript(i: Int) -> Int {
        precondition(i >= 0 && i < rank, "dimension \(i) out of range for rank \(rank)")
        switch i {
        case 0: return dims.0
        case 1: return dims.1
        case 2: return dims.2
        default: return dims.3
        }
    }

    /// The number of elements.
    public var count: Int { dims.0 * dims.1 * dims.2 * dims.3 }

    /// The same shape with the outermost dimension set to `n` (allocates nothing).
    public func replacingFirst(_ n: Int) -> Shape {
        var s = self
        s.dims.0 = n
        return s
    }

    /// The dimensions as an array (allocates; not for hot paths).
    public var array: [Int] { (0..<rank).map { self[$0] } }

    public static func == (l: Shape, r: Shape) -> Bool {
        l.rank == r.rank && l.dims.0 == r.dims.0 && l.dims.1 == r.dims.1 && l.dims.2 == r.dims.2 && l.dims.3 == r.dims.3
    }

    public var description: String { "[" + array.map(String.init).joined(separator: ", ") + "]" }
}

// MARK: - Tensor

/// A dense row-major fp32 view. It does not own its memory: an `Arena`, a mapped model file or a
/// test's array does, and must outlive the view. Copying a `Tensor` copies the view, not the data.
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    /// The tensor's shape.
    public let shape: Shape
    @usableFromInline let base: UnsafeMutablePointer<Float>

    /// A view of `shape.count` floats at `base` (module-internal: only Compute sees pointers).
    @usableFromInline init(base: UnsafeMutablePointer<Float>, shape: Shape) {
        self.base = base
        self.shape = shape
    }

    /// The number of elements.
    @inlinable public var count: Int { shape.count }

    /// Element `i` of the flattened tensor.
    @inlinable public subscript(i: Int) -> Float {
        get { precondition(i >= 0 && i < count); return base[i] }
        nonmutating set { precondition(i >= 0 && i < count); base[i] = newValue }
    }

    /// The same data seen with another shape of the same element count.
    public func reshaped(_ s: Shape) -> Tensor {
        precondition(s.count == count, "cannot reshape \(shape) to \(s)")
        return Tensor(base: base, shape: s)
    }

    /// Rows `r` along the outermost dimension, as a view.
    public func rows(_ r: Range<Int>) -> Tensor {
        precondition(shape.rank >= 1 && r.lowerBound >= 0 && r.upperBound <= shape[0], "rows \(r) out of \(shape)")
        let inner = shape[0] == 0 ? 0 : count / shape[0]
        return Tensor(base: base + r.lowerBound * inner, shape: shape.replacingFirst(r.count))
    }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { base.update(repeating: value, count: count) }

    /// Copies the elements of `other` (same count) into this view.
    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy of \(other.shape) into \(shape)")
        base.update(from: other.base, count: count)
    }

    /// Copies `values` (same count) into this view.
    public func copy(from values: [Float]) {
        precondition(values.count == count, "copy of \(values.count) values into \(shape)")
        values.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: count) }
    }

    /// The elements as an array (allocates; for tests and output).
    public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: base, count: count)) }

    public var description: String { "Tensor\(shape)" }
}
