// The Florence-2 image processor: mirrors transformers' `CLIPImageProcessorPil` as Florence-2
// configures it (convert RGB → PIL bicubic resize to 768×768 → ×1/255 → (x − mean) / std), but
// writes channels-last [H, W, 3] fp32 into the arena instead of NCHW.
import Compute

// MARK: - Input

/// Pixels the processor reads: 8-bit RGB, interleaved, rows top to bottom with no padding
/// (`width·height·3` bytes). Capture's `RGBImage` conforms (in Daemon), so Florence2 needs no
/// knowledge of files or cameras.
public protocol RGBPixels {
    /// Width in pixels.
    var width: Int { get }
    /// Height in pixels.
    var height: Int { get }
    /// Calls `body` with the `width·height·3` bytes, valid only during the call.
    func withRGBBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R
}

/// Why an image cannot be processed.
public enum ImageProcessorError: Error, CustomStringConvertible, Equatable {
    /// The input has a zero or negative size, or fewer bytes than its size says.
    case badInput(width: Int, height: Int, bytes: Int)

    public var description: String {
        switch self {
        case let .badInput(w, h, n): return "image processor: a \(w)x\(h) RGB image needs \(max(w, 0) * max(h, 0) * 3) bytes, got \(n)"
        }
    }
}

// MARK: - Processor

/// Resizes and normalises one image for the vision tower. Built once per model; `process`
/// allocates only its output tensor and arena scratch (no heap allocation per call).
public struct Florence2ImageProcessor: Sendable {
    /// The model's preprocessing settings.
    public let config: Florence2ImageConfig
    /// The resampling filter named by `config.resample`.
    public let filter: ResampleFilter
    /// `table[c·256 + v]` = `(Float(Double(v)·rescale) − mean[c]) / std[c]`, computed as transformers does.
    let table: [Float]

    /// A processor for `config`.
    /// - Throws: `Florence2ConfigError.invalid` naming the key when the size, resample filter,
    ///   mean, std or rescale factor is unusable.
    public init(config: Florence2ImageConfig) throws {
        func bad(_ key: String, _ why: String) -> Florence2ConfigError { .invalid(key: "florence2.image.\(key)", reason: why) }
        guard config.width > 0, config.height > 0 else { throw bad("width", "and height must be positive, got \(config.width)x\(config.height)") }
        guard let filter = ResampleFilter(rawValue: config.resample) else {
            throw bad("resample", "is \(config.resample); supported: 2 (bilinear), 3 (bicubic)")
        }
        guard config.mean.count == 3 else { throw bad("mean", "has \(config.mean.count) entries, need 3") }
        guard config.std.count == 3, config.std.allSatisfy({ $0 != 0 && $0.isFinite }) else { throw bad("std", "needs 3 finite non-zero entries") }
        guard config.rescaleFactor > 0, config.rescaleFactor.isFinite else { throw bad("rescale_factor", "must be positive") }
        self.config = config
        self.filter = filter
        // transformers rescales in float64 by the Python float 1/255 and then casts to float32;
        // the model file stores the factor as float32, so recover the double it came from.
        let r = Double(config.rescaleFactor)
        let rescale = Float(r) == Float(1.0 / 255.0) ? 1.0 / 255.0 : r
        var t = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 { t[c * 256 + v] = (Float(Double(v) * rescale) - config.mean[c]) / config.std[c] }
        }
        table = t
    }

    /// The resize kernel variant this machine uses ("avx2" or "generic"), for the start-up log.
    public static var kernelVariant: String { ImageResample.variant }

    /// Output shape `[height, width, 3]`.
    public var outputShape: Shape { Shape(config.height, config.width, 3) }

    /// Arena bytes `process` needs for an input of `width`×`height`: the output tensor plus scratch.
    public func arenaBytes(inputWidth width: Int, inputHeight height: Int) -> Int {
        Arena.aligned(outputShape.count * MemoryLayout<Float>.stride)
            + ImageResample.scratchBytes(inWidth: width, inHeight: height, outWidth: config.width, outHeight: config.height, filter: filter)
    }

    /// Resizes and normalises `image` into a new `[height, width, 3]` fp32 tensor from `arena`
    /// (the scratch it also takes is released before returning).
    /// - Throws: `ImageProcessorError.badInput`, or `MemoryError.arenaExhausted` when the arena is too small.
    public func process<P: RGBPixels>(_ image: P, arena: Arena) throws -> Tensor {
        try image.withRGBBytes { try process(rgb: $0, width: image.width, height: image.height, arena: arena) }
    }

    /// `process` for raw bytes [height, width, 3].
    public func process(rgb: UnsafeBufferPointer<UInt8>, width: Int, height: Int, arena: Arena) throws -> Tensor {
        guard width > 0, height > 0, rgb.count >= width * height * 3, rgb.baseAddress != nil else {
            throw ImageProcessorError.badInput(width: width, height: height, bytes: rgb.count)
        }
        let out = try arena.tensor(outputShape)
        try ImageResample.resize(rgb: rgb, width: width, height: height, into: out, table: table, filter: filter, scratch: arena)
        return out
    }
}
