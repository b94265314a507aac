// RGBImage: one owned buffer of 8-bit interleaved RGB pixels (what decoders and cameras produce and
// the model's processor reads), reusable frame after frame without reallocating.

// MARK: - RGBImage

/// An 8-bit RGB image: `height` rows of `width` pixels, each pixel 3 bytes (R, G, B), rows top to
/// bottom with no padding. The image owns its buffer; `reshape` reuses it when the new size fits,
/// so a camera loop allocates once. Not thread-safe: one owner at a time.
public final class RGBImage: @unchecked Sendable, CustomStringConvertible {
    /// Width in pixels.
    public private(set) var width: Int
    /// Height in pixels.
    public private(set) var height: Int
    /// Bytes the buffer can hold without reallocating.
    public private(set) var capacity: Int
    private var storage: UnsafeMutablePointer<UInt8>

    /// A `width`×`height` black image.
    public init(width: Int, height: Int) {
        precondition(width >= 0 && height >= 0, "image size \(width)x\(height)")
        self.width = width
        self.height = height
        capacity = max(width * height * 3, 1)
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: 0, count: capacity)
    }

    /// A `width`×`height` image holding a copy of `bytes` (`width·height·3` of them).
    public convenience init(width: Int, height: Int, bytes: [UInt8]) {
        precondition(bytes.count == width * height * 3, "\(bytes.count) bytes for a \(width)x\(height) RGB image")
        self.init(width: width, height: height)
        bytes.withUnsafeBufferPointer { storage.update(from: $0.baseAddress!, count: bytes.count) }
    }

    deinit { storage.deallocate() }

    /// Bytes of pixel data (`width·height·3`).
    public var byteCount: Int { width * height * 3 }

    /// Changes the size, keeping the buffer when it is large enough (contents then unspecified).
    /// Returns true when it had to grow the buffer.
    @discardableResult
    public func reshape(width: Int, height: Int) -> Bool {
        precondition(width >= 0 && height >= 0, "image size \(width)x\(height)")
        self.width = width
        self.height = height
        let need = width * height * 3
        guard need > capacity else { return false }
        storage.deallocate()
        capacity = need
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: 0, count: capacity)
        return true
    }

    /// Calls `body` with the pixel bytes, valid only during the call.
    public func withRGBBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage, count: byteCount))
    }

    /// Calls `body` with the pixel bytes to write, valid only during the call.
    public func withMutableRGBBytes<R>(_ body: (UnsafeMutableBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: storage, count: byteCount))
    }

    /// The pixel at column `x`, row `y`.
    public subscript(x x: Int, y y: Int) -> (r: UInt8, g: UInt8, b: UInt8) {
        precondition(x >= 0 && x < width && y >= 0 && y < height, "pixel (\(x), \(y)) outside \(width)x\(height)")
        let p = storage + (y * width + x) * 3
        return (p[0], p[1], p[2])
    }

    /// A copy of the pixel bytes (allocates; for tests and tools).
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: storage, count: byteCount)) }

    public var description: String { "RGBImage(\(width)x\(height))" }
}
